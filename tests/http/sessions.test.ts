import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, decodeJws, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

describe('operations sessions', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('creates a session with every documented field and a signed first token', async () => {
    const card = await makeCard(h, m.testKey);
    const res = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .send({
        card,
        operations: ['collectCvv', 'threeDS', 'charge'],
        amount: { value: 1999, currency: 'EUR' },
        reference: 'order-1234',
        require3DS: true,
        requireCvv: true,
        maxAttempts: 3,
        ttlSeconds: 900,
        cvvRetention: 'single_use',
        form: 'hosted',
        returnUrl: 'https://shop.example/checkout/return',
        metadata: { cart: 'c_77' },
      });
    assert.equal(res.status, 201);
    assert.match(res.body.id, /^cvo_[A-Za-z0-9_-]{22,}$/);
    assert.equal(res.body.status, 'active');
    assert.equal(res.body.mode, 'test');
    assert.deepEqual(res.body.operations, ['collectCvv', 'threeDS', 'charge']);
    assert.deepEqual(res.body.amount, { value: 1999, currency: 'EUR' });
    assert.deepEqual(res.body.card, { token: card, brand: 'visa', last4: '1018', expMonth: 12, expYear: 2030 });
    assert.equal(res.body.expiresAt, new Date(Math.floor(h.clock.now() / 1000) * 1000 + 900_000).toISOString().replace('.000', ''));
    assert.equal(res.body.formUrl, `http://cvv.test/hosted/cvv?session=${res.body.id}#token=${res.body.token}`);
    assert.ok(!res.body.formUrl.split('#')[0].includes(res.body.token), 'the token is only in the fragment');
    const { header, payload } = decodeJws(res.body.token);
    assert.deepEqual(Object.keys(header).sort(), ['alg', 'kid', 'typ']);
    assert.equal(header.alg, 'EdDSA');
    assert.equal(header.typ, 'cvvops-session+jwt');
    assert.equal(payload.iss, 'http://cvv.test');
    assert.equal(payload.aud, m.id);
    assert.equal(payload.sub, res.body.id);
    assert.equal(payload.seq, 0);
    assert.equal(payload.prev, undefined);
    assert.equal(payload.mode, 'test');
    assert.deepEqual(payload.ops, ['collectCvv', 'threeDS', 'charge']);
    assert.deepEqual(payload.amt, { value: 1999, currency: 'EUR' });
    assert.deepEqual(payload.card, { token: card, brand: 'visa', last4: '1018', cvvLength: 3 });
    assert.equal(payload.form, 'hosted');
    assert.deepEqual(payload.res, {});
    assert.equal(payload.exp, Date.parse(res.body.expiresAt) / 1000);
  });

  it('applies the defaults', async () => {
    const card = await makeCard(h, m.testKey);
    const res = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .send({ card, operations: ['collectCvv'] });
    assert.equal(res.status, 201);
    assert.equal(res.body.require3DS, false);
    assert.equal(res.body.requireCvv, true);
    assert.equal(res.body.maxAttempts, 3);
    assert.equal(res.body.cvvRetention, 'single_use');
    assert.equal(res.body.form, 'hosted');
    assert.equal(res.body.amount, null);
    assert.equal(decodeJws(res.body.token).payload.exp - decodeJws(res.body.token).payload.iat, 900);
  });

  it('refuses every malformed create request with a stable 4xx code', async () => {
    const card = await makeCard(h, m.testKey);
    const base = { card, operations: ['collectCvv', 'charge'], amount: { value: 100, currency: 'EUR' } };
    const cases: Array<[Record<string, unknown>, number, string]> = [
      [{ ...base, operations: [] }, 400, 'invalid_request'],
      [{ ...base, operations: ['collectCvv', 'collectCvv'] }, 400, 'invalid_request'],
      [{ ...base, operations: ['refund'] }, 400, 'invalid_request'],
      [{ ...base, operations: 'collectCvv' }, 400, 'invalid_request'],
      [{ card, operations: ['charge'] }, 400, 'invalid_amount'],
      [{ ...base, amount: { value: 0, currency: 'EUR' } }, 400, 'invalid_amount'],
      [{ ...base, amount: { value: 10.5, currency: 'EUR' } }, 400, 'invalid_amount'],
      [{ ...base, amount: { value: '100', currency: 'EUR' } }, 400, 'invalid_amount'],
      [{ ...base, amount: { value: 100, currency: 'XXY' } }, 400, 'invalid_amount'],
      [{ ...base, amount: { value: 100, currency: 'eur' } }, 400, 'invalid_amount'],
      [{ ...base, amount: { value: 100, currency: 'EUR', extra: 1 } }, 400, 'invalid_amount'],
      [{ ...base, maxAttempts: 0 }, 400, 'invalid_request'],
      [{ ...base, maxAttempts: 11 }, 400, 'invalid_request'],
      [{ ...base, ttlSeconds: 59 }, 400, 'invalid_request'],
      [{ ...base, ttlSeconds: 3601 }, 400, 'invalid_request'],
      [{ ...base, cvvRetention: 'forever' }, 400, 'invalid_request'],
      [{ ...base, require3DS: 'yes' }, 400, 'invalid_request'],
      [{ ...base, returnUrl: 'https://evil.example/x' }, 400, 'invalid_request'],
      [{ ...base, returnUrl: 'javascript:alert(1)' }, 400, 'invalid_request'],
      [{ ...base, form: 'frm_doesnotexist' }, 400, 'invalid_request'],
      [{ ...base, form: 'custom' }, 400, 'invalid_request'],
      [{ ...base, reference: 'a\u0000b' }, 400, 'invalid_request'],
      [{ ...base, reference: '\ud800' }, 400, 'invalid_request'],
      [{ ...base, reference: 'x'.repeat(129) }, 400, 'invalid_request'],
      [{ ...base, metadata: { k: 1 } }, 400, 'invalid_request'],
      [{ ...base, unknown: true }, 400, 'invalid_request'],
      [{ ...base, card: 'tok_doesnotexist' }, 400, 'invalid_card'],
      [{ ...base, card: 42 }, 400, 'invalid_card'],
    ];
    for (const [body, status, code] of cases) {
      const res = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).send(body);
      assert.equal(res.status, status, `${JSON.stringify(body)} → ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, code, JSON.stringify(body));
      assert.equal(res.body.error.requestId, res.headers['x-request-id']);
    }
  });

  it('GET shows results, attempts and CVV availability but never the token', async () => {
    const s = await makeSession(h, m.testKey);
    const r1 = await collect(h, s.token);
    assert.equal(r1.status, 200);
    const res = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(res.status, 200);
    assert.equal(res.body.token, undefined);
    assert.equal(res.body.formUrl, undefined);
    assert.equal(res.body.results.collectCvv.status, 'succeeded');
    assert.deepEqual(res.body.attempts, { collectCvv: { used: 1, max: 3 }, threeDS: { used: 0, max: 3 }, charge: { used: 0, max: 3 } });
    assert.equal(res.body.cvv.available, true);
    assert.equal(typeof res.body.cvv.expiresAt, 'string');
    assert.ok(!JSON.stringify(res.body).includes('"123"'));
    assert.ok(res.body.createdAt && res.body.updatedAt);
  });

  it('validateToken: valid and current, then valid but not current after rotation', async () => {
    const s = await makeSession(h, m.testKey);
    let v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token });
    assert.equal(v.status, 200);
    assert.equal(v.body.valid, true);
    assert.equal(v.body.current, true);
    assert.equal(v.body.claims.sub, s.id);
    assert.equal(v.body.session.id, s.id);
    const r = await collect(h, s.token);
    v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token });
    assert.equal(v.body.valid, true);
    assert.equal(v.body.current, false);
    v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: r.body.token });
    assert.equal(v.body.current, true);
    assert.equal(v.body.claims.res.collectCvv.status, 'succeeded');
  });

  it('validateToken refuses a request without a token string (400), not 200', async () => {
    for (const body of [{}, { token: 5 }, { token: 'x', extra: 1 }]) {
      const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send(body);
      assert.equal(v.status, 400);
      assert.equal(v.body.error.code, 'invalid_request');
    }
  });

  it('reissue: seq + 1, prev chained, every earlier token dies', async () => {
    const s = await makeSession(h, m.testKey);
    const r1 = await collect(h, s.token);
    const re = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey));
    assert.equal(re.status, 200);
    const { payload } = decodeJws(re.body.token);
    assert.equal(payload.seq, 2);
    const { createHash } = await import('node:crypto');
    assert.equal(payload.prev, createHash('sha256').update(r1.body.token).digest('base64url'));
    assert.equal((await collect(h, r1.body.token)).body.error.code, 'token_superseded');
    assert.equal((await collect(h, s.token)).body.error.code, 'token_superseded');
    const ok = await collect(h, re.body.token);
    assert.equal(ok.status, 200);
    assert.equal(decodeJws(ok.body.token).payload.seq, 3);
  });

  it('reissue clears the replay: the exact repeat of an earlier call is 409 after it', async () => {
    const s = await makeSession(h, m.testKey);
    assert.equal((await collect(h, s.token)).status, 200);
    assert.equal((await collect(h, s.token)).status, 200, 'replayed while its result is current');
    await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).expect(200);
    assert.equal((await collect(h, s.token)).body.error.code, 'token_superseded');
  });

  it('cancel: status canceled, CVV deleted at once, operations refused, idempotent', async () => {
    const s = await makeSession(h, m.testKey);
    const r = await collect(h, s.token);
    const cvcId = r.body.result.cvcSession.id;
    const c = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey));
    assert.equal(c.status, 200);
    assert.equal(c.body.status, 'canceled');
    assert.deepEqual(c.body.cvv, { available: false });
    assert.equal(await h.deps.store.cvc.getLive(m.id, 'test', cvcId, h.clock.now()), null);
    assert.equal((await collect(h, r.body.token)).body.error.code, 'session_canceled');
    assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey))).status, 200);
    assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey))).body.error.code, 'session_canceled');
  });

  it('DELETE /CvvOperations/{id}/cvv: 204, then 410 cvc_session_not_found', async () => {
    const s = await makeSession(h, m.testKey);
    const r = await collect(h, s.token);
    await request(h.app).delete(`/CvvOperations/${s.id}/cvv`).set(auth(m.testKey)).expect(204);
    assert.equal(await h.deps.store.cvc.getLive(m.id, 'test', r.body.result.cvcSession.id, h.clock.now()), null);
    const again = await request(h.app).delete(`/CvvOperations/${s.id}/cvv`).set(auth(m.testKey));
    assert.equal(again.status, 410);
    assert.equal(again.body.error.code, 'cvc_session_not_found');
  });

  it('an expired session: token_expired on operations, session_expired on reissue and cancel, status expired', async () => {
    const s = await makeSession(h, m.testKey, { ttlSeconds: 60 });
    h.clock.advance(61_000);
    try {
      const r = await collect(h, s.token);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'token_expired');
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey))).body.error.code, 'session_expired');
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey))).body.error.code, 'session_expired');
      assert.equal((await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey))).body.status, 'expired');
      const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token });
      assert.deepEqual(v.body, { valid: false, reason: 'expired' });
    } finally {
      h.clock.advance(-61_000);
    }
  });

  it('a token a second before expiry still works', async () => {
    const s = await makeSession(h, m.testKey, { ttlSeconds: 60 });
    const exp = decodeJws(s.token).payload.exp * 1000;
    const now = h.clock.now();
    h.clock.set(exp - 1000);
    try {
      assert.equal((await collect(h, s.token)).status, 200);
    } finally {
      h.clock.set(now);
    }
  });

  it('counts attempts and answers 429 attempts_exhausted without rotating', async () => {
    const s = await makeSession(h, m.testKey, { maxAttempts: 2 });
    let t = s.token;
    for (let i = 0; i < 2; i++) {
      const r = await collect(h, t);
      assert.equal(r.status, 200);
      t = r.body.token;
    }
    const r = await collect(h, t);
    assert.equal(r.status, 429);
    assert.equal(r.body.error.code, 'attempts_exhausted');
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: t });
    assert.equal(v.body.current, true, 'an error leaves the current token as it was');
  });

  it('operation_not_allowed when the operation is not in the token', async () => {
    const s = await makeSession(h, m.testKey, { operations: ['threeDS'], amount: undefined });
    const r = await collect(h, s.token);
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'operation_not_allowed');
  });

  it('invalid_cvv for every wrong shape, without rotating or counting', async () => {
    const s = await makeSession(h, m.testKey);
    const bad: unknown[] = ['12', '1234', '12a', ' 123', '123 ', '１２３', '١٢٣', '', 123, null, ['123'], { v: '123' }, '12\u0000'];
    for (const cvv of bad) {
      const r = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).send({ cvv });
      assert.equal(r.status, 400, JSON.stringify(cvv));
      assert.equal(r.body.error.code, 'invalid_cvv');
    }
    const missing = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).send({});
    assert.equal(missing.body.error.code, 'invalid_cvv');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 0);
    assert.equal((await collect(h, s.token)).status, 200, 'the first token is still current');
  });

  it('amex takes exactly four digits', async () => {
    const card = await makeCard(h, m.testKey, { number: '378282246310005' });
    const s = await makeSession(h, m.testKey, { card });
    assert.equal(decodeJws(s.token).payload.card.cvvLength, 4);
    assert.equal((await collect(h, s.token, '123')).body.error.code, 'invalid_cvv');
    assert.equal((await collect(h, s.token, '1234')).status, 200);
  });

  it("collectCvv replaces the session's earlier CVC session", async () => {
    const s = await makeSession(h, m.testKey);
    const r1 = await collect(h, s.token);
    const r2 = await collect(h, r1.body.token, '456');
    assert.notEqual(r1.body.result.cvcSession.id, r2.body.result.cvcSession.id);
    assert.equal(await h.deps.store.cvc.getLive(m.id, 'test', r1.body.result.cvcSession.id, h.clock.now()), null);
    assert.ok(await h.deps.store.cvc.getLive(m.id, 'test', r2.body.result.cvcSession.id, h.clock.now()));
  });

  it('idempotent create: same key and body gives the first response; another body is 409', async () => {
    const card = await makeCard(h, m.testKey);
    const body = { card, operations: ['collectCvv'] };
    const a = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).set('Idempotency-Key', 'k-1').send(body);
    const b = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).set('Idempotency-Key', 'k-1').send(body);
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    assert.deepEqual(b.body, a.body);
    const c = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .set('Idempotency-Key', 'k-1')
      .send({ ...body, reference: 'x' });
    assert.equal(c.status, 409);
    assert.equal(c.body.error.code, 'idempotency_key_reused');
    // Scoped to the merchant: another merchant's same key is independent.
    const m2 = await makeMerchant(h);
    const card2 = await makeCard(h, m2.testKey);
    const d = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m2.testKey))
      .set('Idempotency-Key', 'k-1')
      .send({ card: card2, operations: ['collectCvv'] });
    assert.equal(d.status, 201);
    assert.notEqual(d.body.id, a.body.id);
    // Kept 24 hours: after that, the key starts afresh.
    h.clock.advance(24 * 3600_000 + 1000);
    try {
      const e = await request(h.app)
        .post('/CvvOperations')
        .set(auth(m.testKey))
        .set('Idempotency-Key', 'k-1')
        .send({ ...body, reference: 'x' });
      assert.equal(e.status, 201);
    } finally {
      h.clock.advance(-(24 * 3600_000 + 1000));
    }
  });

  it('an error does not burn the idempotency key', async () => {
    const bad = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .set('Idempotency-Key', 'k-err')
      .send({ card: 'tok_nope', operations: ['collectCvv'] });
    assert.equal(bad.status, 400);
    const card = await makeCard(h, m.testKey);
    const ok = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .set('Idempotency-Key', 'k-err')
      .send({ card: 'tok_nope', operations: ['collectCvv'] });
    assert.equal(ok.status, 400, 'the same failing request fails again, it is not replayed as success');
    void card;
  });
});
