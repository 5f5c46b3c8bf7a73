import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * A refused call on a session (an operation with a stale token, a cancel of a
 * session that cannot be canceled) leaves an audit record naming the session,
 * the call, the error code and the request id, and no secret.
 */
describe('refused calls on a session are audit records', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  const audits = (event: string) => h.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true && l.event === event);

  it('an operation refused (409 token_superseded): the session, the operation, the code and the request id', async () => {
    const s = await makeSession(h, m.testKey);
    assert.equal((await collect(h, s.token)).status, 200);
    const stale = await collect(h, s.token, '124'); // the first token again, another body: not a replay
    assert.equal(stale.status, 409);
    const records = audits('operation.refused').filter((r) => r.session === s.id);
    assert.equal(records.length, 1, JSON.stringify(audits('operation.refused')));
    const r = records[0]!;
    assert.equal(r.operation, 'POST /CvvOperations/collectCvv');
    assert.equal(r.code, stale.body.error.code);
    assert.equal(r.status, 409);
    assert.equal(r.requestId, stale.body.error.requestId);
    assert.equal(r.merchantId, m.id);
    const line = JSON.stringify(r);
    for (const secret of [s.token, m.testKey]) assert.ok(!line.includes(secret), 'no token or key in the record');
  });

  it('a merchant call on a session refused (a new token for a canceled session): the same record', async () => {
    const s = await makeSession(h, m.testKey);
    assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send({})).status, 200);
    const c = await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send({});
    assert.ok(c.status >= 400 && c.status < 500, `${c.status} ${JSON.stringify(c.body)}`);
    const r = audits('operation.refused').find((x) => x.session === s.id);
    assert.ok(r, 'an audit record');
    assert.equal(r.operation, 'POST /CvvOperations/{id}/token');
    assert.equal(r.code, c.body.error.code);
    assert.equal(r.requestId, c.body.error.requestId);
    assert.equal(r.merchantId, m.id);
  });

  it('a call that succeeds, or a refusal on no session, writes no such record', async () => {
    const before = audits('operation.refused').length;
    const s = await makeSession(h, m.testKey);
    await collect(h, s.token);
    await request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: '1', expMonth: 12, expYear: 2030 });
    assert.equal(audits('operation.refused').length, before);
  });
});
