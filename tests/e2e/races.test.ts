import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../server/config.js';
import { createDeps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';
import { SlowProvider, slowProviderConfig } from '../helpers/slow-provider.js';

/**
 * API.md sections 2 and 5 across processes: a charge in flight owns its session, and CVV blocking holds however
 * many charges arrive at once, when the requests land on different node:cluster workers (SQLite) or different
 * server instances (one PostgreSQL database). The processor is a real HTTP provider that holds every charge.
 */

interface Res {
  status: number;
  headers: Headers;
  body: any;
}

async function call(base: string, method: string, path: string, bearer: string, body?: unknown): Promise<Res> {
  const r = await fetch(`${base}${path}`, {
    method,
    // A new connection per request: node:cluster hands connections (not requests) to the workers in turn.
    headers: { authorization: `Bearer ${bearer}`, connection: 'close', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : null };
}

const show = (r: Res) => `${r.status} ${JSON.stringify(r.body)}`;

function assertBusy(r: Res, what: string): void {
  assert.equal(r.status, 409, `${what}: ${show(r)}`);
  assert.equal(r.body.error.code, 'precondition_failed', what);
  assert.match(String(r.headers.get('retry-after')), /^[1-9]\d*$/, `${what}: Retry-After`);
}

interface Setup {
  /** The servers' base URLs; requests alternate between them (one URL for workers sharing a port). */
  bases: string[];
  key: string;
  provider: SlowProvider;
}

/** The two scenarios, for one setup. `get` is read when the tests run (after `before`). */
function scenarios(get: () => Setup): void {
  const at = (i: number) => get().bases[i % get().bases.length]!;

  async function session(base: string, card: string, reference: string): Promise<{ id: string; token: string }> {
    const s = await call(base, 'POST', '/CvvOperations', get().key, {
      card,
      operations: ['collectCvv', 'charge'],
      amount: { value: 1500, currency: 'EUR' },
      reference,
      maxAttempts: 10,
    });
    assert.equal(s.status, 201, show(s));
    return { id: s.body.id, token: s.body.token };
  }

  async function card(base: string, number: string): Promise<string> {
    const c = await call(base, 'POST', '/Cards', get().key, { number, expMonth: 12, expYear: 2030 });
    assert.equal(c.status, 201, show(c));
    return c.body.token;
  }

  it('20 parallel wrong-CVV charges of one card: at most 3 reach the provider; the rest 409 or 423; the card ends blocked at 3', async () => {
    const { key, provider } = get();
    provider.delayMs = 600;
    const tok = await card(at(0), '4000000000004046');
    // Sessions and their (wrong) CVVs, a few at a time; the charges are what is raced.
    const tokens: string[] = [];
    for (let i = 0; i < 20; i += 5) {
      tokens.push(
        ...(await Promise.all(
          [0, 1, 2, 3, 4].map(async (j) => {
            const s = await session(at(i + j), tok, `race-cvv-${i + j}`);
            const c = await call(at(i + j + 1), 'POST', '/CvvOperations/collectCvv', s.token, { cvv: String(200 + i + j) });
            assert.equal(c.status, 200, `collect ${i + j}: ${show(c)}`);
            return c.body.token as string;
          }),
        )),
      );
    }
    const before = provider.charges().length;
    const all = await Promise.all(tokens.map((t, i) => call(at(i), 'POST', '/CvvOperations/charge', t, {})));
    const reached = provider.charges().slice(before);
    assert.ok(reached.length <= 3, `the provider got ${reached.length} charge requests for one card (threshold 3)`);
    assert.equal(reached.length, 3, 'exactly the threshold of wrong CVVs reached the provider');
    for (const r of reached) assert.notEqual(r.cvc, '123');
    const ran = all.filter((r) => r.status === 200);
    assert.equal(ran.length, reached.length, `one 200 per provider request: ${all.map((r) => r.status).join(',')}`);
    for (const r of ran) {
      assert.equal(r.body.result.status, 'declined', show(r));
      assert.equal(r.body.result.declineCode, 'incorrect_cvc', show(r));
      assert.equal(r.body.result.cvvResult, 'N', show(r));
    }
    for (const r of all.filter((x) => x.status !== 200)) {
      if (r.status === 409) assertBusy(r, 'a refused parallel charge');
      else {
        assert.equal(r.status, 423, show(r));
        assert.equal(r.body.error.code, 'cvv_blocked');
      }
    }
    const st = await call(at(1), 'GET', `/Cards/${tok}/cvv/status`, key);
    assert.equal(st.status, 200, show(st));
    assert.equal(st.body.status, 'Blocked', show(st));
    assert.equal(st.body.failedAttempts, 3, 'failures never exceed the threshold');
    // Blocked: a refused session's token, still current, is 423 now on either process, and reaches nothing.
    const untouched = tokens[all.findIndex((r) => r.status !== 200)]!;
    const retry = await call(at(1), 'POST', '/CvvOperations/charge', untouched, {});
    assert.equal(retry.status, 423, show(retry));
    assert.equal(retry.body.error.code, 'cvv_blocked');
    assert.equal(provider.charges().length - before, 3);
  });

  it('reissue and cancel while a slow charge runs on another process: 409 with Retry-After; one authorization; completed', async () => {
    const { key, provider } = get();
    // Long enough that the refused calls are surely answered while the provider still holds the charge.
    provider.delayMs = 2000;
    const reference = `race-own-${randomBytes(4).toString('hex')}`;
    const tok = await card(at(0), '4000000000001018');
    const s = await session(at(1), tok, reference);
    const c = await call(at(0), 'POST', '/CvvOperations/collectCvv', s.token, { cvv: '123' });
    assert.equal(c.status, 200, show(c));
    const before = provider.charges().length;
    const charging = call(at(0), 'POST', '/CvvOperations/charge', c.body.token, {});
    await provider.reached(before + 1);
    const [re, cancel] = await Promise.all([
      call(at(1), 'POST', `/CvvOperations/${s.id}/token`, key),
      call(at(1), 'POST', `/CvvOperations/${s.id}/cancel`, key),
    ]);
    assertBusy(re, 'reissue during the charge');
    assertBusy(cancel, 'cancel during the charge');
    const del = await call(at(1), 'DELETE', `/CvvOperations/${s.id}/cvv`, key);
    assertBusy(del, 'DELETE /CvvOperations/{id}/cvv during the charge');
    const first = await charging;
    assert.equal(first.status, 200, show(first));
    assert.equal(first.body.result.status, 'approved', show(first));
    assert.equal(first.body.session.status, 'completed');
    const mine = provider.charges().filter((x) => x.reference === reference);
    assert.equal(mine.length, 1, `the provider saw ${mine.length} charge requests for the session`);
    assert.equal(mine[0]!.cvc, '123');
    const g = await call(at(1), 'GET', `/CvvOperations/${s.id}`, key);
    assert.equal(g.status, 200, show(g));
    assert.equal(g.body.status, 'completed', show(g));
    assert.equal(g.body.results.charge.status, 'approved', show(g));
    assert.equal(g.body.results.charge.chargeId, first.body.result.chargeId);
    // Settled, the session is done: a reissue now is session_completed, not busy.
    const late = await call(at(1), 'POST', `/CvvOperations/${s.id}/token`, key);
    assert.equal(late.status, 409, show(late));
    assert.equal(late.body.error.code, 'session_completed');
  });
}

/** The merchant, created through the storage the servers will share (this also migrates it); its test key. */
async function createMerchant(env: Record<string, string>): Promise<string> {
  const deps = await createDeps(loadConfig(env), createLogger('silent'));
  try {
    return (await deps.merchants.create({ name: 'Races', origins: ['https://shop.example'] })).testKey.expose();
  } finally {
    await deps.close();
  }
}

/** Test-mode settings (the test key): the http processor pointed at the slow provider. */
async function useProvider(base: string, key: string, provider: SlowProvider): Promise<void> {
  const p = await call(base, 'PATCH', '/Merchant', key, { allowedProxyTargets: [`${provider.url()}/`], processor: slowProviderConfig(provider) });
  assert.equal(p.status, 200, show(p));
}

describe('races across node:cluster workers on SQLite (CVVOPS_WORKERS=2)', () => {
  let server: ServerProcess;
  let dir: string;
  const setup = {} as Setup;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cvvops-races-'));
    setup.provider = await SlowProvider.start();
    const env = {
      DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`,
      CVVOPS_MASTER_KEY: randomBytes(32).toString('base64'),
      CVVOPS_DEMO: 'off',
      CVVOPS_RATE_LIMIT: 'off',
      CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
      CVVOPS_WORKERS: '2',
    };
    setup.key = await createMerchant(env);
    server = await startServerProcess(env);
    setup.bases = [server.base];
    for (let i = 0; i < 100 && server.stdout().split('cvvops listening').length - 1 < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.stdout().split('cvvops listening').length - 1, 2, 'two workers listening');
    await useProvider(server.base, setup.key, setup.provider);
  });

  after(async () => {
    await server?.stop();
    await setup.provider?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  scenarios(() => setup);
});

if (!PG_BASE) {
  describe('races across two instances on one PostgreSQL database', () => {
    it('runs two server processes on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
} else {
  describe('races across two instances on one PostgreSQL database', () => {
    let a: ServerProcess;
    let b: ServerProcess;
    let drop: (() => Promise<void>) | undefined;
    const setup = {} as Setup;

    before(async () => {
      const schema = await freshPgSchema();
      drop = schema.drop;
      setup.provider = await SlowProvider.start();
      const env = {
        DATABASE_URL: schema.url,
        CVVOPS_MASTER_KEY: randomBytes(32).toString('base64'),
        CVVOPS_DEMO: 'off',
        CVVOPS_RATE_LIMIT: 'off',
        CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
        PUBLIC_BASE_URL: 'http://cvv.races.test',
      };
      // Migrated once first; then both instances start together on the shared schema.
      setup.key = await createMerchant(env);
      [a, b] = await Promise.all([startServerProcess(env), startServerProcess(env)]);
      setup.bases = [a.base, b.base];
      await useProvider(b.base, setup.key, setup.provider);
    });

    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await setup.provider?.close();
      await drop?.();
    });

    scenarios(() => setup);
  });
}
