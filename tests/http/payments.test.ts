import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, decodeJws, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

const op = (h: Harness, path: string, token: string, body: unknown = {}, headers: Record<string, string> = {}) =>
  request(h.app)
    .post(`/CvvOperations/${path}`)
    .set({ ...auth(token), ...headers })
    .send(body as object);

describe('3-D Secure and charges (simulators)', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  async function flow(number: string, opts: { cvv?: string; session?: Record<string, unknown> } = {}) {
    const card = await makeCard(h, m.testKey, { number });
    const s = await makeSession(h, m.testKey, { card, ...opts.session });
    const c = await collect(h, s.token, opts.cvv ?? (number.startsWith('37') ? '1234' : '123'));
    assert.equal(c.status, 200, JSON.stringify(c.body));
    return { s, card, token: c.body.token as string };
  }

  const frictionless: Array<[string, string, string | null]> = [
    ['4000000000001018', 'Y', '05'],
    ['4000000000003030', 'N', null],
    ['4000000000004046', 'A', '06'],
    ['4000000000005050', 'U', null],
    ['4000000000006066', 'Y', '05'],
    ['5555555555554402', 'Y', '02'],
    ['378282246310005', 'Y', '05'],
    ['6011111111111117', 'U', null],
  ];
  for (const [number, status, eci] of frictionless) {
    it(`3DS for ${number} is frictionless ${status}${eci ? `, ECI ${eci}` : ''}`, async () => {
      const { token } = await flow(number);
      const r = await op(h, 'threeDS', token, { browser: { language: 'en-GB', screenWidth: 1280, screenHeight: 800, timeZoneOffset: -60 } });
      assert.equal(r.status, 200);
      assert.equal(r.body.result.status, status);
      assert.equal(r.body.result.eci, eci);
      assert.match(r.body.result.transactionId, /^tds_/);
      assert.match(r.body.result.dsTransactionId, /^[0-9a-f-]{36}$/);
      assert.equal(r.body.result.version, '2.2.0');
      if (status === 'Y' || status === 'A') assert.match(r.body.result.authenticationValue, /^[A-Za-z0-9+/]{27}=$/);
      else assert.equal(r.body.result.authenticationValue, null);
      const claims = decodeJws(r.body.token).payload;
      assert.deepEqual(claims.res.threeDS, { status, eci, transactionId: r.body.result.transactionId });
      assert.ok(!JSON.stringify(claims).includes(r.body.result.authenticationValue ?? '~~'), 'the CAVV is not in the token');
    });
  }

  const charges: Array<[string, string, string | null]> = [
    ['4000000000001018', 'approved', null],
    ['4000000000006066', 'declined', 'insufficient_funds'],
    ['4000000000007072', 'declined', 'do_not_honor'],
    ['4000000000008088', 'error', null],
    ['5555555555554402', 'approved', null],
    ['378282246310005', 'approved', null],
  ];
  for (const [number, status, declineCode] of charges) {
    it(`charge for ${number} is ${status}${declineCode ? ` (${declineCode})` : ''}`, async () => {
      const { s, token } = await flow(number);
      const r = await op(h, 'charge', token);
      assert.equal(r.status, 200);
      assert.equal(r.body.result.status, status);
      assert.equal(r.body.result.declineCode, declineCode);
      assert.match(r.body.result.chargeId, /^ch_/);
      assert.deepEqual(r.body.result.amount, { value: 1999, currency: 'EUR' });
      assert.equal(r.body.result.processor, 'simulator');
      if (status === 'approved') {
        assert.match(r.body.result.authorizationCode, /^\d{6}$/);
        assert.equal(r.body.result.cvvResult, 'M');
        assert.equal(r.body.session.status, 'completed');
        const again = await op(h, 'collectCvv', r.body.token, { cvv: '123' });
        assert.equal(again.status, 409);
        assert.equal(again.body.error.code, 'session_completed');
      } else {
        assert.equal(r.body.session.status, 'active');
      }
      const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
      assert.equal(g.body.results.charge.status, status);
      assert.equal(g.body.attempts.charge.used, 1);
    });
  }

  it('a wrong CVV declines with incorrect_cvc and cvvResult N; three in a row block the card', async () => {
    const card = await makeCard(h, m.testKey, { number: '4000000000004046' });
    for (let i = 0; i < 3; i++) {
      const s = await makeSession(h, m.testKey, { card });
      const c = await collect(h, s.token, '999');
      const r = await op(h, 'charge', c.body.token);
      assert.equal(r.body.result.status, 'declined');
      assert.equal(r.body.result.declineCode, 'incorrect_cvc');
      assert.equal(r.body.result.cvvResult, 'N');
    }
    const st = await request(h.app).get(`/Cards/${card}/cvv/status`).set(auth(m.testKey));
    assert.equal(st.body.status, 'Blocked');
    assert.equal(st.body.failedAttempts, 3);
    const s = await makeSession(h, m.testKey, { card });
    assert.equal((await collect(h, s.token)).status, 423);
  });

  it('the challenge card: C with a challengeUrl, 409 while open, the hosted page, then the final result', async () => {
    const { token } = await flow('4000000000002024', { session: { require3DS: true } });
    const r = await op(h, 'threeDS', token);
    assert.equal(r.body.result.status, 'C');
    assert.equal(r.body.result.challengeUrl, `http://cvv.test/hosted/3ds/${r.body.result.transactionId}`);
    const early = await op(h, 'threeDS/result', r.body.token);
    assert.equal(early.status, 409);
    assert.equal(early.body.error.code, 'precondition_failed');
    const blocked = await op(h, 'charge', r.body.token);
    assert.equal(blocked.body.error.code, 'precondition_failed', 'require3DS: no charge before Y/A');
    const path = `/hosted/3ds/${r.body.result.transactionId}`;
    const page = await request(h.app).get(path);
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type'] ?? '', /html/);
    assert.match(page.text, /<form method="post" action="\/hosted\/3ds\/tds_/);
    assert.match(page.headers['content-security-policy'] ?? '', /frame-ancestors 'self' https:\/\/shop\.example/);
    assert.doesNotMatch(page.headers['content-security-policy'] ?? '', /unsafe-inline/);
    const done = await request(h.app).post(path).type('form').send({ code: '123456' });
    assert.equal(done.status, 200);
    assert.match(done.text, /data-cvvops-3ds-status="Y"/);
    const final = await op(h, 'threeDS/result', r.body.token);
    assert.equal(final.status, 200);
    assert.equal(final.body.result.status, 'Y');
    assert.equal(final.body.result.eci, '05');
    assert.ok(final.body.result.authenticationValue);
    const g = await request(h.app)
      .get(`/CvvOperations/${decodeJws(token).payload.sub}`)
      .set(auth(m.testKey));
    assert.equal(g.body.attempts.threeDS.used, 1, 'fetching the result is not an attempt');
    const paid = await op(h, 'charge', final.body.token);
    assert.equal(paid.body.result.status, 'approved');
  });

  it('a wrong challenge code gives N; submitting twice does not change the outcome', async () => {
    const { token } = await flow('4000000000002024');
    const r = await op(h, 'threeDS', token);
    const path = `/hosted/3ds/${r.body.result.transactionId}`;
    await request(h.app).post(path).type('form').send({ code: '000000' }).expect(200);
    await request(h.app).post(path).type('form').send({ code: '123456' }).expect(200);
    const final = await op(h, 'threeDS/result', r.body.token);
    assert.equal(final.body.result.status, 'N');
  });

  it('preconditions: requireCvv, require3DS; amounts: partial, ceiling, currency', async () => {
    const card = await makeCard(h, m.testKey);
    const s = await makeSession(h, m.testKey, { card });
    assert.equal((await op(h, 'charge', s.token)).body.error.code, 'precondition_failed');
    const c = await collect(h, s.token);
    assert.equal((await op(h, 'charge', c.body.token, { amount: { value: 2000, currency: 'EUR' } })).body.error.code, 'invalid_amount');
    assert.equal((await op(h, 'charge', c.body.token, { amount: { value: 100, currency: 'USD' } })).body.error.code, 'invalid_amount');
    assert.equal((await op(h, 'charge', c.body.token, { amount: { value: -1, currency: 'EUR' } })).body.error.code, 'invalid_amount');
    const g0 = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g0.body.attempts.charge.used, 0, 'refusals are not attempts');
    const r = await op(h, 'charge', c.body.token, { amount: { value: 1500, currency: 'EUR' } });
    assert.equal(r.body.result.status, 'approved');
    assert.deepEqual(r.body.result.amount, { value: 1500, currency: 'EUR' });
    const s2 = await makeSession(h, m.testKey, { card, require3DS: true });
    const c2 = await collect(h, s2.token);
    assert.equal((await op(h, 'charge', c2.body.token)).body.error.code, 'precondition_failed');
    const n = await op(h, 'threeDS', c2.body.token);
    assert.equal(n.body.result.status, 'Y');
    assert.equal((await op(h, 'charge', n.body.token)).body.result.status, 'approved');
    const s3 = await makeSession(h, m.testKey, { card, requireCvv: false });
    assert.equal((await op(h, 'charge', s3.token)).body.result.cvvResult, 'P', 'no CVV: not processed');
  });

  it('declines count as attempts; attempts_exhausted after maxAttempts', async () => {
    const { token } = await flow('4000000000006066', { session: { maxAttempts: 2 } });
    const a = await op(h, 'charge', token);
    const b = await op(h, 'charge', a.body.token);
    assert.equal(b.body.result.status, 'declined');
    const c = await op(h, 'charge', b.body.token);
    assert.equal(c.status, 429);
    assert.equal(c.body.error.code, 'attempts_exhausted');
  });

  it('Idempotency-Key on charge: the first outcome again, even with a newer token after a reissue; never two charges', async () => {
    const { s, token } = await flow('4000000000008088');
    const first = await op(h, 'charge', token, {}, { 'Idempotency-Key': 'pay-1' });
    assert.equal(first.body.result.status, 'error');
    const re = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey));
    const again = await op(h, 'charge', re.body.token, {}, { 'Idempotency-Key': 'pay-1' });
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, first.body);
    assert.equal(again.headers['idempotent-replayed'], 'true');
    const other = await op(h, 'charge', re.body.token, { amount: { value: 1, currency: 'EUR' } }, { 'Idempotency-Key': 'pay-1' });
    assert.equal(other.body.error.code, 'idempotency_key_reused');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.charge.used, 1);
  });
});

describe('3-D Secure: the latest transaction is the last one started, even within one millisecond', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('an abandoned challenge is never taken for the latest: threeDS/result answers the one completed after it (clock standing still)', async () => {
    // Ten sessions: before, two transactions of one millisecond were ordered by their random ids, half the time wrongly.
    for (let i = 0; i < 10; i++) {
      const card = await makeCard(h, m.testKey, { number: '4000000000002024' });
      const s = await makeSession(h, m.testKey, { card });
      const c = await collect(h, s.token);
      const first = await op(h, 'threeDS', c.body.token);
      assert.equal(first.body.result.status, 'C');
      const second = await op(h, 'threeDS', first.body.token);
      assert.equal(second.body.result.status, 'C');
      const done = await request(h.app).post(`/hosted/3ds/${second.body.result.transactionId}`).type('form').send({ code: '123456' });
      assert.ok(done.status < 400, `${done.status}`);
      const r = await op(h, 'threeDS/result', second.body.token);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.result.transactionId, second.body.result.transactionId);
      assert.equal(r.body.result.status, 'Y');
    }
  });
});
