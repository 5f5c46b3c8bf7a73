import autocannon, { type Request } from 'autocannon';
import { performance } from 'node:perf_hooks';
import { Samples, type Latency } from './stats.js';

export interface CannonRun {
  /** Responses received (any status). */
  responses: number;
  ok: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** Connection errors and timeouts (no response at all). */
  errors: number;
  timeouts: number;
  seconds: number;
  rps: number;
  latency: Latency;
}

export interface CannonOptions {
  port: number;
  connections: number;
  seconds: number;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  requests?: Request[];
}

/** One autocannon run in this process; latency of every response (any status) is recorded here (autocannon has no p95). */
export async function cannon(o: CannonOptions): Promise<CannonRun> {
  const lat = new Samples();
  const statusCodes: Record<string, number> = {};
  let ok = 0;
  let responses = 0;
  const t0 = performance.now();
  const inst = autocannon({
    url: `http://127.0.0.1:${o.port}${o.path ?? ''}`,
    connections: o.connections,
    duration: o.seconds,
    timeout: 30,
    method: o.method ?? 'POST',
    ...(o.headers ? { headers: o.headers } : {}),
    ...(o.body !== undefined ? { body: o.body } : {}),
    ...(o.requests ? { requests: o.requests } : {}),
    renderProgressBar: false,
    renderResultsTable: false,
    renderLatencyTable: false,
  });
  inst.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    responses++;
    if (status >= 200 && status < 300) ok++;
    statusCodes[status] = (statusCodes[status] ?? 0) + 1;
    lat.push(ms);
  });
  const result = await new Promise<import('autocannon').Result>((resolve, reject) => {
    inst.then(resolve, reject);
  });
  const seconds = (performance.now() - t0) / 1000;
  return {
    responses,
    ok,
    non2xx: responses - ok,
    statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds,
    rps: responses / seconds,
    latency: lat.summary(),
  };
}

// ---- token chaining -----------------------------------------------------------

/** A pre-created session: its current token and how many calls it has left. */
export interface PooledSession {
  id: string;
  token: string;
  left: number;
}

export class SessionPool {
  readonly items: PooledSession[] = [];
  /** Requests sent with no session available (a bogus token, answered 401). */
  dry = 0;
  /** Sessions given up after a non-200 answer. */
  abandoned = 0;
  /** Sessions taken from the pool (in total). */
  taken = 0;
  errorSamples: string[] = [];

  add(s: PooledSession[]): void {
    this.items.push(...s);
  }

  take(): PooledSession | undefined {
    const s = this.items.pop();
    if (s) this.taken++;
    return s;
  }

  get size(): number {
    return this.items.length;
  }
}

interface ConnState {
  cur: PooledSession | null;
}

/**
 * An autocannon request that sends each operation with the current token of a
 * pre-created session and chains the token it gets back, per connection.
 *
 * autocannon resets a connection's `context` every time it loops over its
 * `requests` (here, after every request), so the chain lives in `state`: an
 * object autocannon deep-clones per connection (it clones its options per
 * client) and hands to `setupRequest` on every request; `setupRequest` puts it
 * in the context, where `onResponse` finds it.
 */
export function chainedRequest(pool: SessionPool, path: string, body: string, extraHeaders: () => Record<string, string> = () => ({})): Request {
  return {
    method: 'POST',
    path,
    body,
    state: { cur: null } satisfies ConnState,
    setupRequest(req, context) {
      const st = req.state as ConnState;
      context.st = st;
      if (!st.cur || st.cur.left <= 0) st.cur = pool.take() ?? null;
      let token = 'pool-ran-dry';
      if (st.cur) token = st.cur.token;
      else pool.dry++;
      req.headers = { ...req.headers, 'content-type': 'application/json', authorization: `Bearer ${token}`, ...extraHeaders() };
      return req;
    },
    onResponse(status, resBody, context) {
      const st = context.st as ConnState | undefined;
      if (!st?.cur) return;
      if (status === 200) {
        const j = JSON.parse(resBody) as { token: string; session: { status: string } };
        st.cur.token = j.token;
        st.cur.left--;
        if (j.session.status !== 'active') st.cur.left = 0;
      } else {
        // The current token is unknown now: take another session.
        pool.abandoned++;
        if (pool.errorSamples.length < 5) pool.errorSamples.push(`${status} ${resBody.slice(0, 200)}`);
        st.cur = null;
      }
    },
  };
}
