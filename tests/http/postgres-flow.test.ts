import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import request from 'supertest';
import type { KyselyStore } from '../../server/store/kysely-store.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';

/** The HTTP flows on PostgreSQL: no feature is SQLite-only. */
if (!PG_BASE) {
  describe('flows on PostgreSQL', () => {
    it('runs the HTTP flows on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
} else {
  describe('flows on PostgreSQL', () => {
    let h: Harness;
    let m: TestMerchant;
    let drop: () => Promise<void>;
    before(async () => {
      const s = await freshPgSchema();
      drop = s.drop;
      h = await makeHarness({ databaseUrl: s.url, env: { CVVOPS_RATE_LIMIT: 'on', CVVOPS_RATE_LIMIT_SESSION: '8' } });
      m = await makeMerchant(h);
    });
    after(async () => {
      await h.close();
      await drop();
    });

    it('create, collect, 3DS challenge, charge, validate', async () => {
      const card = await makeCard(h, m.testKey, { number: '4000000000002024' });
      const s = await makeSession(h, m.testKey, { card, require3DS: true });
      const c = await collect(h, s.token);
      assert.equal(c.status, 200);
      const t = await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
      assert.equal(t.body.result.status, 'C');
      await request(h.app).post(`/hosted/3ds/${t.body.result.transactionId}`).type('form').send({ code: '123456' }).expect(200);
      const r = await request(h.app).post('/CvvOperations/threeDS/result').set(auth(t.body.token)).send({});
      assert.equal(r.body.result.status, 'Y');
      const p = await request(h.app).post('/CvvOperations/charge').set(auth(r.body.token)).set('Idempotency-Key', 'pg-1').send({});
      assert.equal(p.body.result.status, 'approved');
      const again = await request(h.app).post('/CvvOperations/charge').set(auth(r.body.token)).set('Idempotency-Key', 'pg-1').send({});
      assert.deepEqual(again.body, p.body);
      const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: p.body.token });
      assert.equal(v.body.valid, true);
      assert.equal(v.body.current, true);
      assert.equal(v.body.session.status, 'completed');
    });

    it('rate limits are counted in PostgreSQL (per session)', async () => {
      const s = await makeSession(h, m.testKey);
      const codes: number[] = [];
      for (let i = 0; i < 9; i++) codes.push((await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).send({ cvv: '1' })).status);
      assert.deepEqual(codes, [400, 400, 400, 400, 400, 400, 400, 400, 429]);
    });

    it('a destroyed CVV is useless on disk: its key share is deleted and the share table vacuumed; the ciphertext alone opens with nothing', async () => {
      const store = h.deps.store as KyselyStore;
      const vacuums = async () =>
        Number(
          (
            await sql<{
              n: string;
            }>`select coalesce(vacuum_count, 0) as n from pg_stat_user_tables where relname = 'cvv_keys' and schemaname = current_schema()`.execute(store.db)
          ).rows[0]?.n ?? 0,
        );
      const before = await vacuums();
      const s = await makeSession(h, m.testKey);
      const c = await collect(h, s.token, '777');
      const id = c.body.result.cvcSession.id;
      const row = (await h.deps.store.cvc.getById(id, h.clock.now()))!;
      assert.equal((await h.deps.vault.open(row)).expose(), '777');
      assert.ok(await h.deps.store.cvc.getKeyShare(id));
      await request(h.app).delete(`/CvcSessions/${id}`).set(auth(m.testKey)).expect(204);
      assert.equal(await h.deps.store.cvc.getKeyShare(id), null, 'the share is gone');
      await assert.rejects(h.deps.vault.open(row), (e: any) => e.code === 'cvc_session_not_found', 'a dead row read back is useless without its share');
      assert.throws(() => h.deps.keyring.open('cvv', row.sealed, `cvv|${m.id}|${id}`), 'the CVV key alone does not open it');
      let after = before;
      for (let i = 0; i < 40 && after === before; i++) {
        await new Promise((r) => setTimeout(r, 100));
        after = await vacuums();
      }
      assert.ok(after > before, 'cvv_keys was vacuumed after the deletion');
      const kind = await sql<{
        relpersistence: string;
      }>`select relpersistence from pg_class where relname = 'cvv_keys' and relnamespace = current_schema()::regnamespace`.execute(store.db);
      assert.equal(kind.rows[0]?.relpersistence, 'u', 'the share table is UNLOGGED: shares never reach the WAL');
    });

    it('concurrent calls with one token: exactly one wins', async () => {
      const s = await makeSession(h, m.testKey, { maxAttempts: 10 });
      const server = h.app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const port = (server.address() as { port: number }).port;
      try {
        const results = await Promise.all(
          ['111', '222', '333', '444'].map((cvv) =>
            fetch(`http://127.0.0.1:${port}/CvvOperations/collectCvv`, {
              method: 'POST',
              headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
              body: JSON.stringify({ cvv }),
            }).then((r) => r.status),
          ),
        );
        assert.equal(results.filter((x) => x === 200).length, 1, String(results));
        assert.equal(results.filter((x) => x === 409).length, 3, String(results));
      } finally {
        server.close();
      }
    });
  });
}
