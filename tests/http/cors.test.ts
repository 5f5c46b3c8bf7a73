import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/** A server with two merchants: `a` allows https://shop-a.example, the other https://shop-b.example. */
async function twoMerchants(): Promise<{ h: Harness; a: TestMerchant }> {
  const h = await makeHarness();
  const a = await makeMerchant(h, ['https://shop-a.example']);
  await makeMerchant(h, ['https://shop-b.example']);
  return { h, a };
}

describe('CORS on the operation endpoints', () => {
  let h: Harness;
  let a: TestMerchant;
  before(async () => ({ h, a } = await twoMerchants()));
  after(() => h.close());

  it('answers a preflight for an origin some merchant allows, with exact headers', async () => {
    const res = await request(h.app)
      .options('/CvvOperations/collectCvv')
      .set('Origin', 'https://shop-b.example')
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization, content-type');
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], 'https://shop-b.example');
    assert.match(res.headers['access-control-allow-headers'] ?? '', /Authorization/);
    assert.match(res.headers['access-control-allow-methods'] ?? '', /POST/);
    assert.equal(res.headers['access-control-allow-credentials'], undefined);
    assert.match(res.headers.vary ?? '', /Origin/);
  });

  it('refuses a preflight from an origin no merchant allows, without CORS headers', async () => {
    const res = await request(h.app).options('/CvvOperations/collectCvv').set('Origin', 'https://evil.example').set('Access-Control-Request-Method', 'POST');
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'origin_not_allowed');
    assert.match(
      res.body.error.message,
      /The origin https:\/\/evil\.example is not an allowed origin .*allowedOrigins/,
      'the message names the origin and how to allow it',
    );
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });

  it("a real call from the token's merchant's origin works and is readable cross-origin", async () => {
    const s = await makeSession(h, a.testKey);
    const res = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', 'https://shop-a.example').send({ cvv: '123' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], 'https://shop-a.example');
  });

  it("a real call from another merchant's origin is 403 origin_not_allowed and does not rotate", async () => {
    const s = await makeSession(h, a.testKey);
    const res = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', 'https://shop-b.example').send({ cvv: '123' });
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'origin_not_allowed');
    assert.match(
      res.body.error.message,
      /The origin https:\/\/shop-b\.example is not one of this merchant's allowed origins in test mode: add it to allowedOrigins with PATCH \/Merchant/,
    );
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(a.testKey)).send({ token: s.token });
    assert.equal(v.body.current, true);
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(a.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 0);
    assert.equal(g.body.cvv.available, false, 'nothing was stored');
  });

  it("an unknown origin is refused too; the server's own origin (hosted forms) is always allowed", async () => {
    const s = await makeSession(h, a.testKey);
    const evil = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', 'https://evil.example').send({ cvv: '123' });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
    const own = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', 'http://cvv.test').send({ cvv: '123' });
    assert.equal(own.status, 200);
  });

  it('origins match exactly: scheme, host and port', async () => {
    const s = await makeSession(h, a.testKey);
    for (const o of ['http://shop-a.example', 'https://shop-a.example:8443', 'https://sub.shop-a.example', 'https://shop-a.example.evil.example', 'null']) {
      const res = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', o).send({ cvv: '123' });
      assert.equal(res.status, 403, o);
    }
  });

  it('merchant endpoints never send CORS headers and do not answer preflights', async () => {
    const res = await request(h.app).get('/CvvOperations/cvo_x').set(auth(a.testKey)).set('Origin', 'https://shop-a.example');
    assert.equal(res.headers['access-control-allow-origin'], undefined);
    const pre = await request(h.app).options('/CvvOperations').set('Origin', 'https://shop-a.example').set('Access-Control-Request-Method', 'POST');
    assert.equal(pre.headers['access-control-allow-origin'], undefined);
    assert.notEqual(pre.status, 204);
  });
});

describe('GET /hosted/origin-check: may the calling page frame this session form (the SDK asks, to fail fast)', () => {
  let h: Harness;
  let a: TestMerchant;
  before(async () => ({ h, a } = await twoMerchants()));
  after(() => h.close());

  it("answers for the session's merchant only, readable from any origin; an unknown session is 404", async () => {
    const s = await makeSession(h, a.testKey);
    const check = (origin?: string) => {
      const r = request(h.app).get(`/hosted/origin-check?session=${s.id}`);
      return origin ? r.set('Origin', origin) : r;
    };
    const ok = await check('https://shop-a.example');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { origin: 'https://shop-a.example', allowed: true });
    assert.equal(ok.headers['access-control-allow-origin'], '*');
    assert.equal(ok.headers['cache-control'], 'no-store');
    assert.deepEqual((await check('https://shop-b.example')).body, { origin: 'https://shop-b.example', allowed: false }, "another merchant's origin");
    assert.deepEqual((await check('http://shop-a.example')).body.allowed, false, 'exact origins only');
    assert.deepEqual((await check()).body, { origin: 'http://cvv.test', allowed: true }, 'no Origin: a same-origin page of the server');
    assert.equal((await request(h.app).get('/hosted/origin-check?session=cvo_unknown').set('Origin', 'https://shop-a.example')).status, 404);
    assert.ok(!JSON.stringify(ok.body).includes(a.id), 'nothing about the merchant');
  });
});
