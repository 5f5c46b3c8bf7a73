import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import request from 'supertest';
import type { Database } from '../../server/store/schema.js';
import type { KyselyStore } from '../../server/store/kysely-store.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';

/**
 * The round-trip budget (one read and one transaction per operation): the store calls each operation awaits,
 * and the statements run meanwhile (printed at the end). Authentication's calls are not counted (an API key is
 * one indexed lookup, merchants are cached; a session token is verified without the store), nor the webhook
 * endpoints, cached for a second; their statements are in the statement count. On both engines each counted
 * call is one round trip to the database: on PostgreSQL a unit's statements go in one pipelined exchange with
 * its BEGIN and COMMIT (the store counts its exchanges), on SQLite a unit is one synchronous call.
 */
const NOT_COUNTED = new Set(['merchants.findApiKeyByHash', 'merchants.get', 'webhooks.listEndpoints']);

if (PG_BASE) roundTrips('PostgreSQL');
else {
  describe('round trips per operation on PostgreSQL', () => {
    it('one round trip per store call', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
}
roundTrips('SQLite');

function roundTrips(engine: 'SQLite' | 'PostgreSQL'): void {
  describe(`round trips per operation on ${engine}`, () => {
    let h: Harness;
    let m: TestMerchant;
    const calls: string[] = [];
    let trips = 0;
    let counting = false;
    const report: string[] = [];
    let drop = async () => {};

    before(async () => {
      let databaseUrl: string | undefined;
      if (engine === 'PostgreSQL') ({ url: databaseUrl, drop } = await freshPgSchema());
      h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' }, ...(databaseUrl ? { databaseUrl } : {}) });
      m = await makeMerchant(h);
      // A webhook endpoint listening to every event, so each operation's events are really written.
      const w = await request(h.app)
        .post('/WebhookEndpoints')
        .set(auth(m.testKey))
        .send({
          url: 'http://127.0.0.1:9/hooks',
          events: ['cvv.collected', 'threeds.completed', 'charge.succeeded', 'charge.failed', 'session.completed', 'session.canceled'],
        });
      assert.equal(w.status, 201);
      const store = h.deps.store as KyselyStore;
      // Every method of every aggregate (store.sessions, store.charges, …), counted as `aggregate.method`.
      for (const [agg, part] of Object.entries(store)) {
        if (typeof part !== 'object' || part === null) continue;
        const proto = Object.getPrototypeOf(part) as object;
        for (const method of Object.getOwnPropertyNames(proto)) {
          const fn = Object.getOwnPropertyDescriptor(proto, method)?.value as unknown;
          if (method === 'constructor' || typeof fn !== 'function') continue;
          const name = `${agg}.${method}`;
          (part as Record<string, unknown>)[method] = function (this: unknown, ...args: unknown[]) {
            if (!counting || NOT_COUNTED.has(name)) return (fn as (...a: unknown[]) => unknown).apply(part, args);
            calls.push(name);
            // The round trips this call makes: from its start until it resolves.
            const t0 = store.roundTrips;
            const r = (fn as (...a: unknown[]) => unknown).apply(part, args);
            if (r instanceof Promise) return r.finally(() => (trips += store.roundTrips - t0));
            trips += store.roundTrips - t0;
            return r;
          };
        }
      }
    });
    after(async () => {
      if (report.length) console.log(`round trips per operation on ${engine} (store calls awaited, statements run):\n${report.join('\n')}`);
      await h.close();
      await drop();
    });

    async function measure(what: string, run: () => Promise<request.Response | void>): Promise<string[]> {
      const store = h.deps.store as KyselyStore;
      calls.length = 0;
      const before = store.statementsRun;
      trips = 0;
      counting = true;
      try {
        const r = await run();
        if (r) assert.ok(r.status < 300, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
      } finally {
        counting = false;
      }
      const got = [...calls];
      assert.equal(trips, got.length, `${what}: one round trip to the database per store call (${got.join(', ')})`);
      report.push(
        `  ${what.padEnd(16)} ${String(got.length).padStart(2)} calls, ${String(trips).padStart(2)} round trips, ${String(store.statementsRun - before).padStart(2)} statements: ${got.join(', ')}`,
      );
      return got;
    }

    it('collectCvv, threeDS and threeDS/result: one read and one write transaction each', async () => {
      const card = await makeCard(h, m.testKey, { number: '4000000000002024' }); // a challenge card: threeDS/result has something to fetch
      const s = await makeSession(h, m.testKey, { card });
      let token = s.token;
      let res!: request.Response;
      assert.deepEqual(await measure('collectCvv', async () => (res = await collect(h, token))), ['sessions.getOperationContext', 'sessions.commitOperation']);
      token = res.body.token;
      assert.deepEqual(await measure('threeDS', async () => (res = await request(h.app).post('/CvvOperations/threeDS').set(auth(token)).send({}))), [
        'sessions.getOperationContext',
        'sessions.commitOperation',
      ]);
      token = res.body.token;
      assert.equal(res.body.result.status, 'C');
      await request(h.app)
        .post(`/hosted/3ds/${res.body.result.transactionId}`)
        .type('form')
        .send({ code: '123456' })
        .expect((r) => assert.ok(r.status < 400));
      assert.deepEqual(
        await measure('threeDS/result', async () => (res = await request(h.app).post('/CvvOperations/threeDS/result').set(auth(token)).send({}))),
        ['sessions.getOperationContext', 'sessions.commitOperation'],
      );
      assert.equal(res.body.result.status, 'Y');
    });

    it('validateToken: one read', async () => {
      const s = await makeSession(h, m.testKey);
      assert.deepEqual(
        await measure('validateToken', () => request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token })),
        ['sessions.getOperationContext'],
      );
    });

    it('a charge: one read, the intent unit (the CVV taken in it), the outcome unit (events and the session finished in it)', async () => {
      const s = await makeSession(h, m.testKey);
      const c = await collect(h, s.token);
      assert.deepEqual(await measure('charge', () => request(h.app).post('/CvvOperations/charge').set(auth(c.body.token)).send({})), [
        'sessions.getOperationContext',
        'charges.begin',
        'charges.complete',
      ]);
      const events = (await h.deps.store.webhooks.listOutbox(m.id))
        .map((o) => JSON.parse(o.body))
        .filter((e) => e.data.session === s.id)
        .map((e) => e.type);
      assert.deepEqual(events.sort(), ['charge.succeeded', 'cvv.collected', 'session.completed'], "the charge's events were written in its outcome unit");
    });

    it('a charge with an Idempotency-Key: the key looked up in the same read, its response kept in the outcome unit; a retry is answered from it', async () => {
      const s = await makeSession(h, m.testKey);
      const c = await collect(h, s.token);
      const key = `rt-${s.id}`;
      let first!: request.Response;
      assert.deepEqual(
        await measure(
          'charge (keyed)',
          async () => (first = await request(h.app).post('/CvvOperations/charge').set(auth(c.body.token)).set('Idempotency-Key', key).send({})),
        ),
        ['sessions.getOperationContext', 'charges.begin', 'charges.complete'],
      );
      let again!: request.Response;
      await measure(
        'charge (retry)',
        async () => (again = await request(h.app).post('/CvvOperations/charge').set(auth(c.body.token)).set('Idempotency-Key', key).send({})),
      );
      assert.equal(again.status, first.status);
      assert.deepEqual(again.body, first.body, 'the retry gets the first response, kept with the outcome');
      assert.equal(again.headers['idempotent-replayed'], 'true');
    });

    it('create with an Idempotency-Key: one read (the card and the key), one transaction (the session and the key with its response); a retry is one read', async () => {
      const card = await makeCard(h, m.testKey);
      const body = { card, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 1999, currency: 'EUR' } };
      const key = `create-${card}`;
      let first!: request.Response;
      assert.deepEqual(
        await measure(
          'create (keyed)',
          async () => (first = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).set('Idempotency-Key', key).send(body)),
        ),
        ['sessions.getCreateContext', 'sessions.insert'],
      );
      let again!: request.Response;
      assert.deepEqual(
        await measure(
          'create (retry)',
          async () => (again = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).set('Idempotency-Key', key).send(body)),
        ),
        ['sessions.getCreateContext'],
      );
      assert.equal(again.status, 201);
      assert.deepEqual(again.body, first.body);
      assert.equal(again.headers['idempotent-replayed'], 'true');
    });

    it('create with one Idempotency-Key sent 8 times at once: one session, and every answer is its response', async () => {
      const card = await makeCard(h, m.testKey);
      const body = { card, operations: ['collectCvv'] };
      const all = await Promise.all(
        Array.from({ length: 8 }, () => request(h.app).post('/CvvOperations').set(auth(m.testKey)).set('Idempotency-Key', `burst-${card}`).send(body)),
      );
      const ok = all.filter((r) => r.status === 201);
      for (const r of all)
        assert.ok(r.status === 201 || (r.status === 409 && r.body.error.code === 'idempotency_key_reused'), `${r.status} ${JSON.stringify(r.body)}`);
      assert.ok(ok.length >= 1);
      assert.equal(new Set(ok.map((r) => r.body.id)).size, 1, 'one session id in every 201');
      const db = (h.deps.store as unknown as { db: Kysely<Database> }).db;
      const rows = await db.selectFrom('sessions').select('id').where('card_token', '=', card).execute();
      assert.equal(rows.length, 1, 'one session stored');
    });

    it('create: one read (the card), one write (the session)', async () => {
      const card = await makeCard(h, m.testKey);
      assert.deepEqual(
        await measure('create', () =>
          request(h.app)
            .post('/CvvOperations')
            .set(auth(m.testKey))
            .send({ card, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 1999, currency: 'EUR' } }),
        ),
        ['sessions.getCreateContext', 'sessions.insert'],
      );
    });
  });
}
