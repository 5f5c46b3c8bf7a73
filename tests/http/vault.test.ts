import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { Sweeper } from '../../server/domain/sweeper.js';
import type { KyselyStore } from '../../server/store/kysely-store.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

const LIVE_CARD = '4242424242424242';

/**
 * Every byte of the SQLite files, the log first: a checkpoint (a worker thread
 * may run one at any time) copies the log into the main file before it empties
 * the log, so read in this order no byte in transit is missed.
 */
function dbBytes(h: Harness): Buffer {
  return Buffer.concat(
    ['-wal', '-shm', '']
      .map((s) => h.dbPath + s)
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f)),
  );
}

async function rawCvcRow(h: Harness, id: string): Promise<Buffer | null> {
  const r = await (h.deps.store as KyselyStore).db.selectFrom('cvc_sessions').select('sealed').where('id', '=', id).executeTakeFirst();
  return r ? Buffer.from(r.sealed) : null;
}

describe('the CVV vault', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  async function liveSession(body: Record<string, unknown> = {}) {
    const card = await makeCard(h, m.liveKey, { number: LIVE_CARD });
    return { card, ...(await makeSession(h, m.liveKey, { card, ...body })) };
  }
  const cvc = (id: string) => h.deps.store.cvc.getById(id, h.clock.now());

  it('live mode: a collected CVV lives exactly 90 seconds (a second before: there; at 90 s: gone)', async () => {
    const s = await liveSession();
    const t0 = h.clock.now();
    const r = await collect(h, s.token);
    assert.equal(r.status, 200);
    const id = r.body.result.cvcSession.id;
    assert.equal(Date.parse(r.body.result.cvcSession.expiresAt), Math.floor((t0 + 90_000) / 1000) * 1000);
    try {
      h.clock.set(t0 + 89_000);
      assert.ok(await cvc(id));
      assert.equal((await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.liveKey))).body.cvv.available, true);
      h.clock.set(t0 + 90_000);
      assert.equal(await cvc(id), null, 'expired rows are never served, even before the sweeper runs');
      assert.deepEqual((await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.liveKey))).body.cvv, { available: false });
      assert.equal((await request(h.app).delete(`/CvcSessions/${id}`).set(auth(m.liveKey))).status, 410);
    } finally {
      h.clock.set(t0);
    }
  });

  it('the merchant may raise the live lifetime to at most one hour (cvcSessionTtlSeconds)', async () => {
    const tooLong = await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvcSessionTtlSeconds: 3601 });
    assert.equal(tooLong.status, 400);
    const ok = await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvcSessionTtlSeconds: 3600 });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.cvcSessionTtlSeconds, 3600);
    try {
      const s = await liveSession();
      const r = await collect(h, s.token);
      assert.equal(Date.parse(r.body.result.cvcSession.expiresAt) - h.clock.now() > 3590_000, true);
    } finally {
      await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvcSessionTtlSeconds: 90 }).expect(200);
    }
  });

  it("test mode: a test card's CVV lives one year and is never destroyed by use, whatever the retention", async () => {
    const s = await makeSession(h, m.testKey);
    const r = await collect(h, s.token);
    const id = r.body.result.cvcSession.id;
    const row = (await cvc(id))!;
    assert.equal(row.retention, 'reusable');
    assert.equal(row.expiresAt - h.clock.now(), 365 * 24 * 3600_000);
    for (let i = 0; i < 3; i++) assert.equal((await h.deps.vault.useCvv(row, 'test')).expose(), '123');
    await h.deps.vault.afterAuthorization(row);
    assert.ok(await cvc(id), 'test-mode CVVs survive authorization too');
    const t0 = h.clock.now();
    try {
      h.clock.set(row.expiresAt - 1000);
      assert.ok(await cvc(id));
      h.clock.set(row.expiresAt);
      assert.equal(await cvc(id), null);
    } finally {
      h.clock.set(t0);
    }
  });

  it('single_use: the first use destroys the CVV (read once); a second use is 410 cvc_session_not_found', async () => {
    const s = await liveSession({ cvvRetention: 'single_use' });
    const r = await collect(h, s.token, '321');
    const row = (await cvc(r.body.result.cvcSession.id))!;
    assert.equal((await h.deps.vault.useCvv(row, 'charge')).expose(), '321');
    assert.equal(await cvc(row.id), null);
    assert.equal(await rawCvcRow(h, row.id), null, 'the row itself is gone');
    await assert.rejects(h.deps.vault.useCvv(row, 'charge'), (e: any) => e.code === 'cvc_session_not_found');
  });

  it('cache: the first use opens one 5-minute window (within the lifetime), later uses never extend it', async () => {
    await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvcSessionTtlSeconds: 3600 }).expect(200);
    const t0 = h.clock.now();
    try {
      const s = await liveSession({ cvvRetention: 'cache' });
      const r = await collect(h, s.token, '555');
      const row = (await cvc(r.body.result.cvcSession.id))!;
      h.clock.advance(60_000);
      const firstUse = h.clock.now();
      assert.equal((await h.deps.vault.useCvv(row, 'charge')).expose(), '555');
      const after1 = (await cvc(row.id))!;
      assert.equal(after1.expiresAt, firstUse + 5 * 60_000);
      assert.equal(after1.firstUsedAt, firstUse);
      h.clock.advance(4 * 60_000);
      assert.equal((await h.deps.vault.useCvv(after1, 'proxy')).expose(), '555');
      assert.equal((await cvc(row.id))!.expiresAt, firstUse + 5 * 60_000, 'a later use does not extend the window');
      h.clock.set(firstUse + 5 * 60_000 - 1);
      assert.ok(await cvc(row.id));
      h.clock.set(firstUse + 5 * 60_000);
      assert.equal(await cvc(row.id), null);
    } finally {
      h.clock.set(t0);
      await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvcSessionTtlSeconds: 90 }).expect(200);
    }
  });

  it('cache never outlives the CVC session: a 90 s lifetime is not stretched to 5 minutes', async () => {
    const s = await liveSession({ cvvRetention: 'cache' });
    const r = await collect(h, s.token);
    const row = (await cvc(r.body.result.cvcSession.id))!;
    await h.deps.vault.useCvv(row, 'charge');
    assert.equal((await cvc(row.id))!.expiresAt, row.expiresAt);
  });

  it('live mode: an authorization response destroys the CVV at once, whatever the retention', async () => {
    for (const retention of ['cache', 'single_use'] as const) {
      const s = await liveSession({ cvvRetention: retention });
      const r = await collect(h, s.token);
      const row = (await cvc(r.body.result.cvcSession.id))!;
      await h.deps.vault.afterAuthorization(row);
      assert.equal(await rawCvcRow(h, row.id), null, retention);
    }
  });

  it('POST /Cards with a cvv opens a CVC session for the card, which a session then finds', async () => {
    const res = await request(h.app).post('/Cards').set(auth(m.liveKey)).send({ number: LIVE_CARD, expMonth: 1, expYear: 2031, cvv: '999' });
    assert.equal(res.status, 201);
    assert.match(res.body.cvcSession.id, /^cvc_/);
    const s = await makeSession(h, m.liveKey, { card: res.body.token });
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.liveKey));
    assert.equal(g.body.cvv.available, true);
    const st = await request(h.app).get(`/Cards/${res.body.token}/cvv/status`).set(auth(m.liveKey));
    assert.deepEqual(st.body, {
      status: 'Unblocked',
      failedAttempts: 0,
      cvcSession: { available: true, id: res.body.cvcSession.id, expiresAt: res.body.cvcSession.expiresAt },
    });
  });

  it('blocking: three incorrect_cvc in a row block the card number (across tokens) until unblocked; a match resets', async () => {
    const merchant = (await h.deps.store.merchants.get(m.id, 'live'))!;
    const t1 = await makeCard(h, m.liveKey, { number: '5454545454545454' });
    const t2 = await makeCard(h, m.liveKey, { number: '5454545454545454' });
    const card1 = (await h.deps.store.cards.get(m.id, 'live', t1))!;
    const status = async (t: string) => (await request(h.app).get(`/Cards/${t}/cvv/status`).set(auth(m.liveKey))).body;
    await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'N', declineCode: 'incorrect_cvc' });
    await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'N', declineCode: 'incorrect_cvc' });
    assert.deepEqual(await status(t2), { status: 'Unblocked', failedAttempts: 2, cvcSession: { available: false } });
    // A charge that read a clean status before it ran writes nothing on its match; one that read failures resets them.
    const clean = await h.deps.store.cards.getCvvStatus(m.id, 'fp-never-failed');
    assert.equal(clean, null);
    await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'M', declineCode: null }, clean);
    assert.equal((await status(t2)).failedAttempts, 2, 'the status it read showed nothing to reset: nothing written');
    const seen = await h.deps.store.cards.getCvvStatus(m.id, card1.fingerprint);
    await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'M', declineCode: null }, seen);
    assert.equal((await status(t2)).failedAttempts, 0, 'a match resets the count');
    await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'N', declineCode: 'incorrect_cvc' });
    await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'M', declineCode: null });
    assert.equal((await status(t2)).failedAttempts, 0, 'without a prior read, a match always resets');
    for (let i = 0; i < 3; i++) await h.deps.vault.recordCvvResult(merchant, card1, { cvvResult: 'N', declineCode: 'incorrect_cvc' });
    assert.equal((await status(t2)).status, 'Blocked', 'counted per card number, not per token');
    const s = await makeSession(h, m.liveKey, { card: t2 });
    const blocked = await collect(h, s.token);
    assert.equal(blocked.status, 423);
    assert.equal(blocked.body.error.code, 'cvv_blocked');
    assert.equal(
      (await request(h.app).post('/Cards').set(auth(m.liveKey)).send({ number: '5454545454545454', expMonth: 1, expYear: 2031, cvv: '123' })).status,
      423,
    );
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.liveKey)).send({ token: s.token });
    assert.equal(v.body.current, true, '423 does not rotate');
    await request(h.app).post(`/Cards/${t1}/cvv/unblock`).set(auth(m.liveKey)).expect(204);
    assert.deepEqual(await status(t2), { status: 'Unblocked', failedAttempts: 0, cvcSession: { available: false } });
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('the threshold is a merchant setting (cvvBlockThreshold)', async () => {
    await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvvBlockThreshold: 1 }).expect(200);
    try {
      const merchant = (await h.deps.store.merchants.get(m.id, 'live'))!;
      const t = await makeCard(h, m.liveKey, { number: '4111111111111111' });
      await h.deps.vault.recordCvvResult(merchant, (await h.deps.store.cards.get(m.id, 'live', t))!, { cvvResult: 'N', declineCode: 'incorrect_cvc' });
      assert.equal((await request(h.app).get(`/Cards/${t}/cvv/status`).set(auth(m.liveKey))).body.status, 'Blocked');
    } finally {
      await request(h.app).patch('/Merchant').set(auth(m.liveKey)).send({ cvvBlockThreshold: 3 }).expect(200);
    }
  });

  it('the sweeper purges expired CVC sessions from the table', async () => {
    const s = await liveSession();
    const r = await collect(h, s.token);
    const id = r.body.result.cvcSession.id;
    assert.ok(await rawCvcRow(h, id));
    const t0 = h.clock.now();
    try {
      h.clock.advance(91_000);
      await new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log).tick();
      assert.equal(await rawCvcRow(h, id), null);
    } finally {
      h.clock.set(t0);
    }
  });

  it("a destroyed CVV's ciphertext is gone from every database file (main, -wal, -shm)", async () => {
    for (const destroy of ['DELETE /CvcSessions', 'DELETE /CvvOperations/{id}/cvv', 'cancel', 'DELETE /Cards', 'use']) {
      const s = await liveSession();
      const r = await collect(h, s.token);
      const id = r.body.result.cvcSession.id;
      const sealed = (await rawCvcRow(h, id))!;
      const needle = sealed.subarray(1 + 12, 1 + 12 + 16); // ciphertext and tag bytes after the IV
      (h.deps.store as KyselyStore).checkpointNow();
      assert.ok(dbBytes(h).includes(needle), `${destroy}: the ciphertext is on disk before (the test can fail)`);
      if (destroy === 'DELETE /CvcSessions') await request(h.app).delete(`/CvcSessions/${id}`).set(auth(m.liveKey)).expect(204);
      if (destroy === 'DELETE /CvvOperations/{id}/cvv') await request(h.app).delete(`/CvvOperations/${s.id}/cvv`).set(auth(m.liveKey)).expect(204);
      if (destroy === 'cancel') await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.liveKey)).expect(200);
      if (destroy === 'DELETE /Cards') await request(h.app).delete(`/Cards/${s.card}`).set(auth(m.liveKey)).expect(204);
      if (destroy === 'use') await h.deps.vault.useCvv((await cvc(id))!, 'charge');
      // The batched checkpoint runs about 20 ms after the delete: the bytes must leave the files within 2 s.
      for (const until = Date.now() + 2000; Date.now() < until && dbBytes(h).includes(needle);) await new Promise((res) => setTimeout(res, 10));
      const bytes = dbBytes(h);
      assert.ok(!bytes.includes(needle), `${destroy}: the ciphertext survived on disk`);
      assert.ok(!bytes.includes(sealed.subarray(1, 13)), `${destroy}: the IV survived on disk`);
    }
  });
});
