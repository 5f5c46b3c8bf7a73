import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CvvOps, CvvOpsError, type CvvOpsLogEntry } from '../../packages/node/src/index.js';
import { TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { merchantOf, serve, type Served } from './helpers.js';

/** issue 17: every method of the Node SDK against a running server (harness + listen). */

/** What the browser does with a token (API.md section 4): not the SDK's job, so plain fetch. */
async function operation(base: string, op: string, token: string, body: unknown = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/CvvOperations/${op}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function rejects(p: Promise<unknown>, check: Partial<Pick<CvvOpsError, 'status' | 'code'>>): Promise<CvvOpsError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CvvOpsError, `not a CvvOpsError: ${String(err)}`);
    for (const [k, v] of Object.entries(check)) assert.equal(err[k as keyof CvvOpsError], v, `${k} of ${err.code}: ${err.message}`);
    return err;
  }
  assert.fail('did not reject');
}

describe('@cvvops/node against a running server', () => {
  let s: Served;
  let m: TestMerchant;
  let cvvops: CvvOps;
  const logs: CvvOpsLogEntry[] = [];
  before(async () => {
    s = await serve();
    m = await merchantOf(s);
    cvvops = new CvvOps(m.testKey, { baseUrl: s.base, log: (e) => logs.push(e) });
  });
  after(() => s.close());

  it('cards: create (with and without a CVV), retrieve, cvvStatus, del; cvcSessions.del', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030, holderName: 'Ada L' });
    assert.match(card.token, /^tok_/);
    assert.deepEqual([card.brand, card.last4, card.bin, card.cvcSession], ['visa', '1018', '400000', null]);
    const got = await cvvops.cards.retrieve(card.token);
    assert.equal(got.token, card.token);
    assert.equal(got.last4, '1018');
    assert.equal(JSON.stringify(got).includes(TEST_CARD), false, 'a full card number came back');
    const status = await cvvops.cards.cvvStatus(card.token);
    assert.deepEqual(status, { status: 'Unblocked', failedAttempts: 0, cvcSession: { available: false } });

    const withCvv = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' });
    assert.ok(withCvv.cvcSession, 'a CVV given at tokenization makes a CVC session');
    const st = await cvvops.cards.cvvStatus(withCvv.token);
    assert.equal(st.cvcSession.available, true);
    await cvvops.cvcSessions.del(withCvv.cvcSession.id);
    assert.equal((await cvvops.cards.cvvStatus(withCvv.token)).cvcSession.available, false);

    assert.equal(await cvvops.cards.del(card.token), undefined);
    const e = await rejects(cvvops.cards.retrieve(card.token), { status: 404, code: 'not_found' });
    assert.match(e.requestId ?? '', /^req_/);
  });

  it('cards.unblockCvv: a card blocked by three incorrect_cvc declines is unblocked', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv', 'charge'], amount: { value: 500, currency: 'EUR' } });
    let token = (await operation(s.base, 'collectCvv', session.token, { cvv: '999' })).body.token as string;
    for (let i = 0; i < 3; i++) {
      const r = await operation(s.base, 'charge', token);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.result.declineCode, 'incorrect_cvc');
      token = r.body.token;
    }
    const blocked = await cvvops.cards.cvvStatus(card.token);
    assert.deepEqual([blocked.status, blocked.failedAttempts], ['Blocked', 3]);
    assert.equal(await cvvops.cards.unblockCvv(card.token), undefined);
    const after = await cvvops.cards.cvvStatus(card.token);
    assert.deepEqual([after.status, after.failedAttempts], ['Unblocked', 0]);
  });

  it('sessions: create, retrieve, validateToken, reissue, deleteCvv, cancel', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const created = await cvvops.sessions.create({
      card: card.token,
      operations: ['collectCvv', 'threeDS', 'charge'],
      amount: { value: 1999, currency: 'EUR' },
      reference: 'order-17',
      metadata: { cart: 'c_17' },
    });
    assert.match(created.id, /^cvo_/);
    assert.equal(created.status, 'active');
    assert.ok(created.formUrl.includes('#token='));

    const collected = await operation(s.base, 'collectCvv', created.token, { cvv: '123' });
    assert.equal(collected.status, 200);
    const latest = collected.body.token as string;

    const session = await cvvops.sessions.retrieve(created.id);
    assert.equal(session.id, created.id);
    assert.equal(session.attempts.collectCvv?.used, 1);
    assert.equal(session.cvv?.available, true);

    const v = await cvvops.sessions.validateToken(latest);
    assert.equal(v.valid, true);
    if (v.valid) {
      assert.equal(v.current, true);
      assert.equal(v.claims.sub, created.id);
      assert.equal(v.claims.aud, m.id);
      assert.equal(v.claims.res.collectCvv?.status, 'succeeded');
      assert.equal(v.session.id, created.id);
    }
    const old = await cvvops.sessions.validateToken(created.token);
    assert.deepEqual([old.valid, old.valid && old.current], [true, false], 'a rotated-out token is authentic but not current');
    assert.deepEqual(await cvvops.sessions.validateToken('not.a.token'), { valid: false, reason: 'malformed' });

    const { token: reissued } = await cvvops.sessions.reissue(created.id);
    const rv = await cvvops.sessions.validateToken(reissued);
    assert.ok(rv.valid && rv.current && rv.claims.seq === 2);
    const stale = await cvvops.sessions.validateToken(latest);
    assert.ok(stale.valid && !stale.current, 'reissue makes every earlier token stop working');

    assert.equal(await cvvops.sessions.deleteCvv(created.id), undefined);
    assert.equal((await cvvops.sessions.retrieve(created.id)).cvv?.available, false);
    await rejects(cvvops.sessions.deleteCvv(created.id), { status: 410, code: 'cvc_session_not_found' });

    const canceled = await cvvops.sessions.cancel(created.id);
    assert.equal(canceled.status, 'canceled');
    assert.equal((await cvvops.sessions.cancel(created.id)).status, 'canceled', 'cancel is idempotent');
    await rejects(cvvops.sessions.reissue(created.id), { status: 409, code: 'session_canceled' });
  });

  it('verifyToken: offline, with the JWKS and the merchant id read once', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const created = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] });
    const claims = await cvvops.verifyToken(created.token);
    assert.deepEqual([claims.sub, claims.aud, claims.iss, claims.mode, claims.seq], [created.id, m.id, s.base, 'test', 0]);
    assert.deepEqual(claims.ops, ['collectCvv']);
    await cvvops.verifyToken(created.token, { maxAgeSeconds: 600 });
    const merchantReads = logs.filter((l) => l.path === '/Merchant' && l.event === 'response').length;
    assert.equal(merchantReads, 1, 'GET /Merchant is read once for the audience');
    assert.equal(cvvops.jwksFetches, 1);
  });

  it('merchant: retrieve and update', async () => {
    const before = await cvvops.merchant.retrieve();
    assert.equal(before.id, m.id);
    assert.equal(before.mode, 'test');
    const updated = await cvvops.merchant.update({ allowedOrigins: ['https://shop.example', 'https://checkout.example'], cvvBlockThreshold: 5 });
    assert.deepEqual(updated.allowedOrigins, ['https://shop.example', 'https://checkout.example']);
    assert.equal(updated.cvvBlockThreshold, 5);
    assert.equal((await cvvops.merchant.retrieve()).cvvBlockThreshold, 5);
    await rejects(cvvops.merchant.update({ cvvBlockThreshold: 5, bogus: true } as never), { status: 400, code: 'invalid_request' });
    await cvvops.merchant.update({ cvvBlockThreshold: 3 });
  });

  it('webhookEndpoints: create, list (awaited and iterated), del', async () => {
    const ep = await cvvops.webhookEndpoints.create({ url: 'https://hooks.shop.example/cvvops', events: ['charge.succeeded', 'session.canceled'] });
    assert.match(ep.id, /^whe_/);
    assert.match(ep.secret, /^whsec_/);
    const page = await cvvops.webhookEndpoints.list();
    assert.deepEqual(
      page.data.map((e) => e.id),
      [ep.id],
    );
    assert.ok(!JSON.stringify(page).includes('whsec_'));
    const ids: string[] = [];
    for await (const e of cvvops.webhookEndpoints.list()) ids.push(e.id);
    assert.deepEqual(ids, [ep.id]);
    assert.equal(await cvvops.webhookEndpoints.del(ep.id), undefined);
    assert.deepEqual((await cvvops.webhookEndpoints.list()).data, []);
    await rejects(cvvops.webhookEndpoints.del(ep.id), { status: 404, code: 'not_found' });
  });

  it("sessions.list pages (awaited, iterated across pages, filtered); events list, retrieve and resend; an endpoint's deliveries; a session's history", async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) made.push((await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] })).id);
    await cvvops.sessions.cancel(made[0]!);
    const first = await cvvops.sessions.list({ limit: 2, card: card.token });
    assert.equal(first.data.length, 2);
    assert.equal(first.hasMore, true);
    const all: string[] = [];
    for await (const session of cvvops.sessions.list({ limit: 2, card: card.token })) all.push(session.id);
    assert.deepEqual([...all].sort(), [...made].sort(), 'every session of the card, across three pages');
    assert.deepEqual(
      (await cvvops.sessions.list({ status: 'canceled', card: card.token })).data.map((x) => x.id),
      [made[0]],
    );
    assert.deepEqual((await cvvops.sessions.list({ card: card.token, created: { gte: new Date(Date.now() + 3_600_000) } })).data, []);

    const events = await cvvops.events.list({ type: 'session.canceled' });
    const canceled = events.data.find((e) => (e.data as { session?: string }).session === made[0]);
    assert.ok(canceled, 'the cancel is an event');
    assert.deepEqual(await cvvops.events.retrieve(canceled.id), canceled);
    const endpoint = await cvvops.webhookEndpoints.create({ url: 'https://hooks.example/sdk', events: ['session.canceled'] });
    const resent = await cvvops.events.resend(canceled.id, { endpoint: endpoint.id });
    assert.equal(resent.deliveries.length, 1);
    const deliveries = await cvvops.webhookEndpoints.deliveries(endpoint.id);
    assert.deepEqual(
      deliveries.data.map((d) => d.event),
      [canceled.id],
    );

    const trail = await cvvops.sessions.history(made[0]!, { limit: 1 });
    assert.deepEqual(
      trail.data.map((e) => e.type),
      ['created'],
    );
    assert.equal(trail.hasMore, true);
    const types: string[] = [];
    for await (const e of cvvops.sessions.history(made[0]!, { limit: 1 })) types.push(e.type);
    assert.deepEqual(types, ['created', 'canceled'], "the session's whole trail, one entry a page");
  });

  it('errors carry status, code, message and requestId; a bad key is invalid_api_key', async () => {
    const e = await rejects(cvvops.cards.create({ number: '4000000000001019', expMonth: 12, expYear: 2030 }), { status: 400, code: 'invalid_card' });
    assert.ok(e.message.length > 0);
    assert.match(e.requestId ?? '', /^req_/);
    const wrong = new CvvOps(`sk_test_${'A'.repeat(43)}`, { baseUrl: s.base });
    const bad = await rejects(wrong.merchant.retrieve(), { status: 401, code: 'invalid_api_key' });
    assert.ok(!inspect(bad).includes('A'.repeat(43)));
  });

  it('the API key is in no error, log entry, inspect or JSON of the client', async () => {
    const key = m.testKey;
    const errors: unknown[] = [];
    for (const call of [
      () => cvvops.cards.retrieve('tok_missing'),
      () => cvvops.sessions.retrieve('cvo_missing'),
      () => cvvops.sessions.cancel('cvo_missing'),
      () => cvvops.verifyToken('eyJhbGciOiJub25lIn0.e30.'),
      () => new CvvOps(key, { baseUrl: 'http://127.0.0.1:1', maxRetries: 0 }).merchant.retrieve(),
    ]) {
      try {
        await call();
      } catch (err) {
        errors.push(err);
      }
    }
    assert.equal(errors.length, 5);
    const texts = [
      ...errors.map((e) => inspect(e, { depth: 10, showHidden: true })),
      ...errors.map((e) => JSON.stringify(e)),
      ...errors.map((e) => String((e as Error).stack)),
      inspect(cvvops, { depth: 10, showHidden: true }),
      JSON.stringify(cvvops),
      inspect(cvvops.cards, { depth: 10, showHidden: true }),
      JSON.stringify(cvvops.sessions),
      JSON.stringify(logs),
      inspect(logs, { depth: 10 }),
    ];
    assert.ok(logs.length > 10, 'the logger saw the calls');
    for (const t of texts) {
      assert.ok(!t.includes(key), `the API key leaked: ${t.slice(0, 200)}`);
      assert.ok(!t.includes(key.slice(8, 30)), 'a part of the API key leaked');
    }
    assert.match(inspect(cvvops), /REDACTED/);
    // A malformed key is refused without being repeated.
    assert.throws(
      () => new CvvOps(`${key}\n`, { baseUrl: s.base }),
      (err: CvvOpsError) => err.code === 'invalid_configuration' && !err.message.includes(key.slice(8)),
    );
  });
});
