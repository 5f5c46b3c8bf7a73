import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { GatedProcessor } from '../helpers/gated-processor.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * API.md section 5: CVV blocking holds however many charges arrive at once. A charge reserves its CVV attempt
 * before the processor is called, so no more than the threshold of unconfirmed or wrong CVVs for one card number
 * are ever at processors together; the others get 409 precondition_failed with Retry-After, or 423 once blocked.
 */
describe('CVV blocking under parallel attempts', () => {
  let h: Harness;
  let m: TestMerchant;
  const processor = new GatedProcessor();
  before(async () => {
    h = await makeHarness({ simulator: processor });
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('20 parallel charges with 20 different wrong CVVs: at most the threshold (3) reach the processor; the card ends blocked at 3', async () => {
    const card = await makeCard(h, m.testKey, { number: '4000000000004046' });
    const tokens: string[] = [];
    for (let i = 0; i < 20; i++) {
      const s = await makeSession(h, m.testKey, { card });
      const c = await collect(h, s.token, String(200 + i));
      assert.equal(c.status, 200, JSON.stringify(c.body));
      tokens.push(c.body.token);
    }
    processor.hold = true;
    const before = processor.calls.length;
    const pending = tokens.map((t) =>
      request(h.app)
        .post('/CvvOperations/charge')
        .set(auth(t))
        .send({})
        .then((r) => r),
    );
    // Those not let through answer at once, while the ones at the processor are held there.
    await processor.reached(before + 3);
    const settled = await Promise.race([Promise.all(pending), new Promise<null>((resolve) => setTimeout(() => resolve(null), 1500))]);
    assert.equal(settled, null, 'the reserved charges are still held at the processor');
    assert.equal(processor.calls.length - before, 3, 'exactly the threshold of wrong CVVs is at the processor');
    processor.release();
    const all = await Promise.all(pending);
    const ran = all.filter((r) => r.status === 200);
    const refused = all.filter((r) => r.status !== 200);
    assert.equal(ran.length, 3);
    for (const r of ran) {
      assert.equal(r.body.result.status, 'declined');
      assert.equal(r.body.result.declineCode, 'incorrect_cvc');
    }
    for (const r of refused) {
      assert.ok(r.status === 409 || r.status === 423, `${r.status} ${JSON.stringify(r.body)}`);
      if (r.status === 409) {
        assert.equal(r.body.error.code, 'precondition_failed');
        assert.match(String(r.headers['retry-after']), /^[1-9]\d*$/);
      } else {
        assert.equal(r.body.error.code, 'cvv_blocked');
      }
    }
    assert.equal(processor.calls.length - before, 3, 'no more reached the processor');
    const st = await request(h.app).get(`/Cards/${card}/cvv/status`).set(auth(m.testKey));
    assert.equal(st.body.status, 'Blocked');
    assert.equal(st.body.failedAttempts, 3, 'failures never exceed the threshold');
    // The refused charges left their tokens current: once blocked, retrying them is 423 and still reaches nothing.
    const untouched = tokens[all.findIndex((r) => r.status !== 200)]!;
    const retry = await request(h.app).post('/CvvOperations/charge').set(auth(untouched)).send({});
    assert.equal(retry.status, 423);
    assert.equal(retry.body.error.code, 'cvv_blocked');
    assert.equal(processor.calls.length - before, 3);
  });

  it('a refused attempt counts nothing: its token stays current and its attempt unused', async () => {
    const card = await makeCard(h, m.testKey, { number: '4000000000005050' });
    const sessions = [];
    for (let i = 0; i < 4; i++) {
      const s = await makeSession(h, m.testKey, { card });
      const c = await collect(h, s.token, String(300 + i));
      sessions.push({ id: s.id, token: c.body.token as string });
    }
    processor.hold = true;
    const before = processor.calls.length;
    const held = sessions.slice(0, 3).map((s) =>
      request(h.app)
        .post('/CvvOperations/charge')
        .set(auth(s.token))
        .send({})
        .then((r) => r),
    );
    await processor.reached(before + 3);
    const fourth = await request(h.app).post('/CvvOperations/charge').set(auth(sessions[3]!.token)).send({});
    assert.equal(fourth.status, 409);
    assert.equal(fourth.body.error.code, 'precondition_failed');
    const g = await request(h.app).get(`/CvvOperations/${sessions[3]!.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.charge.used, 0, 'no attempt counted');
    processor.release();
    await Promise.all(held);
    const st = await request(h.app).get(`/Cards/${card}/cvv/status`).set(auth(m.testKey));
    assert.equal(st.body.status, 'Blocked');
    await request(h.app).post(`/Cards/${card}/cvv/unblock`).set(auth(m.testKey)).send();
    // Unblocked, the fourth session's untouched token charges with the right CVV... after collecting it again.
    const c = await collect(h, sessions[3]!.token, '123');
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const ok = await request(h.app).post('/CvvOperations/charge').set(auth(c.body.token)).send({});
    assert.equal(ok.status, 200);
    assert.equal(ok.body.result.status, 'approved');
  });
});
