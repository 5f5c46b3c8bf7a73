import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';

/**
 * GET /CvvOperations/{id}/history: a session's trail, from the records its
 * changes wrote (created, each operation and its outcome, each refused call
 * with its code and request id, reissue, cancel, expiry), only for its
 * merchant and mode, and with no secret in it. On SQLite and PostgreSQL.
 */
history('SQLite');
if (PG_BASE) history('PostgreSQL');

function history(engine: 'SQLite' | 'PostgreSQL'): void {
  describe(`GET /CvvOperations/{id}/history on ${engine}`, () => {
    let h: Harness;
    let m: TestMerchant;
    let other: TestMerchant;
    let drop = async () => {};
    before(async () => {
      let databaseUrl: string | undefined;
      if (engine === 'PostgreSQL') ({ url: databaseUrl, drop } = await freshPgSchema());
      h = await makeHarness(databaseUrl ? { databaseUrl } : {});
      m = await makeMerchant(h);
      other = await makeMerchant(h);
    });
    after(async () => {
      await h.close();
      await drop();
    });

    const trail = async (id: string, key = m.testKey, query = '') => request(h.app).get(`/CvvOperations/${id}/history${query}`).set(auth(key));
    /** The trail once it holds `n` entries (a refused call's entry is written just after its answer). */
    async function settled(id: string, n: number) {
      for (let i = 0; i < 100; i++) {
        const r = await trail(id);
        if (r.body.data?.length >= n) return r;
        await new Promise((res) => setTimeout(res, 10));
      }
      return trail(id);
    }

    it('records the whole trail, oldest first, with request ids, codes and outcomes, and nothing secret', async () => {
      const s = await makeSession(h, m.testKey);
      const c = await collect(h, s.token);
      assert.equal(c.status, 200);
      const stale = await collect(h, s.token, '124'); // the spent token again, another body: refused
      assert.equal(stale.status, 409);
      const t = await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
      assert.equal(t.status, 200);
      const re = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey));
      assert.equal(re.status, 200);
      const cancel = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey));
      assert.equal(cancel.status, 200);
      const again = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey));
      assert.equal(again.status, 200, 'canceling a canceled session answers the session');
      const late = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey));
      assert.equal(late.status, 409);

      const r = await settled(s.id, 7);
      assert.equal(r.status, 200);
      const rows = r.body.data as Array<Record<string, unknown>>;
      assert.deepEqual(
        rows.map((e) => [e.type, e.operation, e.outcome, e.code]),
        [
          ['created', null, null, null],
          ['operation', 'collectCvv', 'succeeded', null],
          ['refused', 'POST /CvvOperations/collectCvv', null, 'token_superseded'],
          ['operation', 'threeDS', 'Y', null],
          ['reissued', null, null, null],
          ['canceled', null, null, null],
          ['refused', 'POST /CvvOperations/{id}/token', null, 'session_canceled'],
        ],
      );
      assert.equal(rows[2]!.requestId, stale.body.error.requestId, "the refused call's request id, as its error body gave it");
      assert.equal(rows[6]!.requestId, late.body.error.requestId);
      assert.equal(rows[1]!.requestId, c.headers['x-request-id']);
      for (const e of rows) assert.match(String(e.createdAt), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
      assert.equal(r.body.hasMore, false);
      const body = JSON.stringify(r.body);
      for (const secret of [s.token, c.body.token, re.body.token, m.testKey, TEST_CARD, '"123"', '"124"'])
        assert.ok(!body.includes(secret), `no secret in the trail: ${secret.slice(0, 8)}…`);
    });

    it('pages with limit and starting_after (oldest first); refuses a bad limit', async () => {
      const s = await makeSession(h, m.testKey);
      let token = s.token;
      for (let i = 0; i < 3; i++) token = (await collect(h, token)).body.token;
      const first = await trail(s.id, m.testKey, '?limit=2');
      assert.deepEqual(
        first.body.data.map((e: { type: string }) => e.type),
        ['created', 'operation'],
      );
      assert.equal(first.body.hasMore, true);
      const next = await trail(s.id, m.testKey, `?limit=2&starting_after=${first.body.data[1].id}`);
      assert.equal(next.body.data.length, 2);
      assert.equal(next.body.hasMore, false);
      assert.equal((await trail(s.id, m.testKey, '?limit=0')).status, 400);
      assert.equal((await trail(s.id, m.testKey, '?limit=2&starting_after=hst_unknown')).body.data.length, 0);
    });

    it("another merchant's or the other mode's key gets a 404, and its refused calls leave no trace in the trail", async () => {
      const s = await makeSession(h, m.testKey);
      assert.equal((await trail(s.id, other.testKey)).status, 404);
      assert.equal((await trail(s.id, m.liveKey)).status, 404);
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(other.testKey))).status, 404);
      // A marker: the session's own merchant's refused call, written after the foreign one would have been.
      await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey));
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey))).status, 409);
      const r = await settled(s.id, 3);
      assert.deepEqual(
        r.body.data.map((e: { type: string; code: string | null }) => [e.type, e.code]),
        [
          ['created', null],
          ['canceled', null],
          ['refused', 'session_canceled'],
        ],
        "only the merchant's own calls are in the trail",
      );
      assert.deepEqual(await h.deps.store.sessions.history(other.id, 'test', s.id, { limit: 10 }), [], 'nothing stored under the other merchant either');
    });

    it('a charge records its outcome and decline code; expiry is recorded by the sweeper', async () => {
      const card = await request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: '4000000000006066', expMonth: 12, expYear: 2030 });
      const s = await makeSession(h, m.testKey, { card: card.body.token, ttlSeconds: 60 });
      const c = await collect(h, s.token);
      const t = await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
      const ch = await request(h.app).post('/CvvOperations/charge').set(auth(t.body.token)).send({});
      assert.equal(ch.body.result.status, 'declined');
      h.clock.advance(61_000);
      const { Sweeper } = await import('../../server/domain/sweeper.js');
      await new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log).tick();
      const rows = (await trail(s.id)).body.data as Array<Record<string, unknown>>;
      assert.deepEqual(rows.at(-2), { ...rows.at(-2), type: 'operation', operation: 'charge', outcome: 'declined', code: 'insufficient_funds' });
      assert.deepEqual(rows.at(-1), { ...rows.at(-1), type: 'expired', requestId: null });
    });
  });
}
