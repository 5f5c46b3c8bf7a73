import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, type Harness, makeHarness, makeMerchant, type TestMerchant } from '../helpers/harness.js';
import { checkResponse, stats, violations } from '../helpers/openapi-check.js';

/**
 * The HTTP tests' response check (tests/helpers/openapi-check.ts, in every
 * harness): each JSON response is validated against openapi.json. Here: it
 * runs on real responses, and it does catch a body or a status the document
 * does not allow (so the HTTP suite passing means the responses matched).
 */
describe('every HTTP test response is checked against openapi.json', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('checks the responses the harness app sends, successes and errors alike', async () => {
    const before = stats.checked;
    assert.equal((await request(h.app).get('/Merchant').set(auth(m.testKey))).status, 200);
    assert.equal((await request(h.app).get('/CvvOperations/cvo_unknown').set(auth(m.testKey))).status, 404);
    assert.equal((await request(h.app).get('/Merchant')).status, 401);
    assert.equal(stats.checked - before, 3);
    assert.deepEqual(violations, []);
  });

  it('a method a path does not have (405) belongs to no operation: GET /CvvOperations/collectCvv is not GET /CvvOperations/{id}', async () => {
    const before = stats.checked;
    assert.equal((await request(h.app).get('/CvvOperations/collectCvv').set(auth(m.testKey))).status, 405);
    assert.equal(stats.checked - before, 0);
    assert.deepEqual(violations, []);
  });

  it('reports a body that does not match its status: a wrong success body, or a success where only errors are declared', () => {
    checkResponse('GET', '/Merchant', 200, { id: 5 });
    checkResponse('POST', '/CvvOperations/cvo_x/token', 200, { token: 42 });
    checkResponse('POST', '/CvvOperations', 200, { id: 'cvo_x' }); // create answers 201, never 200
    // An error code the route's status does not list (collectCvv's 400s are invalid_request and invalid_cvv).
    checkResponse('POST', '/CvvOperations/collectCvv', 400, { error: { code: 'invalid_card', message: 'x', requestId: 'req_1' } });
    checkResponse('POST', '/CvvOperations/collectCvv', 400, { error: { code: 'invalid_cvv', message: 'x', requestId: 'req_1' } });
    const found = violations.splice(0);
    assert.equal(found.length, 4, found.join('\n'));
    assert.match(found[0]!, /GET \/Merchant → 200: .*required property 'name'/);
    assert.match(found[1]!, /POST \/CvvOperations\/\{id\}\/token → 200: .*token must be string/);
    assert.match(found[2]!, /POST \/CvvOperations → 200: this status is not declared/);
    assert.match(found[3]!, /POST \/CvvOperations\/collectCvv → 400: .*must be equal to one of the allowed values/);
  });
});
