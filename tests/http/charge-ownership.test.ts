import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { GatedProcessor } from '../helpers/gated-processor.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * API.md section 2: a charge in flight owns its session. From the moment a charge wins its token until its
 * outcome is recorded, every other call that would change the session answers 409 precondition_failed with
 * Retry-After; a session authorizes at most once at the processor, and what the merchant sees always includes a
 * charge the processor approved. The processor here holds its answer until the test lets it go (a slow provider).
 */
describe('a charge in flight owns its session', () => {
  let h: Harness;
  let m: TestMerchant;
  const processor = new GatedProcessor();
  before(async () => {
    h = await makeHarness({ simulator: processor, env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    const w = await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url: 'http://127.0.0.1:9/hooks', events: ['charge.succeeded', 'charge.failed', 'session.completed', 'session.canceled'] });
    assert.equal(w.status, 201, JSON.stringify(w.body));
  });
  after(() => h.close());

  /** Events of these types recorded for delivery, per session. */
  async function events(sessionId: string): Promise<string[]> {
    const rows = await h.deps.store.webhooks.listOutbox(m.id);
    return rows
      .map((r) => JSON.parse(r.body) as { type: string; data: { session?: string } })
      .filter((e) => e.data.session === sessionId)
      .map((e) => e.type);
  }

  /** A session with its CVV collected, and a charge sent with that token that the processor now holds. */
  async function chargeInFlight() {
    processor.hold = true;
    const before = processor.calls.length;
    const s = await makeSession(h, m.testKey);
    const c = await collect(h, s.token);
    assert.equal(c.status, 200);
    const t1 = c.body.token as string;
    const charging = request(h.app)
      .post('/CvvOperations/charge')
      .set(auth(t1))
      .send({})
      .then((r) => r);
    await processor.reached(before + 1);
    return { s, t1, charging };
  }

  function assertBusy(r: request.Response, what: string): void {
    assert.equal(r.status, 409, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'precondition_failed', what);
    assert.match(String(r.headers['retry-after']), /^[1-9]\d*$/, `${what}: Retry-After`);
  }

  it('a reissue during the charge is refused; the charge completes; one authorization, one charge.succeeded', async () => {
    const { s, t1, charging } = await chargeInFlight();
    const calls = processor.calls.length;
    const re = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send();
    assertBusy(re, 'reissue');
    // Nor can anyone charge again with the token the charge consumed, nor with any other.
    assertBusy(await request(h.app).post('/CvvOperations/charge').set(auth(t1)).send({}), 'second charge with the same token');
    processor.release();
    const first = await charging;
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.result.status, 'approved');
    assert.equal(first.body.session.status, 'completed');
    const again = await request(h.app).post('/CvvOperations/charge').set(auth(first.body.token)).send({});
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'session_completed');
    assert.equal(processor.calls.length, calls, 'the processor saw exactly one charge for the session');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.status, 'completed');
    assert.equal(g.body.results.charge.status, 'approved');
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: first.body.token });
    assert.equal(v.body.valid, true);
    assert.equal(v.body.current, true);
    assert.equal(v.body.session.results.charge.chargeId, first.body.result.chargeId);
    const ev = await events(s.id);
    assert.deepEqual(
      ev.filter((e) => e === 'charge.succeeded'),
      ['charge.succeeded'],
    );
    assert.ok(!ev.includes('charge.failed'));
  });

  it('a cancel during the charge is refused, and the merchant sees the approved charge', async () => {
    const { s, charging } = await chargeInFlight();
    assertBusy(await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send(), 'cancel');
    processor.release();
    const first = await charging;
    assert.equal(first.status, 200);
    assert.equal(first.body.result.status, 'approved');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.status, 'completed', 'never canceled with an approved charge behind it');
    assert.equal(g.body.results.charge.status, 'approved');
    const ev = await events(s.id);
    assert.ok(!ev.includes('session.canceled'));
    assert.deepEqual(
      ev.filter((e) => e === 'charge.succeeded'),
      ['charge.succeeded'],
    );
  });

  it('the CVV delete endpoints, the card delete and every operation answer 409 with Retry-After while the charge runs', async () => {
    const { s, t1, charging } = await chargeInFlight();
    const got = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(got.status, 200, 'reading the session is fine');
    assert.equal(got.body.status, 'active');
    assertBusy(await request(h.app).delete(`/CvvOperations/${s.id}/cvv`).set(auth(m.testKey)), 'DELETE /CvvOperations/{id}/cvv');
    const cvc = (await h.deps.store.cvc.findUsable(m.id, s.body.card.token, s.id, h.clock.now()))?.id;
    if (cvc) assertBusy(await request(h.app).delete(`/CvcSessions/${cvc}`).set(auth(m.testKey)), 'DELETE /CvcSessions/{id}');
    assertBusy(await request(h.app).delete(`/Cards/${s.body.card.token}`).set(auth(m.testKey)), 'DELETE /Cards/{token}');
    for (const [path, body] of [
      ['collectCvv', { cvv: '123' }],
      ['threeDS', {}],
      ['threeDS/result', {}],
      ['charge', {}],
    ] as const) {
      assertBusy(await request(h.app).post(`/CvvOperations/${path}`).set(auth(t1)).send(body), path);
    }
    processor.release();
    const first = await charging;
    assert.equal(first.status, 200);
    assert.equal(first.body.result.status, 'approved');
    const card = await request(h.app).get(`/Cards/${s.body.card.token}`).set(auth(m.testKey));
    assert.equal(card.status, 200, 'the card was not deleted under the charge');
  });

  it('after a declined charge the session is free again: reissue and cancel work', async () => {
    processor.hold = true;
    const before = processor.calls.length;
    const card = await makeCard(h, m.testKey, { number: '4000000000006066' });
    const s = await makeSession(h, m.testKey, { card });
    const c = await collect(h, s.token);
    const charging = request(h.app)
      .post('/CvvOperations/charge')
      .set(auth(c.body.token))
      .send({})
      .then((r) => r);
    await processor.reached(before + 1);
    assertBusy(await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send(), 'reissue');
    processor.release();
    const r = await charging;
    assert.equal(r.body.result.status, 'declined');
    const re = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send();
    assert.equal(re.status, 200);
    const cancel = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send();
    assert.equal(cancel.status, 200);
    assert.equal(cancel.body.status, 'canceled');
  });

  it('the lock is durable: a server that dies during the charge leaves it held; recovery settles the approval and releases it', async () => {
    processor.hang = true;
    const before = processor.calls.length;
    const s = await makeSession(h, m.testKey);
    const c = await collect(h, s.token);
    const orphan = request(h.app)
      .post('/CvvOperations/charge')
      .set(auth(c.body.token))
      .send({})
      .then((r) => r);
    await processor.reached(before + 1);
    processor.hang = false;
    // A second instance (or the restarted server) on the same database, later.
    const h2 = await makeHarness({ shareWith: h, simulator: processor });
    try {
      assertBusy(await request(h2.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send(), 'reissue on the other instance');
      h2.clock.set(h.clock.now() + 60_000);
      await h2.deps.charges.recoverInFlight();
      const g = await request(h2.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
      assert.equal(g.body.status, 'completed');
      assert.equal(g.body.results.charge.status, 'approved');
      assert.equal(processor.calls.length, before + 1, 'recovery asked the processor, it never charged again');
      const re = await request(h2.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send();
      assert.equal(re.status, 409);
      assert.equal(re.body.error.code, 'session_completed');
      const ev = await events(s.id);
      assert.deepEqual(
        ev.filter((e) => e === 'charge.succeeded'),
        ['charge.succeeded'],
      );
      // The first instance's connection to the provider finally breaks: it must not overwrite the settled approval.
      processor.abandon();
      const late = await orphan;
      assert.equal(late.status, 409, JSON.stringify(late.body));
      assert.equal(late.body.error.code, 'session_completed');
      const g2 = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
      assert.equal(g2.body.results.charge.status, 'approved');
      assert.deepEqual(
        (await events(s.id)).filter((e) => e === 'charge.succeeded'),
        ['charge.succeeded'],
      );
    } finally {
      await h2.close();
    }
  });
});
