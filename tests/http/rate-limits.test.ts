import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

describe('rate limits', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness({
      env: { CVVOPS_RATE_LIMIT: 'on', CVVOPS_RATE_LIMIT_API_KEY: '40', CVVOPS_RATE_LIMIT_SESSION: '5', CVVOPS_RATE_LIMIT_ADDRESS: '12' },
    });
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('per session: the sixth operation call in a minute is 429 rate_limited with Retry-After, and the token stays current', async () => {
    const s = await makeSession(h, m.testKey);
    const t = s.token;
    for (let i = 0; i < 5; i++) {
      const r = await request(h.app).post('/CvvOperations/collectCvv').set(auth(t)).send({ cvv: '12' }); // invalid_cvv: still counted
      assert.equal(r.status, 400);
    }
    const limited = await collect(h, t);
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error.code, 'rate_limited');
    assert.ok(Number(limited.headers['retry-after']) >= 1);
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: t });
    assert.equal(v.body.current, true);
  });

  it('per client address across sessions', async () => {
    // The address already spent 6 of its 12 in the test before.
    const s1 = await makeSession(h, m.testKey);
    const s2 = await makeSession(h, m.testKey);
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) {
      codes.push((await request(h.app).post('/CvvOperations/collectCvv').set(auth(s1.token)).send({ cvv: '1' })).status);
      codes.push((await request(h.app).post('/CvvOperations/collectCvv').set(auth(s2.token)).send({ cvv: '1' })).status);
    }
    assert.deepEqual(codes.slice(0, 6), [400, 400, 400, 400, 400, 400]);
    assert.deepEqual(codes.slice(6), [429, 429]);
  });

  it('per API key on merchant endpoints; another key is not affected', async () => {
    const other = await makeMerchant(h);
    let last = 0;
    for (let i = 0; i < 45 && last !== 429; i++) last = (await request(h.app).get('/CvvOperations/cvo_none').set(auth(m.liveKey))).status;
    assert.equal(last, 429);
    assert.equal((await request(h.app).get('/CvvOperations/cvo_none').set(auth(other.liveKey))).status, 404);
  });

  it('CVVOPS_RATE_LIMIT=off is refused in production', async () => {
    const { loadConfig } = await import('../../server/config.js');
    assert.throws(
      () =>
        loadConfig({
          NODE_ENV: 'production',
          CVVOPS_MASTER_KEY: Buffer.alloc(32, 1).toString('base64'),
          PUBLIC_BASE_URL: 'https://x.example',
          CVVOPS_RATE_LIMIT: 'off',
        }),
      /CVVOPS_RATE_LIMIT/,
    );
  });
});
