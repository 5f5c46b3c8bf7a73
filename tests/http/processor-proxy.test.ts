import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import request from 'supertest';
import { type Recorded, RecordingServer } from '../helpers/recording-server.js';
import { isPrivateAddress, outbound, OutboundError } from '../../server/connectors/outbound.js';
import { ChargeService } from '../../server/domain/charges.js';
import { newId } from '../../server/domain/ids.js';
import { NO_OUTCOME } from '../../server/store/store.js';
import {
  auth,
  collect,
  decodeJws,
  forceSettings,
  type Harness,
  makeCard,
  makeHarness,
  makeMerchant,
  makeSession,
  TEST_CARD,
  type TestMerchant,
} from '../helpers/harness.js';

/**
 * API.md section 6 (http processors and POST /proxy) and SECURITY.md "HTTP"
 * (outbound calls), against a local fake payment service provider that
 * records every request it gets.
 */

const LIVE_CARD = '4242424242424242';
/** The provider's credential, kept in the processor's headers: it must never come back out. */
const PSP_SECRET = 'psp_sk_SENTINEL_7fQ2mZ9xW4';
/** No control characters (the card schema refuses them), but everything else that can break a JSON string. */
const HOLDER = 'Ada "x" \\ </script>';
const REFERENCE = 'order "42" & co/?#';

// ---------------------------------------------------------------------------
// The fake provider
// ---------------------------------------------------------------------------

type Answer = (req: Recorded, res: ServerResponse) => void;

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Answer =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

const approvedBody = {
  id: 'pay_1',
  payment: {
    status: 'succeeded',
    outcome: { authorization_code: 'PSP-AUTH-1', network_transaction_id: 'nt_0077', checks: { cvc_check: 'pass', address_check: 'Y' } },
  },
};
const approve = (): Answer => json(200, approvedBody);

class FakeProvider extends RecordingServer {
  answer: Answer = approve();

  static async start(port = 0): Promise<FakeProvider> {
    return RecordingServer.listen((server) => new FakeProvider(server), port);
  }

  protected override respond(rec: Recorded, res: ServerResponse): void {
    this.answer(rec, res);
  }

  get base(): string {
    return this.url();
  }

  reset(answer: Answer = approve()): void {
    // A kept-alive socket from an earlier test must not hide a new connection.
    this.clear();
    this.answer = answer;
  }

  assertUntouched(what: string): void {
    assert.equal(this.requests.length, 0, `${what}: the provider got ${this.requests.length} request(s)`);
    assert.equal(this.connections, 0, `${what}: the provider got ${this.connections} connection(s)`);
  }
}

/** Every byte of the SQLite files (main, -wal, -shm). */
function dbBytes(h: Harness): Buffer {
  return Buffer.concat(
    ['-wal', '-shm', '']
      .map((s) => h.dbPath + s)
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f)),
  );
}

const BODY_TEMPLATE = JSON.stringify({
  card: { number: '${cardNumber}', cvc: '${cvv}', exp_month: '${expMonth}', exp_year: '${expYear}', name: '${holderName}' },
  amount: 0,
  currency: '${amount.currency}',
  reference: '${reference}',
  idempotency_key: '${idempotencyKey}',
  three_ds: { eci: '${threeDS.eci}', cavv: '${threeDS.authenticationValue}', ds_transaction_id: '${threeDS.dsTransactionId}' },
}).replace('"amount":0', '"amount":${amount.value}');

function processorConfig(base: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'http',
    request: {
      method: 'POST',
      url: `${base}/v1/payments?ref=\${reference}`,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${PSP_SECRET}`, 'Idempotency-Key': '${idempotencyKey}' },
      body: BODY_TEMPLATE,
    },
    response: {
      approved: { path: 'payment.status', equals: 'succeeded' },
      authorizationCode: 'payment.outcome.authorization_code',
      declineCode: 'payment.outcome.decline_code',
      cvvResult: 'payment.outcome.checks.cvc_check',
      avsResult: 'payment.outcome.checks.address_check',
      networkTransactionId: 'payment.outcome.network_transaction_id',
    },
    lookup: { method: 'GET', url: `${base}/v1/payments/lookup?key=\${idempotencyKey}`, headers: { Authorization: `Bearer ${PSP_SECRET}` } },
    timeoutMs: 5000,
    ...over,
  };
}

const op = (h: Harness, path: string, token: string, body: unknown = {}, headers: Record<string, string> = {}) =>
  request(h.app)
    .post(`/CvvOperations/${path}`)
    .set({ ...auth(token), ...headers })
    .send(body as object);

// ---------------------------------------------------------------------------
// The http processor
// ---------------------------------------------------------------------------

describe('http processor: settings and charges through a local fake provider', () => {
  let h: Harness;
  let m: TestMerchant;
  let p: FakeProvider;
  let patched: request.Response;

  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    p = await FakeProvider.start();
    patched = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [`${p.base}/`], processor: processorConfig(p.base) });
  });
  after(async () => {
    await p.close();
    await h.close();
  });
  beforeEach(() => p.reset());

  /** Card, session, CVV (and 3DS): the token to charge with. */
  async function flow(opts: { expMonth?: number; threeDS?: boolean; session?: Record<string, unknown> } = {}) {
    const card = await makeCard(h, m.testKey, { holderName: HOLDER, expMonth: opts.expMonth ?? 12, expYear: 2030 });
    const s = await makeSession(h, m.testKey, { card, reference: REFERENCE, ...opts.session });
    const c = await collect(h, s.token, '123');
    assert.equal(c.status, 200, JSON.stringify(c.body));
    let token = c.body.token as string;
    let tds: Record<string, any> | null = null;
    if (opts.threeDS) {
      const t = await op(h, 'threeDS', token);
      assert.equal(t.status, 200);
      assert.equal(t.body.result.status, 'Y');
      tds = t.body.result;
      token = t.body.token;
    }
    p.reset(p.answer);
    return { s, card, token, tds };
  }

  async function setProcessor(over: Record<string, unknown> = {}, advance = true) {
    if (advance) h.clock.advance(1);
    const r = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ processor: processorConfig(p.base, over) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }

  it('PATCH /Merchant stores the http processor; GET /Merchant shows only its type and url, never its headers', async () => {
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    const g = await request(h.app).get('/Merchant').set(auth(m.testKey));
    assert.equal(g.status, 200);
    assert.deepEqual(g.body.processor, { type: 'http', url: `${p.base}/v1/payments?ref=\${reference}` });
    assert.deepEqual(g.body.allowedProxyTargets, [`${p.base}/`]);
    for (const [what, res] of [
      ['PATCH', patched],
      ['GET', g],
    ] as const) {
      assert.ok(!res.text.includes(PSP_SECRET), `${what} /Merchant shows the provider secret`);
      assert.ok(!res.text.includes('Idempotency-Key'), `${what} /Merchant shows the processor's headers`);
      assert.ok(!res.text.includes('cardNumber'), `${what} /Merchant shows the processor's body template`);
    }
    assert.ok(!h.logs.join('').includes(PSP_SECRET), 'the provider secret reached the logs');
    assert.ok(!dbBytes(h).includes(PSP_SECRET), 'the provider secret is in the SQLite files in clear');
    assert.ok(!dbBytes(h).includes(Buffer.from(PSP_SECRET, 'utf16le')), 'the provider secret is in the SQLite files (UTF-16)');
  });

  it('a processor URL or lookup URL outside allowedProxyTargets is 403 target_not_allowed and changes nothing', async () => {
    const before = (await request(h.app).get('/Merchant').set(auth(m.testKey))).body;
    const outside = [
      { request: { url: 'https://psp.elsewhere.example/v1/payments', body: BODY_TEMPLATE } },
      { request: { url: `http://127.0.0.1:${p.port + 1}/v1/payments` } },
      { request: { url: `http://localhost:${p.port}/v1/payments` } },
      { lookup: { url: 'https://psp.elsewhere.example/lookup?key=${idempotencyKey}' } },
    ];
    for (const over of outside) {
      const r = await request(h.app)
        .patch('/Merchant')
        .set(auth(m.testKey))
        .send({ processor: processorConfig(p.base, over) });
      assert.equal(r.status, 403, JSON.stringify(over));
      assert.equal(r.body.error.code, 'target_not_allowed');
    }
    // Both in one request: the processor must be within the targets given with it.
    const both = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: ['https://psp.other.example/'], processor: processorConfig(p.base) });
    assert.equal(both.status, 403);
    assert.equal(both.body.error.code, 'target_not_allowed');
    const after = (await request(h.app).get('/Merchant').set(auth(m.testKey))).body;
    assert.deepEqual(after, before, 'a refused PATCH changes nothing');
  });

  it('a charge sends the real card data to the provider and maps its approval', async () => {
    const { s, token, tds } = await flow({ threeDS: true });
    const r = await op(h, 'charge', token, {}, { 'Idempotency-Key': 'pay-42' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(p.requests.length, 1, 'one request to the provider');
    const got = p.requests[0]!;
    assert.equal(got.method, 'POST');
    const u = new URL(got.path, p.base);
    assert.equal(u.pathname, '/v1/payments');
    assert.equal(u.searchParams.get('ref'), REFERENCE, 'the reference is URL-encoded in the URL');
    assert.deepEqual([...u.searchParams.keys()], ['ref']);
    assert.equal(got.headers.authorization, `Bearer ${PSP_SECRET}`);
    assert.equal(got.headers['content-type'], 'application/json');
    const body = JSON.parse(got.body);
    assert.deepEqual(body.card, { number: TEST_CARD, cvc: '123', exp_month: '12', exp_year: '2030', name: HOLDER });
    assert.equal(body.amount, 1999);
    assert.equal(body.currency, 'EUR');
    assert.equal(body.reference, REFERENCE);
    assert.match(body.idempotency_key, /^cvvops_[0-9a-f]{40}$/);
    assert.equal(got.headers['idempotency-key'], body.idempotency_key);
    assert.notEqual(body.idempotency_key, 'pay-42', 'the provider key is derived, scoped to the merchant');
    assert.deepEqual(body.three_ds, { eci: '05', cavv: tds!.authenticationValue, ds_transaction_id: tds!.dsTransactionId });
    const sent = JSON.stringify(got.headers) + got.body;
    for (const secret of [m.testKey, m.liveKey, token, s.token]) assert.ok(!sent.includes(secret), 'an API key or session token was sent to the provider');

    assert.deepEqual(
      { ...r.body.result, chargeId: undefined },
      {
        status: 'approved',
        chargeId: undefined,
        amount: { value: 1999, currency: 'EUR' },
        authorizationCode: 'PSP-AUTH-1',
        cvvResult: 'M',
        avsResult: 'Y',
        networkTransactionId: 'nt_0077',
        declineCode: null,
        processor: 'http',
      },
    );
    assert.match(r.body.result.chargeId, /^ch_/);
    assert.equal(r.body.session.status, 'completed');
    assert.ok(!r.text.includes(tds!.authenticationValue), 'the CAVV is not in the charge response');

    const again = await op(h, 'charge', token, {}, { 'Idempotency-Key': 'pay-42' });
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, r.body, 'a retry gets the first outcome');
    assert.equal(p.requests.length, 1, 'and is never sent to the provider again');
  });

  it("without an Idempotency-Key the provider's idempotency key is the charge id; a one-digit month is sent as two digits", async () => {
    const { token } = await flow({ expMonth: 3 });
    const r = await op(h, 'charge', token);
    assert.equal(r.body.result.status, 'approved');
    assert.equal(p.requests.length, 1);
    const body = JSON.parse(p.requests[0]!.body);
    assert.equal(body.idempotency_key, r.body.result.chargeId);
    assert.equal(p.requests[0]!.headers['idempotency-key'], r.body.result.chargeId);
    assert.equal(body.card.exp_month, '03');
    assert.deepEqual(body.three_ds, { eci: '', cavv: '', ds_transaction_id: '' }, 'no 3DS: empty values');
  });

  it('a provider decline maps to declined with its decline code; a CVC mismatch without a code is incorrect_cvc', async () => {
    let { token } = await flow();
    p.reset(json(402, { id: 'pay_2', payment: { status: 'failed', outcome: { decline_code: 'insufficient_funds', checks: { cvc_check: 'pass' } } } }));
    let r = await op(h, 'charge', token);
    assert.equal(r.status, 200);
    assert.equal(r.body.result.status, 'declined');
    assert.equal(r.body.result.declineCode, 'insufficient_funds');
    assert.equal(r.body.result.authorizationCode, null);
    assert.equal(r.body.result.cvvResult, 'M');
    assert.equal(r.body.session.status, 'active');
    assert.equal(p.requests.length, 1);

    ({ token } = await flow());
    p.reset(json(200, { id: 'pay_3', payment: { status: 'failed', outcome: { checks: { cvc_check: 'fail' } } } }));
    r = await op(h, 'charge', token);
    assert.equal(r.body.result.status, 'declined');
    assert.equal(r.body.result.declineCode, 'incorrect_cvc');
    assert.equal(r.body.result.cvvResult, 'N');
    // A match resets the card's CVV failure count (so later tests are not blocked).
    ({ token } = await flow());
    p.reset();
    assert.equal((await op(h, 'charge', token)).body.result.status, 'approved');
  });

  it('a provider 500 is an error result: HTTP 200, the token rotates, an attempt counts, and the page can retry', async () => {
    const { s, token } = await flow();
    p.reset(json(500, { error: 'internal' }));
    const r = await op(h, 'charge', token);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.result.status, 'error');
    assert.equal(r.body.result.declineCode, null);
    assert.equal(r.body.result.authorizationCode, null);
    assert.notEqual(r.body.token, token, 'the token rotates');
    // A 5xx may hide an approval: the provider is asked once whether it knows the charge (its lookup answers 500 too).
    assert.deepEqual(
      p.requests.map((x) => x.method),
      ['POST', 'GET'],
      'the charge, then one lookup',
    );
    assert.match(p.requests[1]!.path, /^\/v1\/payments\/lookup\?key=/);
    const replay = await op(h, 'charge', token);
    assert.deepEqual(replay.body, r.body, 'the same call with the same token is a replay (API.md section 4)');
    assert.equal(p.requests.length, 2, 'a replay is not sent to the provider');
    const stale = await op(h, 'charge', token, { amount: { value: 1000, currency: 'EUR' } });
    assert.equal(stale.status, 409, 'any other use of the old token is superseded');
    assert.equal(stale.body.error.code, 'token_superseded');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.charge.used, 1);
    assert.equal(g.body.status, 'active');
    p.reset();
    const retry = await op(h, 'charge', r.body.token);
    assert.equal(retry.body.result.status, 'approved');
  });

  it('a provider that closes the connection is an error result (HTTP 200, token rotated)', async () => {
    const { token } = await flow();
    p.reset((_req, res) => res.socket?.destroy());
    const r = await op(h, 'charge', token);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.result.status, 'error');
    assert.notEqual(r.body.token, token);
    assert.ok(p.requests.length >= 1);
  });

  it('a provider slower than timeoutMs is an error result: the call is abandoned before the provider answers', async () => {
    await setProcessor({ timeoutMs: 1000 });
    try {
      const { token } = await flow();
      let abandoned = false;
      p.reset((_req, res) => {
        const t = setTimeout(() => json(200, approvedBody)(_req, res), 10_000);
        res.on('close', () => {
          // Closed by the caller while the answer was still pending: the timeout, not the provider, ended the call.
          if (!res.writableEnded) abandoned = true;
          clearTimeout(t);
        });
      });
      const r = await op(h, 'charge', token);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.result.status, 'error');
      assert.notEqual(r.body.token, token);
      assert.ok(abandoned, 'the server stopped waiting for a provider that never answered in time');
    } finally {
      await setProcessor();
    }
  });

  it('a provider redirect (302 Location) is not followed', async () => {
    const { token } = await flow();
    p.reset(json(302, approvedBody, { location: `${p.base}/redirected/v1/payments` }));
    const r = await op(h, 'charge', token);
    assert.equal(r.status, 200);
    assert.ok(['declined', 'error'].includes(r.body.result.status), `a redirect gave ${r.body.result.status}`);
    // A followed redirect would have been requested before the charge answered: nothing to wait for.
    assert.equal(p.requests.length, 1, 'the provider saw one request');
    assert.ok(!p.requests.some((x) => x.path.startsWith('/redirected')), 'the Location was followed');
  });

  it('crash recovery: a pending charge is reconciled with the lookup template, never sent again', async () => {
    const { s, token } = await flow();
    const now = h.clock.now();
    const chargeId = newId('ch');
    // What a server that died at the processor left: the charge won the token and owns the session, its intent pending.
    const began = await h.deps.store.charges.begin({
      claim: { id: s.id, jti: decodeJws(token).payload.jti, newJti: 'jti_lost_with_the_crash', now: now - 60_000 },
      charge: {
        id: chargeId,
        merchantId: m.id,
        sessionId: s.id,
        mode: 'test',
        idempotencyKey: 'pay-crash',
        requestHash: ChargeService.requestHash({}),
        providerKey: 'cvvops_crashkey_1',
        processor: 'http',
        amount: { value: 1999, currency: 'EUR' },
        ...NO_OUTCOME,
        createdAt: now - 60_000,
        updatedAt: now - 60_000,
      },
      cvv: null,
    });
    assert.equal(began.status, 'ok');
    p.reset(json(200, { id: 'pay_crash', payment: { status: 'succeeded', outcome: { authorization_code: 'RECOVERED', checks: { cvc_check: 'M' } } } }));
    const r = await op(h, 'charge', token, {}, { 'Idempotency-Key': 'pay-crash' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.result.status, 'approved');
    assert.equal(r.body.result.chargeId, chargeId);
    assert.equal(r.body.result.authorizationCode, 'RECOVERED');
    assert.equal(p.requests.length, 1, 'one request: the lookup');
    const got = p.requests[0]!;
    assert.equal(got.method, 'GET');
    assert.equal(got.path, '/v1/payments/lookup?key=cvvops_crashkey_1');
    assert.equal(got.headers.authorization, `Bearer ${PSP_SECRET}`);
    assert.ok(!got.body.includes(TEST_CARD) && !got.path.includes(TEST_CARD), 'the lookup carries no card data');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.status, 'completed', 'the session is freed and shows the recovered approval');
    assert.equal(g.body.results.charge.authorizationCode, 'RECOVERED');
  });

  it('a processor change takes effect at once, even within the same clock millisecond', async () => {
    await setProcessor();
    try {
      let { token } = await flow();
      assert.equal((await op(h, 'charge', token)).body.result.status, 'approved');
      assert.equal(new URL(p.requests[0]!.path, p.base).pathname, '/v1/payments');
      // The next PATCH lands in the same millisecond (the clock does not move).
      await setProcessor({ request: { url: `${p.base}/v2/payments`, headers: { Authorization: `Bearer ${PSP_SECRET}` }, body: BODY_TEMPLATE } }, false);
      ({ token } = await flow());
      const r = await op(h, 'charge', token);
      assert.equal(r.body.result.status, 'approved');
      assert.equal(p.requests.length, 1);
      assert.equal(new URL(p.requests[0]!.path, p.base).pathname, '/v2/payments', 'the charge used the processor settings from before the PATCH');
    } finally {
      await setProcessor();
    }
  });

  it('after all this, the provider secret, card number and CVV are in no log line and the secret is not in the database files', () => {
    const logs = h.logs.join('');
    assert.ok(h.logs.length > 20);
    assert.ok(!logs.includes(PSP_SECRET), 'provider secret in the logs');
    assert.ok(!logs.includes(TEST_CARD), 'card number in the logs');
    assert.ok(!/"(cvv|cvc)":"\d/.test(logs), 'a CVV in the logs');
    assert.ok(!dbBytes(h).includes(PSP_SECRET), 'provider secret in the database files');
  });
});

describe('http processor: live mode never reaches private addresses, even with CVVOPS_ALLOW_PRIVATE_TARGETS', () => {
  let h: Harness;
  let m: TestMerchant;
  let p: FakeProvider;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    p = await FakeProvider.start();
    // The live key cannot save a loopback processor at all (refused before any charge)...
    const live = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.liveKey))
      .send({ allowedProxyTargets: [`${p.base}/`], processor: processorConfig(p.base) });
    assert.equal(live.status, 403, JSON.stringify(live.body));
    assert.equal(live.body.error.code, 'target_not_allowed');
    // ...the test key can, for test mode (CVVOPS_ALLOW_PRIVATE_TARGETS=on); and one that got into the live settings
    // anyway (a name that resolved elsewhere when it was saved) is still never reached from live mode.
    const r = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [`${p.base}/`], processor: processorConfig(p.base) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await forceSettings(h, m.id, 'live', { allowedProxyTargets: [`${p.base}/`], processor: processorConfig(p.base) });
  });
  after(async () => {
    await p.close();
    await h.close();
  });

  it('a live charge with a loopback processor is an error result and nothing reaches the provider', async () => {
    // Control: the same processor in test mode does reach it.
    const tc = await makeCard(h, m.testKey);
    const ts = await makeSession(h, m.testKey, { card: tc });
    const tr = await op(h, 'charge', (await collect(h, ts.token)).body.token);
    assert.equal(tr.body.result.status, 'approved');
    assert.equal(p.requests.length, 1);

    p.reset();
    const card = await makeCard(h, m.liveKey, { number: LIVE_CARD });
    const s = await makeSession(h, m.liveKey, { card });
    const c = await collect(h, s.token);
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const r = await op(h, 'charge', c.body.token);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    p.assertUntouched('live charge to 127.0.0.1');
    assert.equal(r.body.result.status, 'error');
  });
});

// ---------------------------------------------------------------------------
// POST /proxy
// ---------------------------------------------------------------------------

describe('POST /proxy through a local fake provider', () => {
  let h: Harness;
  let m: TestMerchant;
  let p: FakeProvider;
  let card: string;
  let cvc: string;
  let target: string;

  const proxy = (key: string, headers: Record<string, string>, body: string, type = 'application/json') =>
    request(h.app)
      .post('/proxy')
      .set({ ...auth(key), 'Content-Type': type, ...headers })
      .send(body);
  const CVV_BODY = '{"number":"${cardNumber}","cvc":"${cvv}","name":"${holderName}"}';

  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    p = await FakeProvider.start();
    target = `${p.base}/forward`;
    const r = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [target, 'https://psp.example.invalid/'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = await request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123', holderName: HOLDER });
    assert.equal(c.status, 201);
    card = c.body.token;
    cvc = c.body.cvcSession.id;
  });
  after(async () => {
    await p.close();
    await h.close();
  });
  beforeEach(() => p.reset());

  it("forwards the body with the placeholders filled in and JSON-escaped; returns the provider's status, headers and body", async () => {
    p.reset(json(201, { id: 'tok_psp_1', ok: true }, { 'x-psp-request': 'psp-req-9', 'proxy-authenticate': 'Basic realm="psp"', 'keep-alive': 'timeout=77' }));
    const r = await proxy(
      m.testKey,
      {
        'X-Proxy-Target': target,
        'X-Card-Token': card,
        'X-Cvc-Session-Id': cvc,
        'X-Proxy-Authorization': 'Bearer psp_token_abc',
        'X-Custom': 'kept',
        Cookie: 'sid=ours',
        'Proxy-Authorization': 'Basic b3Vyczpwcm94eQ==',
      },
      CVV_BODY,
    );
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(JSON.parse(r.text), { id: 'tok_psp_1', ok: true });
    assert.equal(r.headers['x-psp-request'], 'psp-req-9');
    assert.match(r.headers['content-type'] ?? '', /application\/json/);
    assert.equal(r.headers['proxy-authenticate'], undefined, 'a hop-by-hop header came back');
    assert.notEqual(r.headers['keep-alive'], 'timeout=77', "the provider's Keep-Alive came back");

    assert.equal(p.requests.length, 1);
    const got = p.requests[0]!;
    assert.equal(got.method, 'POST');
    assert.equal(got.path, '/forward');
    assert.deepEqual(JSON.parse(got.body), { number: TEST_CARD, cvc: '123', name: HOLDER });
    assert.equal(got.headers.authorization, 'Bearer psp_token_abc', 'X-Proxy-Authorization is forwarded as Authorization');
    assert.equal(got.headers['x-custom'], 'kept');
    assert.match(String(got.headers['content-type']), /application\/json/);
    for (const name of ['x-proxy-target', 'x-proxy-authorization', 'proxy-authorization', 'x-card-token', 'x-cvc-session-id', 'cookie']) {
      assert.equal(got.headers[name], undefined, `${name} was forwarded`);
    }
    assert.ok(!JSON.stringify(got.headers).includes(m.testKey), 'our API key was forwarded');
    assert.ok(!h.logs.join('').includes('psp_token_abc'), "the provider's credential reached our logs");
  });

  it('our Authorization is never forwarded, even without X-Proxy-Authorization', async () => {
    const r = await proxy(m.testKey, { 'X-Proxy-Target': target }, '{"hello":"world"}');
    assert.equal(r.status, 200);
    assert.equal(p.requests[0]!.headers.authorization, undefined);
    assert.ok(!JSON.stringify(p.requests[0]!.headers).includes(m.testKey));
    assert.equal(p.requests[0]!.body, '{"hello":"world"}', 'a body without placeholders is forwarded as it is');
  });

  it('a form body gets URL-encoded values', async () => {
    const r = await proxy(
      m.testKey,
      { 'X-Proxy-Target': target, 'X-Card-Token': card, 'X-Cvc-Session-Id': cvc },
      'number=${cardNumber}&cvc=${cvv}&name=${holderName}&month=${expMonth}',
      'application/x-www-form-urlencoded',
    );
    assert.equal(r.status, 200, r.text);
    const form = new URLSearchParams(p.requests[0]!.body);
    assert.deepEqual([...form.keys()], ['number', 'cvc', 'name', 'month']);
    assert.equal(form.get('number'), TEST_CARD);
    assert.equal(form.get('cvc'), '123');
    assert.equal(form.get('name'), HOLDER);
    assert.equal(form.get('month'), '12');
  });

  it('test mode: the CVC session of a test card is not destroyed by a forward', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await proxy(m.testKey, { 'X-Proxy-Target': target, 'X-Card-Token': card, 'X-Cvc-Session-Id': cvc }, CVV_BODY);
      assert.equal(r.status, 200, r.text);
    }
    assert.equal(p.requests.length, 2);
  });

  it('a body with ${cvv} but no X-Cvc-Session-Id is 400 cvc_session_missing and nothing is sent', async () => {
    const r = await proxy(m.testKey, { 'X-Proxy-Target': target, 'X-Card-Token': card }, CVV_BODY);
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'cvc_session_missing');
    p.assertUntouched('cvc_session_missing');
  });

  it('a target outside allowedProxyTargets is 403 target_not_allowed and nothing is sent', async () => {
    for (const t of [
      `${p.base}/other`,
      `${p.base}/forwarded`,
      `${p.base}/forward/../admin`,
      `http://127.0.0.1:${p.port + 1}/forward`,
      `http://localhost:${p.port}/forward`,
      `http://127.0.0.1:${p.port}@psp.evil.example/forward`,
      'https://psp.evil.example/forward',
    ]) {
      const r = await proxy(m.testKey, { 'X-Proxy-Target': t, 'X-Card-Token': card, 'X-Cvc-Session-Id': cvc }, CVV_BODY);
      assert.equal(r.status, 403, `${t}: ${r.status} ${r.text}`);
      assert.equal(r.body.error.code, 'target_not_allowed');
    }
    p.assertUntouched('targets outside the list');
  });

  it("an expired, deleted, unknown or another merchant's CVC session is 410 cvc_session_not_found, with one message for all", async () => {
    const b = await makeMerchant(h, ['https://b.example']);
    assert.equal(
      (
        await request(h.app)
          .patch('/Merchant')
          .set(auth(b.testKey))
          .send({ allowedProxyTargets: [target] })
      ).status,
      200,
    );
    const bCard = await makeCard(h, b.testKey, { holderName: 'B' });
    const mk = async () =>
      (await request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' })).body as {
        token: string;
        cvcSession: { id: string };
      };
    const deleted = await mk();
    assert.equal((await request(h.app).delete(`/CvcSessions/${deleted.cvcSession.id}`).set(auth(m.testKey))).status, 204);
    const foreign = await mk();
    const expired = await mk();
    const answers: Record<string, { status: number; code: string; message: string }> = {};
    const ask = async (what: string, key: string, cardToken: string, id: string) => {
      const r = await proxy(key, { 'X-Proxy-Target': target, 'X-Card-Token': cardToken, 'X-Cvc-Session-Id': id }, CVV_BODY);
      answers[what] = { status: r.status, code: r.body?.error?.code, message: r.body?.error?.message };
    };
    await ask('deleted', m.testKey, deleted.token, deleted.cvcSession.id);
    await ask('unknown', m.testKey, card, newId('cvc'));
    await ask('foreign', b.testKey, bCard, foreign.cvcSession.id);
    const t0 = h.clock.now();
    try {
      h.clock.advance(366 * 24 * 3600 * 1000);
      await ask('expired', m.testKey, expired.token, expired.cvcSession.id);
    } finally {
      h.clock.set(t0);
    }
    for (const [what, a] of Object.entries(answers)) {
      assert.equal(a.status, 410, `${what}: ${JSON.stringify(a)}`);
      assert.equal(a.code, 'cvc_session_not_found', what);
      assert.equal(a.message, answers.unknown!.message, `${what} has its own message: an oracle`);
    }
    p.assertUntouched('gone CVC sessions');
    // Control: A's "foreign" session works for A.
    assert.equal(
      (await proxy(m.testKey, { 'X-Proxy-Target': target, 'X-Card-Token': foreign.token, 'X-Cvc-Session-Id': foreign.cvcSession.id }, CVV_BODY)).status,
      200,
    );
  });

  describe('live mode', () => {
    before(async () => {
      // Live settings are the live key's own: an https target that does not resolve stands in for a provider.
      const r = await request(h.app)
        .patch('/Merchant')
        .set(auth(m.liveKey))
        .send({ allowedProxyTargets: ['https://psp.example.invalid/'] });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    });

    async function liveCvc(retention: 'single_use' | 'cache' = 'single_use') {
      const liveCard = await makeCard(h, m.liveKey, { number: LIVE_CARD });
      const s = await makeSession(h, m.liveKey, { card: liveCard, cvvRetention: retention });
      const c = await collect(h, s.token);
      assert.equal(c.status, 200, JSON.stringify(c.body));
      return { card: liveCard, cvc: c.body.result.cvcSession.id as string, session: s };
    }
    const available = async (cardToken: string) =>
      (await request(h.app).get(`/Cards/${cardToken}/cvv/status`).set(auth(m.liveKey))).body.cvcSession.available as boolean;

    it('single_use: a forward consumes the CVC session; a second forward with it is 410', async () => {
      // A live forward can never reach the loopback fake provider (see the SSRF test): an https target that
      // does not resolve stands in. The CVV is used (taken from the vault) before the connection is tried.
      const l = await liveCvc();
      assert.equal(await available(l.card), true);
      const first = await proxy(
        m.liveKey,
        { 'X-Proxy-Target': 'https://psp.example.invalid/forward', 'X-Card-Token': l.card, 'X-Cvc-Session-Id': l.cvc },
        CVV_BODY,
      );
      assert.equal(first.status, 502, first.text);
      assert.equal(first.body.error.code, 'processor_error');
      assert.ok(!first.text.includes(LIVE_CARD));
      assert.equal(await available(l.card), false, 'the single-use CVV is gone after its use');
      const second = await proxy(
        m.liveKey,
        { 'X-Proxy-Target': 'https://psp.example.invalid/forward', 'X-Card-Token': l.card, 'X-Cvc-Session-Id': l.cvc },
        CVV_BODY,
      );
      assert.equal(second.status, 410);
      assert.equal(second.body.error.code, 'cvc_session_not_found');
    });

    it('SSRF: private targets are refused with the live key even when listed (403), and nothing reaches the provider', async () => {
      const listed = [
        target,
        `https://127.0.0.1:${p.port}/forward`,
        `https://localhost:${p.port}/forward`,
        `http://localhost:${p.port}/forward`,
        `https://[::1]:${p.port}/forward`,
        `https://127.0.0.2:${p.port}/forward`,
      ];
      const r0 = await request(h.app)
        .patch('/Merchant')
        .set(auth(m.liveKey))
        .send({ allowedProxyTargets: [...listed, 'https://psp.example.invalid/'] });
      assert.equal(r0.status, 403, 'a live key cannot list private targets');
      assert.equal(r0.body.error.code, 'target_not_allowed');
      // Listed anyway (saved while the names resolved elsewhere): every forward is still refused.
      await forceSettings(h, m.id, 'live', { allowedProxyTargets: [...listed, 'https://psp.example.invalid/'] });
      const liveCard = await makeCard(h, m.liveKey, { number: LIVE_CARD });
      for (const t of listed) {
        const r = await proxy(m.liveKey, { 'X-Proxy-Target': t, 'X-Card-Token': liveCard }, '{"number":"${cardNumber}"}');
        assert.equal(r.status, 403, `${t}: ${r.status} ${r.text}`);
        assert.equal(r.body.error.code, 'target_not_allowed');
      }
      p.assertUntouched('live forwards to private addresses');
      // Control: the same list lets the test key through.
      assert.equal((await proxy(m.testKey, { 'X-Proxy-Target': target, 'X-Card-Token': card }, '{"number":"${cardNumber}"}')).status, 200);
      assert.equal(p.requests.length, 1);
    });

    it('a forward refused as a private target does not use up the single-use CVC session', async () => {
      const l = await liveCvc();
      for (const t of [target, `https://127.0.0.1:${p.port}/forward`, `https://localhost:${p.port}/forward`]) {
        const r = await proxy(m.liveKey, { 'X-Proxy-Target': t, 'X-Card-Token': l.card, 'X-Cvc-Session-Id': l.cvc }, CVV_BODY);
        assert.equal(r.status, 403, `${t}: ${r.status} ${r.text}`);
        assert.equal(await available(l.card), true, `a refused forward to ${t} destroyed the CVV`);
      }
      p.assertUntouched('refused live forwards');
    });
  });
});

describe('without CVVOPS_ALLOW_PRIVATE_TARGETS: loopback targets are refused in test mode too', () => {
  let h: Harness;
  let m: TestMerchant;
  let p: FakeProvider;
  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
    p = await FakeProvider.start();
  });
  after(async () => {
    await p.close();
    await h.close();
  });

  it('POST /proxy to http(s)://127.0.0.1 or localhost is 403 target_not_allowed and nothing reaches the provider', async () => {
    const targets = [`${p.base}/forward`, `https://127.0.0.1:${p.port}/forward`, `https://localhost:${p.port}/forward`, `http://localhost:${p.port}/forward`];
    const r0 = await request(h.app).patch('/Merchant').set(auth(m.testKey)).send({ allowedProxyTargets: targets });
    assert.equal(r0.status, 403, 'refused when saved');
    assert.equal(r0.body.error.code, 'target_not_allowed');
    await forceSettings(h, m.id, 'test', { allowedProxyTargets: targets });
    const card = await makeCard(h, m.testKey);
    for (const t of targets) {
      const r = await request(h.app)
        .post('/proxy')
        .set({ ...auth(m.testKey), 'X-Proxy-Target': t, 'X-Card-Token': card, 'Content-Type': 'application/json' })
        .send('{"number":"${cardNumber}"}');
      assert.equal(r.status, 403, `${t}: ${r.status} ${r.text}`);
      assert.equal(r.body.error.code, 'target_not_allowed');
    }
    p.assertUntouched('proxy without CVVOPS_ALLOW_PRIVATE_TARGETS');
  });

  it('an http processor on 127.0.0.1 gives an error result and nothing reaches the provider', async () => {
    h.clock.advance(1);
    const r0 = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [`${p.base}/`], processor: processorConfig(p.base) });
    assert.equal(r0.status, 403, 'refused when saved');
    await forceSettings(h, m.id, 'test', { allowedProxyTargets: [`${p.base}/`], processor: processorConfig(p.base) });
    const card = await makeCard(h, m.testKey);
    const s = await makeSession(h, m.testKey, { card });
    const r = await op(h, 'charge', (await collect(h, s.token)).body.token);
    assert.equal(r.status, 200);
    assert.equal(r.body.result.status, 'error');
    p.assertUntouched('processor without CVVOPS_ALLOW_PRIVATE_TARGETS');
  });
});

// ---------------------------------------------------------------------------
// server/connectors/outbound.ts
// ---------------------------------------------------------------------------

describe('outbound(): private addresses and refusals before connecting', () => {
  let p: FakeProvider;
  before(async () => {
    p = await FakeProvider.start();
  });
  after(() => p.close());
  beforeEach(() => p.reset());

  const privateOnes = [
    '127.0.0.1',
    '127.255.255.254',
    '10.0.0.1',
    '10.255.1.2',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:7f00:1',
    'not-an-ip',
  ];
  const publicOnes = ['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '100.128.0.1', '2001:4860:4860::8888', '2606:4700:4700::1111', '::ffff:8.8.8.8'];
  for (const ip of privateOnes) it(`isPrivateAddress(${ip}) is true`, () => assert.equal(isPrivateAddress(ip), true));
  for (const ip of publicOnes) it(`isPrivateAddress(${ip}) is false`, () => assert.equal(isPrivateAddress(ip), false));

  const base = { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"cvc":"123"}', timeoutMs: 2000 };

  it('with allowPrivate false, refuses http://127.0.0.1, http://localhost, https://127.0.0.1, https://localhost and https://[::1] before connecting', async () => {
    for (const url of [
      `http://127.0.0.1:${p.port}/x`,
      `http://localhost:${p.port}/x`,
      `https://127.0.0.1:${p.port}/x`,
      `https://localhost:${p.port}/x`,
      `https://[::1]:${p.port}/x`,
      `https://[::ffff:127.0.0.1]:${p.port}/x`,
      `https://2130706433:${p.port}/x`,
      `https://0x7f.1:${p.port}/x`,
    ]) {
      await assert.rejects(outbound({ ...base, url, allowPrivate: false }), (e: unknown) => {
        assert.ok(e instanceof OutboundError, `${url}: ${String(e)}`);
        assert.equal(e.kind, 'refused', `${url}: ${e.message}`);
        return true;
      });
    }
    p.assertUntouched('outbound with allowPrivate false');
  });

  it('with allowPrivate false, a public IPv4 or IPv6 literal is not refused as private (the call is tried)', async () => {
    for (const url of ['https://8.8.8.8:1/x', 'https://[2001:4860:4860::8888]:1/x']) {
      await assert.rejects(outbound({ ...base, url, timeoutMs: 500, allowPrivate: false }), (e: unknown) => {
        assert.ok(e instanceof OutboundError);
        assert.notEqual(e.kind, 'refused', `${url} was refused: ${e.message}`);
        return true;
      });
    }
  });

  it('refuses credentials in the URL and other schemes', async () => {
    for (const url of ['https://user:pw@psp.example/', 'ftp://psp.example/', 'file:///etc/passwd', 'not a url']) {
      await assert.rejects(outbound({ ...base, url, allowPrivate: true }), (e: unknown) => e instanceof OutboundError && e.kind === 'refused');
    }
  });

  it('control: with allowPrivate true the same call reaches the server; a 302 comes back as it is, not followed', async () => {
    p.reset(json(302, { moved: true }, { location: `${p.base}/elsewhere` }));
    const r = await outbound({ ...base, url: `${p.base}/x`, allowPrivate: true });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, `${p.base}/elsewhere`);
    assert.deepEqual(JSON.parse(r.body.toString()), { moved: true });
    assert.equal(p.requests.length, 1);
    assert.equal(p.requests[0]!.body, '{"cvc":"123"}');
  });

  it('a response over maxResponseBytes and a slow server are transport/timeout errors', async () => {
    p.reset((_req, res) => {
      res.writeHead(200);
      res.end(Buffer.alloc(64 * 1024, 'a'));
    });
    await assert.rejects(outbound({ ...base, url: `${p.base}/big`, allowPrivate: true, maxResponseBytes: 1024 }), (e: unknown) => e instanceof OutboundError);
    let closed!: (abandoned: boolean) => void;
    const whenClosed = new Promise<boolean>((r) => (closed = r));
    p.reset((_req, res) => {
      const t = setTimeout(() => res.end('late'), 10_000);
      res.on('close', () => {
        clearTimeout(t);
        closed(!res.writableEnded);
      });
    });
    await assert.rejects(
      outbound({ ...base, url: `${p.base}/slow`, timeoutMs: 300, allowPrivate: true }),
      (e: unknown) => e instanceof OutboundError && e.kind === 'timeout',
    );
    // The server sees the close a moment after the caller gave up (bounded: a connection left open fails the test).
    const abandoned = await Promise.race([whenClosed, new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
    assert.ok(abandoned, 'the connection was closed before the slow server answered');
  });
});
