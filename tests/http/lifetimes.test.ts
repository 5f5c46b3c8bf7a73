import { randomBytes } from 'node:crypto';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import request from 'supertest';
import { ManualClock } from '../../server/domain/clock.js';
import { Sweeper } from '../../server/domain/sweeper.js';
import type { Database } from '../../server/store/schema.js';
import type { OutboxRecord } from '../../server/store/store.js';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';

const DAY = 24 * 3600 * 1000;

/**
 * Every table has a lifetime (README, "Data lifecycle"), with an injected
 * clock: replay records end with their 60-s window, idempotency records after
 * 24 h, webhook outbox rows 30 days after delivery or their last try, ended
 * sessions (with their 3DS transactions and charge records) CVVOPS_RETENTION_DAYS
 * after their expiry; the retention sweep runs in one instance at a time.
 */
lifetimes('SQLite');
if (PG_BASE) lifetimes('PostgreSQL');
else {
  describe('data lifetimes on PostgreSQL', () => {
    it('runs the lifetimes on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
}

function lifetimes(engine: 'SQLite' | 'PostgreSQL'): void {
  describe(`data lifetimes on ${engine}`, () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 12, 0, 0));
    let h: Harness;
    let m: TestMerchant;
    let db: Kysely<Database>;
    const sweep = (retentionDays = 90) =>
      new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks, h.deps.charges, { retentionDays, holder: 'this-instance' }).tick();
    const count = async (table: 'sessions' | 'charges' | 'tds_transactions' | 'idempotency_keys' | 'webhook_outbox', where: (q: any) => any = (q) => q) =>
      Number((await where(db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n'))).executeTakeFirstOrThrow()).n);

    let drop = async () => {};
    before(async () => {
      let databaseUrl: string | undefined;
      if (engine === 'PostgreSQL') ({ url: databaseUrl, drop } = await freshPgSchema());
      h = await makeHarness({ clock, ...(databaseUrl ? { databaseUrl } : {}) });
      m = await makeMerchant(h);
      db = (h.deps.store as unknown as { db: Kysely<Database> }).db;
    });
    after(async () => {
      await h.close();
      await drop();
    });

    it("a completed session's replay record is dropped when its 60-s window ends; a repeat of the call is then refused, not replayed", async () => {
      const s = await makeSession(h, m.testKey);
      let token = (await collect(h, s.token)).body.token as string;
      token = (await request(h.app).post('/CvvOperations/threeDS').set(auth(token)).send({})).body.token;
      const charge = () => request(h.app).post('/CvvOperations/charge').set(auth(token)).send({});
      const first = await charge();
      assert.equal(first.status, 200);
      assert.equal((await h.deps.store.sessions.getById(s.id))?.status, 'completed');
      const replayOf = async () => (await h.deps.store.sessions.getById(s.id))?.replay ?? null;
      clock.advance(59_000);
      await sweep();
      assert.ok(await replayOf(), 'kept inside the window');
      const again = await charge();
      assert.deepEqual(again.body, first.body, 'the repeat inside the window gets the same answer');
      clock.advance(2_000);
      await sweep();
      assert.equal(await replayOf(), null, 'dropped after the window');
      const late = await charge();
      assert.equal(late.status, 409, `a repeat after the window: ${JSON.stringify(late.body)}`);
    });

    it('an idempotency record lasts 24 hours', async () => {
      const card = (await makeSession(h, m.testKey)).body.card as { token: string };
      const body = { card: card.token, operations: ['collectCvv'] };
      const r = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).set('Idempotency-Key', 'lifetime-1').send(body);
      assert.equal(r.status, 201);
      const keys = () => count('idempotency_keys', (q) => q.where('idem_key', '=', 'lifetime-1'));
      clock.advance(DAY - 60_000);
      await sweep();
      assert.equal(await keys(), 1, 'kept for a day');
      clock.advance(120_000);
      await sweep();
      assert.equal(await keys(), 0, 'gone after a day');
    });

    it('webhook outbox rows: delivered ones 30 days after delivery, failed ones 30 days after their last try; pending ones stay', async () => {
      const row = (id: string, over: Partial<OutboxRecord> = {}): OutboxRecord => ({
        id,
        eventId: `evt_${id}`,
        endpointId: 'we_lifetime',
        merchantId: m.id,
        body: '{}',
        status: 'pending',
        attempts: 0,
        nextAttemptAt: clock.now() + 365 * DAY,
        lockedUntil: 0,
        lastStatus: null,
        createdAt: clock.now(),
        deliveredAt: null,
        ...over,
      });
      const t0 = clock.now();
      await h.deps.store.webhooks.enqueue([row('life_delivered'), row('life_failed'), row('life_pending')]);
      await h.deps.store.webhooks.settle('life_delivered', { status: 'delivered', attempts: 1, nextAttemptAt: t0, lastStatus: 200, now: t0 });
      await h.deps.store.webhooks.settle('life_failed', { status: 'failed', attempts: 9, nextAttemptAt: t0 + DAY, lastStatus: 500, now: t0 + DAY });
      const left = async () =>
        (await h.deps.store.webhooks.listOutbox(m.id))
          .map((o) => o.id)
          .filter((id) => id.startsWith('life_'))
          .sort();
      clock.set(t0 + 30 * DAY - 60_000);
      await sweep();
      assert.deepEqual(await left(), ['life_delivered', 'life_failed', 'life_pending'], 'all kept before 30 days');
      clock.set(t0 + 30 * DAY + 60_000);
      await sweep();
      assert.deepEqual(await left(), ['life_failed', 'life_pending'], 'the delivered row is gone after 30 days; the failed one counts from its last try');
      clock.set(t0 + 31 * DAY + 60_000);
      await sweep();
      assert.deepEqual(await left(), ['life_pending'], 'the failed row is gone 30 days after its last try');
    });

    it('ended sessions go with their 3DS transactions and charge records after the retention; active ones stay', async () => {
      const done = await makeSession(h, m.testKey);
      let token = (await collect(h, done.token)).body.token as string;
      token = (await request(h.app).post('/CvvOperations/threeDS').set(auth(token)).send({})).body.token;
      const charged = await request(h.app).post('/CvvOperations/charge').set(auth(token)).send({});
      assert.equal(charged.body.result.status, 'approved');
      const canceled = await makeSession(h, m.testKey);
      assert.equal((await request(h.app).post(`/CvvOperations/${canceled.id}/cancel`).set(auth(m.testKey)).send({})).status, 200);
      const ofDone = async () => ({
        session: await count('sessions', (q) => q.where('id', '=', done.id)),
        charges: await count('charges', (q) => q.where('session_id', '=', done.id)),
        tds: await count('tds_transactions', (q) => q.where('session_id', '=', done.id)),
      });
      assert.deepEqual(await ofDone(), { session: 1, charges: 1, tds: 1 });
      clock.advance(2 * DAY); // past their expiry by far, within a 3-day retention
      const active = await makeSession(h, m.testKey, { ttlSeconds: 3600 });
      await sweep(3);
      assert.deepEqual(await ofDone(), { session: 1, charges: 1, tds: 1 }, 'kept within the retention');
      clock.advance(2 * DAY);
      await sweep(3);
      assert.deepEqual(await ofDone(), { session: 0, charges: 0, tds: 0 }, 'gone with its charge record and 3DS transaction');
      assert.equal(await count('sessions', (q) => q.where('id', '=', canceled.id)), 0, 'the canceled session too');
      assert.equal((await request(h.app).get(`/CvvOperations/${done.id}`).set(auth(m.testKey))).status, 404);
      assert.equal(await count('sessions', (q) => q.where('id', '=', active.id)), 1, 'a session made later (its expiry within the retention) stays');
    });

    it("a card number's CVV status goes once untouched for the retention; a blocked one stays until it is lifted", async () => {
      const st = h.deps.store.cards;
      const [clean, blocked] = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
      await st.recordCvvFailure(m.id, clean, 3, clock.now());
      await st.recordCvvFailure(m.id, blocked, 1, clock.now());
      clock.advance(2 * DAY);
      await sweep(3);
      assert.ok(await st.getCvvStatus(m.id, clean), 'kept within the retention');
      clock.advance(2 * DAY);
      await sweep(3);
      assert.equal(await st.getCvvStatus(m.id, clean), null, 'untouched for longer than the retention: gone');
      assert.equal((await st.getCvvStatus(m.id, blocked))?.blocked, true, 'a block stays');
    });

    it('the retention sweep runs in one instance at a time (a lease); another takes over when the holder stops', async () => {
      const a = new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks, h.deps.charges, { retentionDays: 1 });
      const b = new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks, h.deps.charges, { retentionDays: 1 });
      clock.advance(10 * 60_000); // leases of earlier tests are past
      const s = await makeSession(h, m.testKey);
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send({})).status, 200);
      clock.advance(2 * DAY);
      assert.equal(await h.deps.store.meta.takeLease('retention', 'someone-else', clock.now(), clock.now() + 5 * 60_000), true, 'another instance holds it');
      await a.tick();
      await b.tick();
      assert.equal(await count('sessions', (q) => q.where('id', '=', s.id)), 1, 'neither sweeps while another holds the lease');
      clock.advance(5 * 60_000 + 1); // the holder stopped renewing it
      const c = new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks, h.deps.charges, { retentionDays: 1 });
      await c.tick();
      assert.equal(await count('sessions', (q) => q.where('id', '=', s.id)), 0, 'the next one takes over and sweeps');
      assert.equal(await h.deps.store.meta.takeLease('retention', 'someone-else', clock.now(), clock.now() + 5 * 60_000), false, 'and holds the lease');
    });
  });
}
