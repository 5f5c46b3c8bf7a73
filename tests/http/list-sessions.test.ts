import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { ManualClock } from '../../server/domain/clock.js';
import { auth, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';

/** GET /CvvOperations: Stripe-style pages (limit, starting_after, newest first), filters, and only the key's merchant and mode. */
listSessions('SQLite');
if (PG_BASE) listSessions('PostgreSQL');
else {
  describe('GET /CvvOperations on PostgreSQL', () => {
    it('lists on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
}

function listSessions(engine: 'SQLite' | 'PostgreSQL'): void {
  describe(`GET /CvvOperations on ${engine}`, () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 12, 0, 0));
    let h: Harness;
    let a: TestMerchant;
    let b: TestMerchant;
    let card: string;
    const mine: string[] = []; // merchant A's test-mode sessions, oldest first
    const canceled: string[] = [];
    let liveId: string;
    let otherId: string;
    let t10: number;

    let drop = async () => {};
    before(async () => {
      let databaseUrl: string | undefined;
      if (engine === 'PostgreSQL') ({ url: databaseUrl, drop } = await freshPgSchema());
      h = await makeHarness({ clock, ...(databaseUrl ? { databaseUrl } : {}) });
      a = await makeMerchant(h);
      b = await makeMerchant(h);
      card = await makeCard(h, a.testKey);
      const otherCard = await makeCard(h, a.testKey);
      for (let i = 0; i < 25; i++) {
        if (i === 10) t10 = clock.now();
        mine.push((await makeSession(h, a.testKey, { card: i % 5 === 0 ? otherCard : card })).id);
        createdAt.set(mine.at(-1)!, clock.now());
        clock.advance(i % 3 === 0 ? 0 : 1000); // some share a creation second: the id breaks the tie
      }
      for (const id of [mine[3]!, mine[7]!, mine[20]!]) {
        assert.equal((await request(h.app).post(`/CvvOperations/${id}/cancel`).set(auth(a.testKey)).send({})).status, 200);
        canceled.push(id);
      }
      liveId = (await makeSession(h, a.liveKey, { card: await makeCard(h, a.liveKey, { number: '5454545454545454' }) })).id;
      otherId = (await makeSession(h, b.testKey)).id;
    });
    after(async () => {
      await h.close();
      await drop();
    });

    const createdAt = new Map<string, number>();
    const sameTick = (x: string, y: string) => createdAt.get(x) === createdAt.get(y);
    const list = (key: string, query: Record<string, string> = {}) => request(h.app).get('/CvvOperations').query(query).set(auth(key));

    it('pages through every session of the key, newest first, each once', async () => {
      const seen: string[] = [];
      let after: string | undefined;
      for (let page = 0; page < 10; page++) {
        const r = await list(a.testKey, { limit: '10', ...(after ? { starting_after: after } : {}) });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.object, 'list');
        seen.push(...r.body.data.map((s: { id: string }) => s.id));
        if (!r.body.hasMore) break;
        assert.equal(r.body.data.length, 10);
        after = r.body.data.at(-1).id;
      }
      assert.deepEqual([...seen].sort(), [...mine].sort(), 'every one, nothing of the other mode or merchant');
      assert.equal(new Set(seen).size, seen.length, 'each once');
      // Newest first: creation order reversed, except that sessions created in the same millisecond come in id order.
      const rank = new Map(mine.map((id, i) => [id, i]));
      for (let i = 1; i < seen.length; i++) assert.ok(rank.get(seen[i - 1]!)! > rank.get(seen[i]!)! || sameTick(seen[i - 1]!, seen[i]!), `${i}: newest first`);
      const first = (await list(a.testKey)).body;
      assert.equal(first.data.length, 10, 'limit defaults to 10');
      assert.equal(first.data[0].object, 'cvv_operations');
      assert.equal(first.data[0].card.token, card);
    });

    it('filters: status, card, created[gte] and created[lt] (ISO 8601 or Unix seconds)', async () => {
      const ids = async (q: Record<string, string>) => (await list(a.testKey, { limit: '100', ...q })).body.data.map((s: { id: string }) => s.id).sort();
      assert.deepEqual(await ids({ status: 'canceled' }), [...canceled].sort());
      assert.deepEqual(await ids({ status: 'active' }), mine.filter((id) => !canceled.includes(id)).sort());
      assert.deepEqual(await ids({ status: 'completed' }), []);
      const ofOther = mine.filter((_, i) => i % 5 === 0).sort();
      assert.deepEqual(
        await ids({ card: (await list(a.testKey, { limit: '100' })).body.data.find((s: { id: string }) => s.id === mine[0]).card.token }),
        ofOther,
      );
      const since = mine.filter((id) => createdAt.get(id)! >= t10).sort();
      assert.deepEqual(await ids({ 'created[gte]': new Date(t10).toISOString() }), since);
      assert.deepEqual(await ids({ 'created[gte]': String(Math.floor(t10 / 1000)) }), since);
      assert.deepEqual(await ids({ 'created[lt]': new Date(t10).toISOString() }), mine.filter((id) => createdAt.get(id)! < t10).sort());
      clock.advance(2 * 3600 * 1000); // every session is past its expiry now
      assert.deepEqual(
        await ids({ status: 'expired' }),
        mine.filter((id) => !canceled.includes(id)).sort(),
        'expired ones count as expired before the sweeper runs',
      );
      assert.deepEqual(await ids({ status: 'active' }), []);
    });

    it("another merchant's and the other mode's sessions are never listed, not even through starting_after", async () => {
      assert.deepEqual(
        (await list(b.testKey, { limit: '100' })).body.data.map((s: { id: string }) => s.id),
        [otherId],
      );
      assert.deepEqual(
        (await list(a.liveKey, { limit: '100' })).body.data.map((s: { id: string }) => s.id),
        [liveId],
      );
      const r = await list(b.testKey, { starting_after: mine[20]! });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.data, [], "a cursor that is not the key's own gives an empty page");
    });

    it('bad parameters: 400 invalid_request, naming the parameter', async () => {
      for (const [q, field] of [
        [{ limit: '0' }, 'limit'],
        [{ limit: '101' }, 'limit'],
        [{ limit: 'ten' }, 'limit'],
        [{ status: 'paid' }, 'status'],
        [{ 'created[gte]': 'yesterday' }, 'created[gte]'],
        [{ bogus: '1' }, 'bogus'],
      ] as const) {
        const r = await list(a.testKey, q);
        assert.equal(r.status, 400, JSON.stringify(q));
        assert.equal(r.body.error.code, 'invalid_request');
        assert.ok(r.body.error.message.includes(field), `${r.body.error.message} names ${field}`);
      }
      assert.equal((await request(h.app).get('/CvvOperations')).status, 401);
    });
  });
}
