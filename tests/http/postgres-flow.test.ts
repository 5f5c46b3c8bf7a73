import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
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

    it('concurrent calls with one token: exactly one wins', async () => {
      const s = await makeSession(h, m.testKey, { maxAttempts: 10 });
      const server = h.app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const port = (server.address() as { port: number }).port;
      try {
        const results = await Promise.all(['111', '222', '333', '444'].map((cvv) => fetch(`http://127.0.0.1:${port}/CvvOperations/collectCvv`, {
          method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ cvv }),
        }).then((r) => r.status)));
        assert.equal(results.filter((x) => x === 200).length, 1, String(results));
        assert.equal(results.filter((x) => x === 409).length, 3, String(results));
      } finally {
        server.close();
      }
    });
  });
}
