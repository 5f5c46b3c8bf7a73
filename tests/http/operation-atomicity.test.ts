import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import request from 'supertest';
import { Sweeper } from '../../server/domain/sweeper.js';
import { auth, collect, decodeJws, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * An operation's state change and its webhook event are written in one transaction: when the event cannot be
 * written, nothing of the operation is (no rotation, no attempt, no CVV, no 3DS transaction), and when the
 * operation answers, its event is in the outbox. Before, the state change was committed first and the event
 * written after it, so a crash (or a failed write) in between lost the event.
 */
describe('an operation and its webhook event commit together', () => {
  let h: Harness;
  let m: TestMerchant;
  let side: Database.Database;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    const w = await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url: 'http://127.0.0.1:9/hooks', events: ['cvv.collected', 'threeds.completed'] });
    assert.equal(w.status, 201);
    // A second connection to the same file: it makes the outbox refuse writes, as a full disk or a crash at that
    // moment would, while everything else works.
    side = new Database(h.dbPath);
  });
  after(async () => {
    side.close();
    await h.close();
  });
  const failOutbox = (on: boolean) =>
    side.exec(
      on
        ? "CREATE TRIGGER IF NOT EXISTS outbox_fails BEFORE INSERT ON webhook_outbox BEGIN SELECT RAISE(ABORT, 'the outbox cannot be written'); END"
        : 'DROP TRIGGER IF EXISTS outbox_fails',
    );
  const outboxOf = async (sessionId: string) => (await h.deps.store.webhooks.listOutbox(m.id)).filter((o) => JSON.parse(o.body).data.session === sessionId);

  it('collectCvv: the event cannot be written, so neither is the CVV, the rotation or the attempt', async () => {
    const s = await makeSession(h, m.testKey);
    failOutbox(true);
    let r: request.Response;
    try {
      r = await collect(h, s.token);
    } finally {
      failOutbox(false);
    }
    assert.equal(r.status, 500, JSON.stringify(r.body));
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 0, 'no attempt counted');
    assert.equal(g.body.cvv.available, false, 'no CVV stored');
    assert.equal(g.body.results.collectCvv, undefined);
    assert.equal(await h.deps.store.cvc.findUsable(m.id, s.body.card.token, s.id, h.clock.now()), null);
    assert.deepEqual(await outboxOf(s.id), []);
    // The token is still current: the same call now goes through, with its event.
    const ok = await collect(h, s.token);
    assert.equal(ok.status, 200);
    assert.equal(decodeJws(ok.body.token).payload.seq, 1);
    assert.deepEqual(
      (await outboxOf(s.id)).map((o) => JSON.parse(o.body).type),
      ['cvv.collected'],
    );
  });

  it('threeDS: the event cannot be written, so neither is the 3DS transaction nor the rotation', async () => {
    const card = await makeCard(h, m.testKey);
    const s = await makeSession(h, m.testKey, { card });
    const c = await collect(h, s.token);
    failOutbox(true);
    let r: request.Response;
    try {
      r = await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
    } finally {
      failOutbox(false);
    }
    assert.equal(r.status, 500, JSON.stringify(r.body));
    assert.equal((await h.deps.store.sessions.getOperationContext(s.id, h.clock.now()))?.latestTds, null, 'no 3DS transaction stored');
    const again = await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
    assert.equal(again.status, 200, 'the token was never consumed');
    assert.equal(again.body.result.status, 'Y');
    assert.deepEqual(
      (await outboxOf(s.id)).map((o) => JSON.parse(o.body).type),
      ['cvv.collected', 'threeds.completed'],
    );
  });

  it('cancel: the session.canceled event cannot be written, so the session is not canceled and keeps its CVV', async () => {
    const s = await makeSession(h, m.testKey);
    assert.equal((await collect(h, s.token)).status, 200);
    await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url: 'http://127.0.0.1:9/cancel', events: ['session.canceled', 'session.expired'] })
      .expect(201);
    h.deps.webhooks.forget(m.id, 'test');
    failOutbox(true);
    let r: request.Response;
    try {
      r = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send();
    } finally {
      failOutbox(false);
    }
    assert.equal(r.status, 500, JSON.stringify(r.body));
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.status, 'active');
    assert.equal(g.body.cvv.available, true, 'the CVV was not deleted either');
    const ok = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send();
    assert.equal(ok.status, 200);
    assert.equal(ok.body.cvv.available, false);
    assert.ok((await outboxOf(s.id)).some((o) => JSON.parse(o.body).type === 'session.canceled'));
  });

  it('expiry: the sweeper cannot write session.expired, so the session is not expired yet; the next sweep does both', async () => {
    const s = await makeSession(h, m.testKey, { ttlSeconds: 60 });
    assert.equal((await collect(h, s.token)).status, 200);
    const sweeper = new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks);
    h.clock.advance(61_000);
    h.deps.webhooks.forget(m.id, 'test');
    failOutbox(true);
    try {
      await sweeper.tick();
    } finally {
      failOutbox(false);
    }
    const row = await h.deps.store.sessions.getById(s.id);
    assert.equal(row?.status, 'active', 'not marked expired without its event (it is served as expired anyway: expiry is checked in every read)');
    assert.ok(!(await outboxOf(s.id)).some((o) => JSON.parse(o.body).type === 'session.expired'));
    await sweeper.tick();
    assert.equal((await h.deps.store.sessions.getById(s.id))?.status, 'expired');
    assert.deepEqual((await outboxOf(s.id)).filter((o) => JSON.parse(o.body).type === 'session.expired').length, 1);
    assert.equal(await h.deps.store.cvc.findUsable(m.id, s.body.card.token, s.id, 0), null, 'its CVV is gone with it');
  });
});
