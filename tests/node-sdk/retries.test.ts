import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CvvOps, CvvOpsError, type CvvOpsLogEntry } from '../../packages/node/src/index.js';
import { TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { apiError, closedPort, countRows, FaultProxy, json, merchantOf, serve, type Served, StubServer } from './helpers.js';

/**
 * issue 17: retries. Against the real server through a proxy that drops the connection after the
 * server has committed (the answer is lost), and against a stub for what a server does not do
 * on demand (429 with Retry-After, 5xx, slowness).
 */

async function failure(p: Promise<unknown>): Promise<CvvOpsError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CvvOpsError, String(err));
    return err;
  }
  assert.fail('did not reject');
}

describe('retries after a connection dropped once the server had committed', () => {
  let s: Served;
  let m: TestMerchant;
  let proxy: FaultProxy;
  let cvvops: CvvOps;
  const logs: CvvOpsLogEntry[] = [];
  before(async () => {
    s = await serve();
    m = await merchantOf(s);
    proxy = await FaultProxy.start(s.base);
    cvvops = new CvvOps(m.testKey, { baseUrl: proxy.url, retryBaseDelayMs: 20, log: (e) => logs.push(e) });
  });
  after(async () => {
    await proxy.close();
    await s.close();
  });

  it('cards.create: the retry (same Idempotency-Key) returns the same card, and only one is stored', async () => {
    const before = countRows(s.h, 'cards', m.id);
    proxy.dropAnswer(/^POST \/Cards HTTP/);
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    assert.deepEqual(proxy.dropped, ['POST /Cards HTTP/1.1'], 'the first answer was dropped');
    assert.equal(proxy.forwarded.filter((l) => l.startsWith('POST /Cards ')).length, 2, 'the request reached the server twice');
    assert.equal(countRows(s.h, 'cards', m.id), before + 1, 'a retry created a second card');
    assert.equal((await cvvops.cards.retrieve(card.token)).token, card.token);
    assert.ok(logs.some((l) => l.event === 'retry' && l.path === '/Cards' && l.code === 'connection_error'));
  });

  it('sessions.create: the retry returns the same session and the same first token', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const before = countRows(s.h, 'sessions', m.id);
    proxy.dropped.length = 0;
    proxy.dropAnswer(/^POST \/CvvOperations HTTP/);
    const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] });
    assert.equal(proxy.dropped.length, 1);
    assert.equal(countRows(s.h, 'sessions', m.id), before + 1, 'a retry created a second session');
    const v = await cvvops.sessions.validateToken(session.token);
    assert.ok(v.valid && v.current, 'the replayed token is the current one');
  });

  it("a caller's own Idempotency-Key is what is sent: a later call with it returns the first card", async () => {
    const key = `order-17-${Date.now()}`;
    const a = await cvvops.cards.create({ number: TEST_CARD, expMonth: 11, expYear: 2031 }, { idempotencyKey: key });
    const b = await cvvops.cards.create({ number: TEST_CARD, expMonth: 11, expYear: 2031 }, { idempotencyKey: key });
    assert.equal(b.token, a.token);
    const e = await failure(cvvops.cards.create({ number: TEST_CARD, expMonth: 10, expYear: 2031 }, { idempotencyKey: key }));
    assert.deepEqual([e.status, e.code], [409, 'idempotency_key_reused'], 'the same key with another body');
  });

  it('sessions.cancel and validateToken are retried (a repeat changes nothing)', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] });
    proxy.dropAnswer(new RegExp(`^POST /CvvOperations/${session.id}/cancel HTTP`));
    assert.equal((await cvvops.sessions.cancel(session.id)).status, 'canceled');
    proxy.dropAnswer(/^POST \/CvvOperations\/validateToken HTTP/);
    const v = await cvvops.sessions.validateToken(session.token);
    assert.equal(v.valid, true);
  });

  it('a DELETE whose answer was lost: the retry finds it gone (404) and resolves, since it is deleted', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    proxy.dropAnswer(new RegExp(`^DELETE /Cards/${card.token} HTTP`));
    assert.equal(await cvvops.cards.del(card.token), undefined);
    assert.equal(proxy.forwarded.filter((l) => l.startsWith(`DELETE /Cards/${card.token} `)).length, 2);
    // Without a lost answer, a 404 is an error as usual.
    const e = await failure(cvvops.cards.del(card.token));
    assert.deepEqual([e.status, e.code], [404, 'not_found']);
  });

  it('sessions.reissue is not retried once it may have reached the server: it would rotate the token again', async () => {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] });
    proxy.dropAnswer(new RegExp(`^POST /CvvOperations/${session.id}/token HTTP`));
    const e = await failure(cvvops.sessions.reissue(session.id));
    assert.equal(e.code, 'connection_error');
    assert.equal(e.status, undefined);
    assert.equal(proxy.forwarded.filter((l) => l.includes(`/${session.id}/token`)).length, 1, 'reissue was sent again');
    // The lost reissue did happen: the first token is no longer current. Calling again gives the one that works.
    const first = await cvvops.sessions.validateToken(session.token);
    assert.ok(first.valid && !first.current);
    const { token } = await cvvops.sessions.reissue(session.id);
    const v = await cvvops.sessions.validateToken(token);
    assert.ok(v.valid && v.current && v.claims.seq === 2);
  });

  it('webhookEndpoints.create is not retried once it may have reached the server (no Idempotency-Key there): one endpoint', async () => {
    const before = countRows(s.h, 'webhook_endpoints', m.id);
    proxy.dropAnswer(/^POST \/WebhookEndpoints HTTP/);
    const e = await failure(cvvops.webhookEndpoints.create({ url: 'https://hooks.shop.example/x', events: ['charge.succeeded'] }));
    assert.equal(e.code, 'connection_error');
    assert.equal(countRows(s.h, 'webhook_endpoints', m.id), before + 1, 'exactly the one endpoint the lost request created');
    assert.equal((await cvvops.webhookEndpoints.list()).data.length, before + 1);
  });
});

describe('retry policy (stub server)', () => {
  let stub: StubServer;
  const client = (opts: Partial<ConstructorParameters<typeof CvvOps>[1]> = {}) =>
    new CvvOps(`sk_test_${'k'.repeat(43)}`, { baseUrl: stub.url, retryBaseDelayMs: 10, ...opts });
  before(async () => {
    stub = await StubServer.start();
  });
  after(() => stub.close());

  const card = {
    token: 'tok_1',
    brand: 'visa',
    last4: '1018',
    bin: '400000',
    expMonth: 12,
    expYear: 2030,
    createdAt: '2026-01-01T00:00:00Z',
    cvcSession: null,
  };

  it('5xx: retried up to maxRetries with one Idempotency-Key for every attempt; a new key per call', async () => {
    stub.requests.length = 0;
    stub.handle = (_r, res, n) => (n < 3 ? apiError(res, 500, 'internal_error') : json(res, 201, card));
    const got = await client().cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    assert.equal(got.token, 'tok_1');
    assert.equal(stub.requests.length, 3);
    const keys = new Set(stub.requests.map((r) => r.headers['idempotency-key']));
    assert.equal(keys.size, 1, 'every retry carries the same Idempotency-Key');
    assert.match(String([...keys][0]), /^cvvops-node-[0-9a-f-]{36}$/);

    stub.requests.length = 0;
    stub.handle = (_r, res) => apiError(res, 503, 'internal_error');
    const e = await failure(client({ maxRetries: 1 }).cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 }));
    assert.deepEqual([e.status, e.code, e.requestId], [503, 'internal_error', 'req_stub']);
    assert.equal(stub.requests.length, 2, 'maxRetries: 1 is two attempts');

    stub.requests.length = 0;
    stub.handle = (_r, res) => json(res, 201, card);
    const c = client();
    await c.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    await c.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    assert.notEqual(stub.requests[0]!.headers['idempotency-key'], stub.requests[1]!.headers['idempotency-key'], 'two calls share a key');
  });

  it('every POST carries an Idempotency-Key; GET, PATCH and DELETE do not', async () => {
    stub.requests.length = 0;
    stub.handle = (r, res) =>
      r.method === 'DELETE' ? (res.writeHead(204), res.end()) : json(res, 200, { token: 'x', id: 'mer_1', valid: false, reason: 'malformed' });
    const c = client();
    await c.sessions.reissue('cvo_1');
    await c.sessions.cancel('cvo_1');
    await c.sessions.validateToken('a.b.c');
    await c.cards.unblockCvv('tok_1');
    await c.merchant.retrieve();
    await c.merchant.update({ cvvBlockThreshold: 4 });
    await c.cards.del('tok_1');
    for (const r of stub.requests) {
      assert.equal(typeof r.headers['idempotency-key'] === 'string', r.method === 'POST', `${r.method} ${r.path}`);
      assert.equal(r.headers.authorization, `Bearer sk_test_${'k'.repeat(43)}`);
      assert.match(String(r.headers['user-agent']), /^cvvops-node\/\d+\.\d+\.\d+ node\/v\d+/);
    }
  });

  it('5xx on reissue or webhook endpoint creation is not retried; on a GET it is', async () => {
    stub.requests.length = 0;
    stub.handle = (_r, res) => apiError(res, 500, 'internal_error');
    const c = client();
    assert.equal((await failure(c.sessions.reissue('cvo_1'))).status, 500);
    assert.equal((await failure(c.webhookEndpoints.create({ url: 'https://x.example', events: ['charge.failed'] }))).status, 500);
    assert.equal(stub.requests.length, 2);
    await failure(c.sessions.retrieve('cvo_1'));
    assert.equal(stub.requests.length, 5, 'a GET is retried twice');
  });

  it('429 honours Retry-After (reissue too: rate_limited is answered before any work); attempts_exhausted is not retried', async () => {
    stub.requests.length = 0;
    stub.handle = (_r, res, n) => (n === 1 ? apiError(res, 429, 'rate_limited', { 'retry-after': '1' }) : json(res, 200, { token: 'tok' }));
    const logs: CvvOpsLogEntry[] = [];
    assert.deepEqual(await client({ log: (l) => logs.push(l) }).sessions.reissue('cvo_1'), { token: 'tok' });
    // The backoff it chose is Retry-After's second, not its own (10 ms here).
    assert.deepEqual(
      logs.map((l) => [l.event, l.status, l.delayMs]),
      [
        ['retry', 429, 1000],
        ['response', 200, undefined],
      ],
    );

    stub.requests.length = 0;
    stub.handle = (_r, res) => apiError(res, 429, 'attempts_exhausted');
    assert.equal((await failure(client().sessions.retrieve('cvo_1'))).code, 'attempts_exhausted');
    assert.equal(stub.requests.length, 1);

    stub.requests.length = 0;
    stub.handle = (_r, res) => apiError(res, 429, 'rate_limited', { 'retry-after': '3600' });
    const e = await failure(client().sessions.retrieve('cvo_1'));
    assert.deepEqual([e.code, e.retryAfterSeconds, stub.requests.length], ['rate_limited', 3600, 1], 'a Retry-After over a minute is left to the caller');
  });

  it('409 idempotency_key_reused with Retry-After (the first request with the key still running) is waited for', async () => {
    stub.requests.length = 0;
    stub.handle = (_r, res, n) => (n === 1 ? apiError(res, 409, 'idempotency_key_reused', { 'retry-after': '0' }) : json(res, 201, card));
    assert.equal((await client().cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 })).token, 'tok_1');
    assert.equal(stub.requests.length, 2);
    stub.requests.length = 0;
    stub.handle = (_r, res) => apiError(res, 409, 'idempotency_key_reused');
    assert.equal((await failure(client().cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 }))).code, 'idempotency_key_reused');
    assert.equal(stub.requests.length, 1, 'the key with another body is not retried');
  });

  it('timeouts: retried where a repeat is harmless, not on reissue', async () => {
    stub.requests.length = 0;
    stub.handle = (_r, res, n) => {
      if (n === 1) setTimeout(() => json(res, 200, { id: 'mer_1' }), 3000);
      else json(res, 200, { id: 'mer_1' });
    };
    // The answer comes from the second attempt: the first (3 s) was not waited for.
    assert.equal((await client({ timeoutMs: 100 }).merchant.retrieve()).id, 'mer_1');
    assert.equal(stub.requests.length, 2);

    stub.requests.length = 0;
    stub.handle = (_r, res) => setTimeout(() => json(res, 200, { token: 'x' }), 400);
    const logs: CvvOpsLogEntry[] = [];
    const e = await failure(client({ timeoutMs: 100, log: (l) => logs.push(l) }).sessions.reissue('cvo_1'));
    assert.equal(e.code, 'timeout');
    // The call has ended: the SDK planned no retry (a retry is logged before it waits for its backoff).
    assert.deepEqual(
      logs.map((l) => l.event),
      ['failure'],
    );
    assert.equal(stub.requests.length, 1);
  });

  it('a refused connection is retried for every method (nothing was sent), then connection_error', async () => {
    const logs: CvvOpsLogEntry[] = [];
    const c = new CvvOps(`sk_test_${'k'.repeat(43)}`, { baseUrl: `http://127.0.0.1:${await closedPort()}`, retryBaseDelayMs: 5, log: (l) => logs.push(l) });
    const e = await failure(c.sessions.reissue('cvo_1'));
    assert.equal(e.code, 'connection_error');
    assert.match(e.message, /ECONNREFUSED/);
    assert.deepEqual(
      logs.map((l) => l.event),
      ['retry', 'retry', 'failure'],
    );
  });

  it("the caller's AbortSignal stops the call and its retries", async () => {
    stub.requests.length = 0;
    const ac = new AbortController();
    // Aborted while the request is at the server, which would answer only after 2 s.
    stub.handle = (_r, res) => {
      ac.abort();
      setTimeout(() => json(res, 200, {}), 2000);
    };
    const e = await failure(client().merchant.retrieve({ signal: ac.signal }));
    assert.equal(e.code, 'aborted');
    assert.equal(stub.requests.length, 1);
  });

  it('an id is always one path segment ("a/b"); an empty id, "." or ".." or a bad Idempotency-Key is refused before sending', async () => {
    stub.requests.length = 0;
    stub.handle = (_r, res) => apiError(res, 404, 'not_found');
    const c = client();
    for (const call of [() => c.sessions.cancel('a..b'), () => c.cards.retrieve('../Merchant'), () => c.webhookEndpoints.del('a/b?x=1#y')]) {
      assert.equal((await failure(call())).code, 'not_found');
    }
    assert.deepEqual(
      stub.requests.map((r) => `${r.method} ${r.path}`),
      ['POST /CvvOperations/a..b/cancel', 'GET /Cards/..%2FMerchant', 'DELETE /WebhookEndpoints/a%2Fb%3Fx%3D1%23y'],
    );
    for (const id of ['', '.', '..']) assert.equal((await failure(c.sessions.cancel(id))).code, 'invalid_request');
    assert.equal((await failure(c.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 }, { idempotencyKey: 'a key\n' }))).code, 'invalid_request');
    assert.equal(stub.requests.length, 3);
  });

  it('an answer that is not the API error shape is api_error with its status', async () => {
    stub.handle = (_r, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<h1>Bad gateway</h1>');
    };
    const e = await failure(client({ maxRetries: 0 }).merchant.retrieve());
    assert.deepEqual([e.status, e.code], [502, 'api_error']);
  });
});
