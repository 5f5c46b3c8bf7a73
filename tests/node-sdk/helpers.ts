import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import Database from 'better-sqlite3';
import { type Harness, makeHarness, makeMerchant, type TestMerchant } from '../helpers/harness.js';

/** A harness whose app listens on 127.0.0.1, with PUBLIC_BASE_URL (the tokens' `iss`) set to that address. */
export interface Served {
  h: Harness;
  server: http.Server;
  base: string;
  close(): Promise<void>;
}

export async function serve(opts: { env?: Record<string, string>; shareWith?: Harness } = {}): Promise<Served> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const h = await makeHarness({
    env: { PUBLIC_BASE_URL: base, CVVOPS_ALLOW_PRIVATE_TARGETS: 'on', ...opts.env },
    ...(opts.shareWith ? { shareWith: opts.shareWith } : {}),
  });
  server.on('request', h.app);
  return {
    h,
    server,
    base,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await h.close();
    },
  };
}

export async function merchantOf(s: Served): Promise<TestMerchant> {
  return makeMerchant(s.h);
}

/** Counts rows straight from the SQLite file: what the server really stored. */
export function countRows(h: Harness, table: 'cards' | 'sessions' | 'webhook_endpoints', merchantId: string): number {
  const db = new Database(h.dbPath, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE merchant_id = ?`).get(merchantId) as { n: number }).n;
  } finally {
    db.close();
  }
}

/**
 * A fault-injecting TCP proxy in front of the server. A request whose request line matches a
 * rule is forwarded in full; once the server's answer starts coming back (so the server has
 * done its work and committed), both sockets are destroyed and the client never sees the
 * answer: a connection dropped after the server committed.
 */
export class FaultProxy {
  /** Every request line forwarded, in order. */
  readonly forwarded: string[] = [];
  /** Request lines whose answers were dropped. */
  readonly dropped: string[] = [];
  #rules: Array<{ match: RegExp; times: number }> = [];
  readonly #sockets = new Set<Socket>();
  private constructor(private readonly server: net.Server) {}

  static async start(target: string): Promise<FaultProxy> {
    const t = new URL(target);
    const server = net.createServer();
    const proxy = new FaultProxy(server);
    server.on('connection', (client) => proxy.#handle(client, t.hostname, Number(t.port)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Drops the answer to the next `times` requests whose request line (`POST /Cards HTTP/1.1`) matches. */
  dropAnswer(match: RegExp, times = 1): void {
    this.#rules.push({ match, times });
  }

  #handle(client: Socket, host: string, port: number): void {
    const upstream = net.connect(port, host);
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    let dropping: string | null = null;
    client.on('data', (chunk: Buffer) => {
      const line = chunk.toString('latin1').split('\r\n', 1)[0]!;
      if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) {
        this.forwarded.push(line);
        const rule = this.#rules.find((r) => r.times > 0 && r.match.test(line));
        if (rule) {
          rule.times--;
          dropping = line;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (dropping !== null) {
        this.dropped.push(dropping);
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', () => {});
    upstream.on('error', () => {});
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** One request a stub server received. */
export interface StubRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/**
 * A scriptable stand-in for the server: `handle` answers each request (it sees every request so
 * far), for what a real server does not do on demand (5xx, 429 with Retry-After, slowness).
 */
export class StubServer {
  readonly requests: StubRequest[] = [];
  handle: (req: StubRequest, res: ServerResponse, n: number) => void = (_r, res) => json(res, 200, {});
  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<StubServer> {
    const server = http.createServer();
    const stub = new StubServer(server);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const rec = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
        stub.requests.push(rec);
        stub.handle(rec, res, stub.requests.length);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return stub;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': 'req_stub', ...headers });
  res.end(JSON.stringify(body));
}

export function apiError(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
  json(res, status, { error: { code, message: `stub ${code}`, requestId: 'req_stub' } }, headers);
}

/** A port nothing listens on. */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
