import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, TEST_CARD } from '../helpers/harness.js';

describe('secrets never reach the logs', () => {
  let h: Harness;
  before(async () => {
    h = await makeHarness();
  });
  after(() => h.close());

  it('a whole flow, its errors and its refusals log no API key, token, card number or CVV', async () => {
    const m = await makeMerchant(h);
    const secrets: string[] = [m.testKey, m.liveKey, TEST_CARD];
    const card = await request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '987' });
    assert.equal(card.status, 201);
    const s = await makeSession(h, m.testKey, { card: card.body.token });
    secrets.push(s.token);
    const r = await collect(h, s.token, '987');
    secrets.push(r.body.token);
    await collect(h, s.token, '986'); // superseded
    await request(h.app).post('/CvvOperations/collectCvv').set(auth(r.body.token)).send({ cvv: '98x7' }); // invalid_cvv
    await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: r.body.token });
    await request(h.app)
      .get(`/CvvOperations/${s.id}`)
      .set(auth(`${m.testKey}x`)); // refused key
    await request(h.app).get(`/CvvOperations/${s.id}?api_key=${m.liveKey}`); // key in query
    await request(h.app)
      .post('/Cards')
      .set(auth(m.testKey))
      .send({ number: `${TEST_CARD.slice(0, -1)}9`, expMonth: 12, expYear: 2030 }); // Luhn failure
    await request(h.app).get(`/Cards/${TEST_CARD}`).set(auth(m.testKey)); // a card number in a path
    const text = h.logs.join('');
    assert.ok(h.logs.length > 10, 'the flow was logged');
    assert.match(text, /"audit":true/);
    assert.match(text, /"event":"api_key.used","outcome":"failure"/);
    for (const secret of secrets) assert.ok(!text.includes(secret), `a secret (${secret.slice(0, 8)}…) reached the logs`);
    // A 3-digit CVV can appear by chance inside timings and random ids: look for it as a value.
    assert.ok(!/"987"|[=:]\s*987\b/.test(text), 'the CVV reached the logs');
    assert.ok(!/"cvv":"\d/.test(text));
  });
});
