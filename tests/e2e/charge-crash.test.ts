import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createMerchantWithCli } from '../helpers/server-process.js';

/**
 * API.md section 4 (charge): "A charge is sent to the processor at most once
 * per attempt: a retried request (same Idempotency-Key) returns the first
 * outcome and never charges twice, even if the server died between the
 * processor's answer and the response."
 *
 * The real server runs as a child process over a SQLite file, with an http
 * processor pointing at a fake payment provider in this process. The fake
 * provider SIGKILLs the server when the charge reaches it, before answering:
 * the server dies after the provider has charged and before it could record
 * the outcome or answer. A restarted server must reconcile the pending charge
 * with the provider's lookup request instead of charging again.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TEST_CARD = '4000000000001018';
/** HttpProcessorConfig.timeoutMs: a pending charge older than timeoutMs + 2 s counts as interrupted. */
const PROCESSOR_TIMEOUT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  child: ChildProcess;
  base: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** Starts `node --import tsx server/main.ts` and waits for its "cvvops listening" log line (which carries the port). */
function startServer(env: Record<string, string>): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  child.stderr.on('data', (b) => (out += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start within 20 s:\n${out}`)), 20_000);
    let pending = '';
    child.stdout.on('data', (b) => {
      out += b;
      pending += b;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        let rec: { msg?: string; port?: number };
        try {
          rec = JSON.parse(line);
        } catch {
          continue;
        }
        if (rec.msg === 'cvvops listening' && typeof rec.port === 'number') {
          clearTimeout(timer);
          resolve({ child, base: `http://127.0.0.1:${rec.port}`, output: () => out, exited });
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
}

interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

async function call(
  base: string,
  method: string,
  path: string,
  opts: { bearer?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(opts.bearer ? { authorization: `Bearer ${opts.bearer}` } : {}),
      ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...opts.headers,
    },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: kept as text for the failure message
  }
  return { status: res.status, headers: res.headers, body };
}

const show = (r: Reply) => `${r.status} ${JSON.stringify(r.body)}`;

/**
 * A fake payment service provider: charges are idempotent by the
 * Idempotency-Key header (a ledger, as real providers keep), and can be looked
 * up by that key. Every POST it receives is counted, whatever it does with it.
 */
class FakeProvider {
  readonly server: http.Server;
  readonly posts: Array<{ key: string | undefined; body: any }> = [];
  readonly lookups: Array<{ key: string | null; found: boolean }> = [];
  readonly ledger = new Map<string, { id: string; amount: number; currency: string }>();
  /** Runs when the next charge arrives, after it is counted (and recorded), before any answer. */
  beforeAnswer: (() => Promise<void>) | null = null;
  /** The next charge is not recorded: as if it never reached the provider's books. */
  forgetNext = false;

  constructor() {
    this.server = http.createServer((req, res) => {
      void this.#handle(req, res).catch((err) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return (this.server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    req.socket.on('error', () => {});
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://provider');
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    if (url.pathname !== '/charges') return json(404, { error: 'no such path' });

    if (req.method === 'POST') {
      const key = req.headers['idempotency-key'];
      let body: any = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        // counted below with a null body; the assertions catch it
      }
      this.posts.push({ key: typeof key === 'string' ? key : undefined, body });
      if (typeof key !== 'string' || key === '') return json(400, { error: 'Idempotency-Key header required' });
      let charge = this.ledger.get(key);
      if (!charge) {
        charge = { id: `pi_${randomBytes(8).toString('hex')}`, amount: Number(body?.amount), currency: String(body?.currency) };
        if (this.forgetNext) this.forgetNext = false;
        else this.ledger.set(key, charge);
      }
      const hook = this.beforeAnswer;
      this.beforeAnswer = null;
      if (hook) {
        await hook();
        // The caller is dead by now: there is nobody to answer.
        res.destroy();
        return;
      }
      return json(200, FakeProvider.view(charge));
    }

    if (req.method === 'GET') {
      const key = url.searchParams.get('idempotency_key');
      const charge = key ? this.ledger.get(key) : undefined;
      this.lookups.push({ key, found: !!charge });
      if (!charge) return json(404, { error: { type: 'resource_missing' } });
      return json(200, FakeProvider.view(charge));
    }
    return json(405, { error: 'method not allowed' });
  }

  static view(c: { id: string; amount: number; currency: string }) {
    return { status: 'succeeded', auth_code: '123456', cvc_check: 'pass', id: c.id, amount: c.amount, currency: c.currency };
  }
}

describe('a charge interrupted by a server crash (real server process, SQLite, http processor)', { timeout: 90_000 }, () => {
  let dir: string;
  let env: Record<string, string>;
  let provider: FakeProvider;
  let providerPort: number;
  let server: Server | null = null;
  let testKey: string;
  let cardToken: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cvvops-crash-'));
    provider = new FakeProvider();
    providerPort = await provider.listen();
    env = {
      NODE_ENV: '',
      PUBLIC_BASE_URL: '',
      HOST: '127.0.0.1',
      CVVOPS_WORKERS: '1',
      LOG_LEVEL: 'info',
      DATABASE_URL: `sqlite:${join(dir, 'cvvops.db')}`,
      CVVOPS_MASTER_KEY: Buffer.alloc(32, 7).toString('base64'),
      CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
      CVVOPS_RATE_LIMIT: 'off',
      CVVOPS_DEMO: 'off',
    };

    const created = await createMerchantWithCli(env, 'Crash');
    assert.match(created.testKey, /^sk_test_/);
    testKey = created.testKey;

    server = await startServer(env);
    const providerBase = `http://127.0.0.1:${providerPort}`;
    const patch = await call(server.base, 'PATCH', '/Merchant', {
      bearer: testKey,
      body: {
        allowedProxyTargets: [`${providerBase}/`],
        processor: {
          type: 'http',
          request: {
            method: 'POST',
            url: `${providerBase}/charges`,
            headers: { 'Content-Type': 'application/json', 'Idempotency-Key': '${idempotencyKey}' },
            body: '{"amount":${amount.value},"currency":"${amount.currency}","card":"${cardNumber}","cvc":"${cvv}","reference":"${reference}"}',
          },
          response: {
            approved: { path: 'status', equals: 'succeeded' },
            authorizationCode: 'auth_code',
            cvvResult: 'cvc_check',
            declineCode: 'decline_code',
            networkTransactionId: 'id',
          },
          lookup: { method: 'GET', url: `${providerBase}/charges?idempotency_key=\${idempotencyKey}` },
          timeoutMs: PROCESSOR_TIMEOUT_MS,
        },
      },
    });
    assert.equal(patch.status, 200, show(patch));

    const card = await call(server.base, 'POST', '/Cards', { bearer: testKey, body: { number: TEST_CARD, expMonth: 12, expYear: 2030 } });
    assert.equal(card.status, 201, show(card));
    cardToken = card.body.token;
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    await provider?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** A new session (collectCvv + charge, 1999 EUR) with the CVV collected: returns the token a charge takes. */
  async function readySession(): Promise<{ sessionId: string; token: string }> {
    const s = await call(server!.base, 'POST', '/CvvOperations', {
      bearer: testKey,
      body: { card: cardToken, operations: ['collectCvv', 'charge'], amount: { value: 1999, currency: 'EUR' }, reference: 'order-crash' },
    });
    assert.equal(s.status, 201, show(s));
    const c = await call(server!.base, 'POST', '/CvvOperations/collectCvv', { bearer: s.body.token, body: { cvv: '123' } });
    assert.equal(c.status, 200, show(c));
    assert.equal(c.body.result.status, 'succeeded');
    return { sessionId: s.body.id, token: c.body.token };
  }

  /**
   * Sends the charge; the fake provider kills the server when the charge
   * reaches it. Returns when the server is dead and the client's request has
   * failed, with the time of the crash.
   */
  async function chargeAndCrash(token: string, key: string): Promise<number> {
    const victim = server!;
    let killedAt = 0;
    provider.beforeAnswer = async () => {
      victim.child.kill('SIGKILL');
      await victim.exited;
      killedAt = Date.now();
    };
    await assert.rejects(
      call(victim.base, 'POST', '/CvvOperations/charge', { bearer: token, body: {}, headers: { 'Idempotency-Key': key } }),
      (err: Error) => err instanceof TypeError,
      'the client sees the connection fail: no response was sent',
    );
    const { signal } = await victim.exited;
    assert.equal(signal, 'SIGKILL', 'the server died of the SIGKILL');
    assert.ok(killedAt > 0, 'the server was killed by the provider, after the charge reached it');
    assert.equal(provider.beforeAnswer, null);
    server = null;
    return killedAt;
  }

  const chargeWith = (token: string, key: string, body: unknown = {}) =>
    call(server!.base, 'POST', '/CvvOperations/charge', { bearer: token, body, headers: { 'Idempotency-Key': key } });

  /**
   * A retry as a client makes it: while the answer is 409 precondition_failed (the charge still owns its session,
   * or the restarted server's sweeper is settling it right now), wait as Retry-After says and ask again.
   */
  async function settledRetry(token: string, key: string): Promise<Reply> {
    for (let i = 0; ; i++) {
      const r = await chargeWith(token, key);
      if (r.status !== 409 || r.body?.error?.code !== 'precondition_failed' || i >= 10) return r;
      assert.equal(r.headers.get('retry-after'), '1');
      await sleep(1000);
    }
  }

  /** Polls until `check` holds (the sweeper works every second), at most `ms`. */
  async function eventually(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
    const until = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > until) assert.fail(`${what}: not within ${ms} ms`);
      await sleep(200);
    }
  }

  it('the provider approved, the server died before answering: a retry reconciles with a lookup and never charges twice', { timeout: 60_000 }, async () => {
    const { sessionId, token } = await readySession();
    const key = `crash-${randomBytes(6).toString('hex')}`;
    const killedAt = await chargeAndCrash(token, key);

    assert.equal(provider.posts.length, 1, 'the provider received the charge once');
    const sent = provider.posts[0]!;
    assert.ok(sent.key, 'the charge carried an idempotency key for the provider');
    assert.deepEqual(
      { amount: sent.body?.amount, currency: sent.body?.currency, cvc: sent.body?.cvc, card: sent.body?.card },
      { amount: 1999, currency: 'EUR', cvc: '123', card: TEST_CARD },
      'the template was filled in',
    );
    assert.ok(provider.ledger.has(sent.key), 'the provider charged (recorded under the key)');
    const providerCharge = provider.ledger.get(sent.key)!;

    server = await startServer(env);

    // While the charge could still be in flight (under timeoutMs + 2 s), a retry is told to wait: no lookup, no resend.
    if (Date.now() - killedAt < PROCESSOR_TIMEOUT_MS + 1000) {
      const early = await chargeWith(token, key);
      assert.equal(early.status, 409, show(early));
      assert.equal(early.body.error.code, 'precondition_failed');
      assert.equal(provider.lookups.length, 0, 'no lookup while the charge may still be in flight');
    }

    // The retry settles it, or finds the restarted server's sweeper doing so (then waits for it): one lookup either way.
    const retry = await settledRetry(token, key);
    assert.equal(retry.status, 200, show(retry));
    assert.equal(retry.body.result.status, 'approved', show(retry));
    assert.equal(retry.body.result.authorizationCode, '123456');
    assert.equal(retry.body.result.cvvResult, 'M', 'cvc_check "pass" maps to M');
    assert.equal(retry.body.result.networkTransactionId, providerCharge.id, "the provider's charge, not a new one");
    assert.equal(retry.body.result.processor, 'http');
    assert.deepEqual(retry.body.result.amount, { value: 1999, currency: 'EUR' });
    assert.match(retry.body.result.chargeId, /^ch_/);
    assert.equal(retry.body.session.status, 'completed');
    assert.equal(typeof retry.body.token, 'string');

    assert.equal(provider.posts.length, 1, 'the charge was never sent again');
    assert.deepEqual(provider.lookups, [{ key: sent.key, found: true }], 'one lookup, by the key the charge was sent with');

    // Again with the same key: the same outcome (the same response), still one charge and no new lookup.
    const again = await chargeWith(token, key);
    assert.equal(again.status, 200, show(again));
    assert.deepEqual(again.body, retry.body, 'the first outcome, as it was answered');
    assert.equal(provider.posts.length, 1);
    assert.equal(provider.lookups.length, 1);

    // The same key with another body is a different request.
    const other = await chargeWith(token, key, { amount: { value: 1000, currency: 'EUR' } });
    assert.equal(other.status, 409, show(other));
    assert.equal(other.body.error.code, 'idempotency_key_reused');
    assert.equal(provider.posts.length, 1);

    // The merchant server learns the outcome authoritatively from the token the retry returned.
    const v = await call(server.base, 'POST', '/CvvOperations/validateToken', { bearer: testKey, body: { token: retry.body.token } });
    assert.equal(v.status, 200, show(v));
    assert.equal(v.body.valid, true, show(v));
    assert.equal(v.body.current, true, show(v));
    assert.equal(v.body.claims.sub, sessionId);
    assert.equal(v.body.claims.res.charge.status, 'approved');
    assert.equal(v.body.claims.res.charge.chargeId, retry.body.result.chargeId);
    assert.equal(v.body.session.status, 'completed');

    const g = await call(server.base, 'GET', `/CvvOperations/${sessionId}`, { bearer: testKey });
    assert.equal(g.status, 200, show(g));
    assert.equal(g.body.status, 'completed');
    assert.equal(g.body.results.charge.status, 'approved');
  });

  it("the charge never reached the provider's books (lookup 404): the retry answers error and never resends", { timeout: 60_000 }, async () => {
    server ??= await startServer(env);
    const { token } = await readySession();
    const key = `lost-${randomBytes(6).toString('hex')}`;
    const postsBefore = provider.posts.length;
    const lookupsBefore = provider.lookups.length;
    provider.forgetNext = true;
    await chargeAndCrash(token, key);
    const postsAfterCrash = provider.posts.length;
    assert.equal(postsAfterCrash, postsBefore + 1);
    const sentKey = provider.posts.at(-1)!.key!;
    assert.ok(sentKey);
    assert.equal(provider.ledger.has(sentKey), false, 'the provider has no record of it');

    server = await startServer(env);
    const retry = await settledRetry(token, key);
    assert.equal(retry.status, 200, show(retry));
    assert.equal(retry.body.result.status, 'error', show(retry));
    assert.equal(retry.body.result.authorizationCode, null);
    assert.equal(retry.body.session.status, 'active', 'an error does not complete the session');
    assert.equal(provider.posts.length, postsAfterCrash, 'the charge was not resent');
    assert.deepEqual(provider.lookups.slice(lookupsBefore), [{ key: sentKey, found: false }]);

    const again = await chargeWith(token, key);
    assert.equal(again.status, 200, show(again));
    assert.deepEqual(again.body, retry.body, 'the same outcome again');
    assert.equal(provider.posts.length, postsAfterCrash);
    assert.equal(provider.lookups.length, lookupsBefore + 1, 'settled: no second lookup');

    const v = await call(server.base, 'POST', '/CvvOperations/validateToken', { bearer: testKey, body: { token: retry.body.token } });
    assert.equal(v.status, 200, show(v));
    assert.equal(v.body.valid, true, show(v));
    assert.equal(v.body.current, true);
    assert.equal(v.body.claims.res.charge.status, 'error');
    assert.equal(v.body.session.status, 'active');
    assert.deepEqual(v.body.session.attempts.charge, { used: 1, max: 3 }, 'the interrupted attempt counts once');
  });

  it(
    'without an Idempotency-Key: the session stays owned through the crash, and the restarted server settles the approval by itself',
    { timeout: 60_000 },
    async () => {
      server ??= await startServer(env);
      const { sessionId, token } = await readySession();
      const postsBefore = provider.posts.length;
      const lookupsBefore = provider.lookups.length;
      const victim = server;
      provider.beforeAnswer = async () => {
        victim.child.kill('SIGKILL');
        await victim.exited;
      };
      await assert.rejects(call(victim.base, 'POST', '/CvvOperations/charge', { bearer: token, body: {} }), (err: Error) => err instanceof TypeError);
      await victim.exited;
      server = await startServer(env);
      assert.equal(provider.posts.length, postsBefore + 1, 'the provider charged once');

      // The durable ownership survived the crash: nothing can change the session until its outcome is known.
      const reissue = await call(server.base, 'POST', `/CvvOperations/${sessionId}/token`, { bearer: testKey });
      const cancel = await call(server.base, 'POST', `/CvvOperations/${sessionId}/cancel`, { bearer: testKey });
      const again = await call(server.base, 'POST', '/CvvOperations/charge', { bearer: token, body: {} });
      for (const [what, r] of [
        ['reissue', reissue],
        ['cancel', cancel],
        ['charge with the same token', again],
      ] as const) {
        // Settled already (a slow machine) is the other allowed answer: 409 session_completed, never a second charge.
        assert.equal(r.status, 409, `${what}: ${show(r)}`);
        assert.ok(['precondition_failed', 'session_completed'].includes(r.body.error.code), `${what}: ${show(r)}`);
      }

      // The restarted server's sweeper asks the provider after timeoutMs + 2 s and settles the approval.
      await eventually('the sweeper settled the interrupted charge', async () => {
        const g = await call(server!.base, 'GET', `/CvvOperations/${sessionId}`, { bearer: testKey });
        return g.body.status === 'completed';
      });
      const g = await call(server.base, 'GET', `/CvvOperations/${sessionId}`, { bearer: testKey });
      assert.equal(g.body.results.charge.status, 'approved');
      assert.equal(provider.posts.length, postsBefore + 1, 'never charged again');
      assert.equal(provider.lookups.length, lookupsBefore + 1, 'one lookup');
      const late = await call(server.base, 'POST', `/CvvOperations/${sessionId}/token`, { bearer: testKey });
      assert.equal(late.status, 409);
      assert.equal(late.body.error.code, 'session_completed');
    },
  );
});
