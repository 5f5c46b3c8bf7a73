import http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface Reply {
  status: number;
  body: string;
  /** Milliseconds from sending the request to the end of the response. */
  ms: number;
  /** When the response ended (performance.now()). */
  end: number;
}

export class HttpError extends Error {
  constructor(
    readonly step: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${step}: HTTP ${status} ${body.slice(0, 300)}`);
  }
}

/** A small keep-alive JSON client (node:http Agent with keepAlive), one socket per concurrent caller. */
export class JsonClient {
  readonly agent: http.Agent;

  constructor(
    readonly port: number,
    maxSockets: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
  }

  request(method: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const h: Record<string, string | number> = { accept: 'application/json', ...headers };
    if (payload !== undefined) {
      h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const req = http.request({ host: '127.0.0.1', port: this.port, method, path, headers: h, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const end = performance.now();
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), ms: end - t0, end });
        });
        res.on('error', reject);
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** POST and expect `expect`; returns the parsed body. */
  async post<T = any>(path: string, body: unknown, headers: Record<string, string>, expect = 200, step = path): Promise<{ json: T; reply: Reply }> {
    const reply = await this.request('POST', path, body, headers);
    if (reply.status !== expect) throw new HttpError(step, reply.status, reply.body);
    return { json: JSON.parse(reply.body) as T, reply };
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Runs `fn(i)` for i in [0, n) with at most `concurrency` at a time. */
export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return out;
}
