import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, type Harness, makeCard, makeHarness, makeMerchant, type TestMerchant } from '../helpers/harness.js';

/** Redirect mode's page: the challenge sends the shopper back only to the merchant's allowed origins. */
describe('the 3-D Secure challenge page in redirect mode (?return=)', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h, ['https://shop.example']);
  });
  after(() => h.close());

  /** A session whose threeDS answered C: the challenge page's path. */
  async function challengePath(): Promise<string> {
    const card = await makeCard(h, m.testKey, { number: '4000000000002024' });
    const s = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .send({ card, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 1999, currency: 'EUR' } });
    const c = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.body.token)).send({ cvv: '123' });
    const t = await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
    assert.equal(t.body.result.status, 'C');
    return new URL(t.body.result.challengeUrl).pathname;
  }

  it('a return URL on an allowed origin: the page links back (canceled), and after the code (done), its fragment dropped', async () => {
    const path = await challengePath();
    const back = 'https://shop.example/checkout?order=7#old';
    const page = await request(h.app).get(`${path}?return=${encodeURIComponent(back)}&locale=fr`);
    assert.equal(page.status, 200);
    assert.match(page.text, /href="https:\/\/shop\.example\/checkout\?order=7#cvvops=3ds-canceled"/);
    assert.match(page.text, /Annuler et revenir à la boutique/);
    const action = /action="([^"]+)"/.exec(page.text)![1]!.replace(/&amp;/g, '&');
    assert.match(action, /locale=fr/);
    assert.match(action, /return=https%3A%2F%2Fshop\.example%2Fcheckout%3Forder%3D7/);
    const done = await request(h.app).post(action).type('form').send({ code: '123456' });
    assert.equal(done.status, 200);
    assert.match(done.text, /href="https:\/\/shop\.example\/checkout\?order=7#cvvops=3ds-done"/);
    assert.match(done.text, /Revenir à la boutique/);
  });

  it('a return URL anywhere else is refused (400), and nothing links there', async () => {
    const path = await challengePath();
    for (const bad of [
      'https://evil.example/',
      'http://shop.example/',
      'javascript:alert(1)',
      'https://shop.example.evil.example/',
      '//evil.example/',
      'not a url',
    ]) {
      const r = await request(h.app).get(`${path}?return=${encodeURIComponent(bad)}`);
      assert.equal(r.status, 400, bad);
      assert.equal(r.body.error.code, 'invalid_request');
      assert.ok(!r.text.includes('evil.example/#'), bad);
    }
    const post = await request(h.app)
      .post(`${path}?return=${encodeURIComponent('https://evil.example/')}`)
      .type('form')
      .send({ code: '123456' });
    assert.equal(post.status, 400);
    assert.match((await request(h.app).get(path)).text, /name="code"/, 'refused before the code was used: the challenge is still open');
  });

  it("without return the page is the overlay's (no link back); an empty return uses the session's returnUrl, and without one is refused", async () => {
    const path = await challengePath();
    const plain = await request(h.app).get(path);
    assert.equal(plain.status, 200);
    assert.ok(!plain.text.includes('cvvops=3ds-'));
    assert.equal((await request(h.app).get(`${path}?return=`)).status, 400, 'no session returnUrl to fall back on');
  });
});
