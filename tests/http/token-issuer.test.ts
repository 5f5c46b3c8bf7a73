import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * API.md section 3: validateToken's `wrong_issuer` is a well-formed, authentic token whose `iss` is not this
 * server's public address, e.g. from an instance started with another PUBLIC_BASE_URL on the same database
 * (so the same signing keys).
 */
describe('session tokens: another issuer', () => {
  let a: Harness;
  let b: Harness;
  let m: TestMerchant;
  before(async () => {
    a = await makeHarness();
    b = await makeHarness({ shareWith: a, env: { PUBLIC_BASE_URL: 'http://other-address.test' } });
    m = await makeMerchant(a);
  });
  after(async () => {
    await b.close();
    await a.close();
  });

  it("an instance with another PUBLIC_BASE_URL answers wrong_issuer for the first one's tokens, and refuses them on operations", async () => {
    const s = await makeSession(a, m.testKey);
    const v = await request(b.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token });
    assert.equal(v.status, 200);
    assert.deepEqual(v.body, { valid: false, reason: 'wrong_issuer' });
    const op = await collect(b, s.token);
    assert.equal(op.status, 401);
    assert.equal(op.body.error.code, 'invalid_token');
    // The instance it came from still takes it.
    assert.equal((await collect(a, s.token)).status, 200);
  });
});
