import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import http, { type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { type Recorded, RecordingServer } from '../helpers/recording-server.js';
import { buildApp } from '../../server/app.js';
import { createDeps, type Deps } from '../../server/deps.js';
import { newId } from '../../server/domain/ids.js';
import { createLogger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, makeSession, TEST_CARD, type TestMerchant } from '../helpers/harness.js';

/** API.md section 8 (webhook endpoints, events, signatures, the durable outbox) and SECURITY.md (no secrets in webhooks). */

const ALL_EVENTS = [
  'cvv.collected',
  'threeds.completed',
  'charge.succeeded',
  'charge.failed',
  'session.completed',
  'session.canceled',
  'session.expired',
  'cvv.blocked',
];
const LIVE_CARD = '4242424242424242';

type Delivery = Recorded;

/** A merchant's webhook receiver: records every request; answers what `status` says for its path. */
class Receiver extends RecordingServer {
  status: (d: Delivery) => number = () => 200;
  reply: ((d: Delivery, res: ServerResponse) => void) | null = null;

  static async start(port = 0): Promise<Receiver> {
    return RecordingServer.listen((server) => new Receiver(server), port);
  }

  protected override respond(d: Delivery, res: ServerResponse): void {
    if (this.reply) return this.reply(d, res);
    res.writeHead(this.status(d), { 'content-type': 'text/plain' });
    res.end('ok');
  }

  get got(): Delivery[] {
    return this.requests;
  }

  at(path: string): Delivery[] {
    return this.requests.filter((d) => d.path === path);
  }
}

async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Verifies `Cvvops-Signature` with nothing but node:crypto, as a merchant would. */
function verifySignature(header: string | string[] | undefined, raw: string, secret: string): { ok: boolean; t: number } {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(header ?? ''));
  if (!m) return { ok: false, t: NaN };
  const expected = createHmac('sha256', secret).update(`${m[1]}.${raw}`).digest();
  return { ok: timingSafeEqual(expected, Buffer.from(m[2]!, 'hex')), t: Number(m[1]) };
}

const op = (h: Harness, path: string, token: string, body: unknown = {}) =>
  request(h.app)
    .post(`/CvvOperations/${path}`)
    .set(auth(token))
    .send(body as object);

async function addEndpoint(h: Harness, key: string, url: string, events: string[] = ALL_EVENTS): Promise<{ id: string; secret: string }> {
  const r = await request(h.app).post('/WebhookEndpoints').set(auth(key)).send({ url, events });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { id: r.body.id, secret: r.body.secret };
}

function dbBytes(h: Harness): Buffer {
  return Buffer.concat(
    ['-wal', '-shm', '']
      .map((s) => h.dbPath + s)
      .filter((f) => existsSync(f))
      .map((f) => readFileSync(f)),
  );
}

// ---------------------------------------------------------------------------

describe('webhook endpoints: POST, GET, DELETE /WebhookEndpoints', () => {
  let h: Harness;
  let a: TestMerchant;
  let b: TestMerchant;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    a = await makeMerchant(h);
    b = await makeMerchant(h, ['https://b.example']);
  });
  after(() => h.close());

  it('creates an endpoint and shows its secret once; GET lists it without the secret; DELETE is 204, then 404', async () => {
    const r = await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(a.testKey))
      .send({ url: 'https://hooks.shop.example/cvvops', events: ['charge.succeeded', 'charge.failed', 'charge.succeeded'] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.match(r.body.id, /^whe_[A-Za-z0-9_-]{22,}$/);
    assert.match(r.body.secret, /^whsec_[A-Za-z0-9_-]{32,}$/);
    assert.equal(r.body.url, 'https://hooks.shop.example/cvvops');
    assert.deepEqual(r.body.events, ['charge.succeeded', 'charge.failed']);
    assert.equal(r.body.mode, 'test');
    const secret = r.body.secret as string;

    const other = await addEndpoint(h, a.testKey, 'https://hooks.shop.example/other', ['session.completed']);
    assert.notEqual(other.secret, secret, 'every endpoint has its own secret');

    const g = await request(h.app).get('/WebhookEndpoints').set(auth(a.testKey));
    assert.equal(g.status, 200);
    assert.deepEqual(g.body.data.map((e: { id: string }) => e.id).sort(), [r.body.id, other.id].sort());
    for (const e of g.body.data) assert.deepEqual(Object.keys(e).sort(), ['createdAt', 'events', 'id', 'mode', 'url']);
    assert.ok(!g.text.includes(secret) && !g.text.includes(other.secret) && !g.text.includes('whsec_'), 'GET shows a secret');
    assert.ok(!dbBytes(h).includes(secret), 'the signing secret is stored in clear');
    assert.ok(!h.logs.join('').includes(secret), 'the signing secret reached the logs');

    const live = await request(h.app).get('/WebhookEndpoints').set(auth(a.liveKey));
    assert.deepEqual(live.body.data, [], 'test-mode endpoints are not listed for the live key');

    const d = await request(h.app).delete(`/WebhookEndpoints/${r.body.id}`).set(auth(a.testKey));
    assert.equal(d.status, 204);
    const again = await request(h.app).delete(`/WebhookEndpoints/${r.body.id}`).set(auth(a.testKey));
    assert.equal(again.status, 404);
    assert.equal(again.body.error.code, 'not_found');
    const g2 = await request(h.app).get('/WebhookEndpoints').set(auth(a.testKey));
    assert.deepEqual(
      g2.body.data.map((e: { id: string }) => e.id),
      [other.id],
    );
  });

  it("another merchant's endpoint is 404, exactly like an unknown one, and stays in place", async () => {
    const e = await addEndpoint(h, a.testKey, 'https://hooks.shop.example/a', ['charge.succeeded']);
    const foreign = await request(h.app).delete(`/WebhookEndpoints/${e.id}`).set(auth(b.testKey));
    const unknown = await request(h.app)
      .delete(`/WebhookEndpoints/${newId('whe')}`)
      .set(auth(b.testKey));
    assert.equal(foreign.status, 404);
    assert.deepEqual(
      [foreign.status, foreign.body.error.code, foreign.body.error.message],
      [unknown.status, unknown.body.error.code, unknown.body.error.message],
    );
    const byLive = await request(h.app).delete(`/WebhookEndpoints/${e.id}`).set(auth(a.liveKey));
    assert.equal(byLive.status, 404, 'the live key does not reach a test-mode endpoint');
    const gb = await request(h.app).get('/WebhookEndpoints').set(auth(b.testKey));
    assert.ok(!gb.text.includes(e.id), "B's list shows A's endpoint");
    const ga = await request(h.app).get('/WebhookEndpoints').set(auth(a.testKey));
    assert.ok(
      ga.body.data.some((x: { id: string }) => x.id === e.id),
      "A's endpoint is still there",
    );
  });

  it('a bad url, an unknown event, no events or an unknown field is 400 invalid_request', async () => {
    const bad: unknown[] = [
      { url: 'not a url', events: ['charge.succeeded'] },
      { url: '', events: ['charge.succeeded'] },
      { url: 'ftp://hooks.shop.example/x', events: ['charge.succeeded'] },
      { url: 'javascript:alert(1)', events: ['charge.succeeded'] },
      { url: 'https://hooks.shop.example/x', events: ['charge.refunded'] },
      { url: 'https://hooks.shop.example/x', events: ['charge.succeeded', 'nope'] },
      { url: 'https://hooks.shop.example/x', events: [] },
      { url: 'https://hooks.shop.example/x' },
      { events: ['charge.succeeded'] },
      { url: 'https://hooks.shop.example/x', events: ['charge.succeeded'], secret: 'whsec_mine' },
    ];
    for (const body of bad) {
      const r = await request(h.app)
        .post('/WebhookEndpoints')
        .set(auth(a.testKey))
        .send(body as object);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.status}`);
      assert.equal(r.body.error.code, 'invalid_request');
    }
  });
});

// ---------------------------------------------------------------------------

describe('webhook delivery from the outbox', () => {
  let h: Harness;
  let rx: Receiver;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    rx = await Receiver.start();
  });
  after(async () => {
    await rx.close();
    await h.close();
  });

  /** A flow through charge: card, session, collectCvv, 3DS, charge. Returns everything secret it saw. */
  async function flow(m: TestMerchant, number = TEST_CARD) {
    const card = await makeCard(h, m.testKey, { number, holderName: 'Ada Lovelace' });
    const s = await makeSession(h, m.testKey, { card, reference: 'order-9' });
    const c = await collect(h, s.token, '123');
    assert.equal(c.status, 200);
    const t = await op(h, 'threeDS', c.body.token);
    assert.equal(t.status, 200);
    const ch = await op(h, 'charge', t.body.token);
    assert.equal(ch.status, 200);
    return {
      s,
      card,
      cvcSession: c.body.result.cvcSession.id as string,
      tds: t.body.result,
      charge: ch.body.result,
      tokens: [s.token, c.body.token, t.body.token, ch.body.token] as string[],
    };
  }

  const parse = (d: Delivery) => JSON.parse(d.body) as { id: string; type: string; createdAt: string; mode: string; data: Record<string, any> };

  it('a charge flow delivers cvv.collected, threeds.completed, charge.succeeded and session.completed, signed, without secrets', async () => {
    const m = await makeMerchant(h);
    const ep = await addEndpoint(h, m.testKey, rx.url('/flow'));
    const f = await flow(m);
    assert.equal(f.charge.status, 'approved');
    assert.equal(rx.at('/flow').length, 0, 'nothing is sent before the worker runs');
    const tickAt = h.clock.now();
    const n = await h.deps.webhooks.tick();
    assert.equal(n, 4);
    const got = rx.at('/flow');
    assert.deepEqual(got.map((d) => parse(d).type).sort(), ['charge.succeeded', 'cvv.collected', 'session.completed', 'threeds.completed']);

    const secrets = [TEST_CARD, f.tds.authenticationValue as string, m.testKey, m.liveKey, ...f.tokens];
    const ids = new Set<string>();
    for (const d of got) {
      assert.equal(d.method, 'POST');
      assert.match(String(d.headers['content-type']), /^application\/json/);
      const sig = verifySignature(d.headers['cvvops-signature'], d.body, ep.secret);
      assert.ok(sig.ok, `the signature of ${parse(d).type} does not verify`);
      assert.equal(sig.t, Math.floor(tickAt / 1000), 't is the delivery time in unix seconds');
      assert.equal(
        verifySignature(d.headers['cvvops-signature'], d.body.replace('"mode":"test"', '"mode":"live"'), ep.secret).ok,
        false,
        'a tampered body verifies',
      );
      assert.equal(verifySignature(d.headers['cvvops-signature'], `${d.body} `, ep.secret).ok, false);
      assert.equal(verifySignature(d.headers['cvvops-signature'], d.body, `${ep.secret}x`).ok, false, 'another secret verifies');

      const e = parse(d);
      assert.deepEqual(Object.keys(e).sort(), ['createdAt', 'data', 'id', 'mode', 'type']);
      assert.match(e.id, /^evt_[A-Za-z0-9_-]{22,}$/);
      ids.add(e.id);
      assert.equal(e.createdAt, new Date(tickAt).toISOString().replace(/\.\d{3}Z$/, 'Z'), 'API.md section 8: createdAt, ISO 8601');
      assert.equal(e.mode, 'test');
      assert.equal(e.data.session, f.s.id);
      for (const secret of secrets) assert.ok(!d.body.includes(secret), `${e.type} carries a secret (${secret.slice(0, 10)}…)`);
      assert.doesNotMatch(d.body, /(?<![A-Za-z0-9_-])123(?![A-Za-z0-9_-])/, `${e.type} carries the CVV`);
      assert.doesNotMatch(d.body, /"(cvv|cvc|number|cavv|authenticationValue|token)"/i, `${e.type} has a secret-shaped field`);
      assert.ok(!d.body.includes('Ada Lovelace'), 'the holder name is not sent');
    }
    assert.equal(ids.size, 4, 'one event id per event');
    const byType = Object.fromEntries(got.map((d) => [parse(d).type, parse(d).data]));
    assert.deepEqual(byType['cvv.collected'], { session: f.s.id, card: f.card, cvcSession: f.cvcSession, expiresAt: byType['cvv.collected']!.expiresAt });
    assert.deepEqual(byType['threeds.completed'], { session: f.s.id, transactionId: f.tds.transactionId, status: 'Y', eci: '05' });
    assert.deepEqual(byType['charge.succeeded'], {
      session: f.s.id,
      chargeId: f.charge.chargeId,
      status: 'approved',
      amount: { value: 1999, currency: 'EUR' },
      declineCode: null,
      cvvResult: 'M',
    });
    assert.deepEqual(byType['session.completed'], { session: f.s.id, chargeId: f.charge.chargeId });

    // Delivered once: later ticks send nothing more.
    h.clock.advance(3600_000);
    assert.equal(await h.deps.webhooks.tick(), 0);
    assert.equal(rx.at('/flow').length, 4);
    const rows = await h.deps.store.webhooks.listOutbox(m.id);
    assert.equal(rows.length, 4);
    for (const row of rows) assert.deepEqual([row.status, row.attempts, row.lastStatus], ['delivered', 1, 200]);
  });

  it("a backlog drains batch after batch within one tick while batches come back full (up to the tick's limit)", async () => {
    const m = await makeMerchant(h);
    await addEndpoint(h, m.testKey, rx.url('/backlog'));
    for (let i = 0; i < 45; i++) await h.deps.webhooks.emit(m.id, 'test', 'session.canceled', { session: `cvo_backlog${i}` });
    assert.equal(await h.deps.webhooks.tick(20, 2), 40, 'two full batches, then the tick stops at its limit');
    assert.equal(await h.deps.webhooks.tick(), 5, 'the rest: a short batch ends the tick');
    assert.equal(rx.at('/backlog').length, 45);
    assert.equal(new Set(rx.at('/backlog').map((d) => parse(d).data.session)).size, 45, 'each event once');
  });

  it('a canceled session emits session.canceled; a declined charge emits charge.failed (and no success events)', async () => {
    const m = await makeMerchant(h);
    const ep = await addEndpoint(h, m.testKey, rx.url('/cancel-decline'));
    const s = await makeSession(h, m.testKey);
    const c = await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey));
    assert.equal(c.status, 200);
    await h.deps.webhooks.tick();
    let got = rx.at('/cancel-decline').map(parse);
    assert.deepEqual(
      got.map((e) => [e.type, e.data]),
      [['session.canceled', { session: s.id }]],
    );

    const f = await flow(m, '4000000000006066');
    assert.equal(f.charge.status, 'declined');
    await h.deps.webhooks.tick();
    got = rx.at('/cancel-decline').map(parse).slice(1);
    assert.deepEqual(got.map((e) => e.type).sort(), ['charge.failed', 'cvv.collected', 'threeds.completed']);
    const failed = got.find((e) => e.type === 'charge.failed')!;
    assert.deepEqual(failed.data, {
      session: f.s.id,
      chargeId: f.charge.chargeId,
      status: 'declined',
      amount: { value: 1999, currency: 'EUR' },
      declineCode: 'insufficient_funds',
      cvvResult: 'M',
    });
    for (const d of rx.at('/cancel-decline')) assert.ok(verifySignature(d.headers['cvvops-signature'], d.body, ep.secret).ok);
  });

  it('only subscribed event types are delivered, to each endpoint its own', async () => {
    const m = await makeMerchant(h);
    const failedOnly = await addEndpoint(h, m.testKey, rx.url('/only-failed'), ['charge.failed']);
    const completedOnly = await addEndpoint(h, m.testKey, rx.url('/only-completed'), ['session.completed']);
    const other = await makeMerchant(h);
    await addEndpoint(h, other.testKey, rx.url('/other-merchant'));

    const ok = await flow(m);
    await h.deps.webhooks.tick();
    assert.equal(rx.at('/only-failed').length, 0, 'an approved flow sent something to a charge.failed-only endpoint');
    assert.deepEqual(
      rx.at('/only-completed').map((d) => parse(d).type),
      ['session.completed'],
    );
    assert.equal(parse(rx.at('/only-completed')[0]!).data.chargeId, ok.charge.chargeId);

    await flow(m, '4000000000007072');
    await h.deps.webhooks.tick();
    assert.deepEqual(
      rx.at('/only-failed').map((d) => [parse(d).type, parse(d).data.declineCode]),
      [['charge.failed', 'do_not_honor']],
    );
    assert.equal(rx.at('/only-completed').length, 1);
    assert.equal(rx.at('/other-merchant').length, 0, "another merchant's endpoint got this merchant's events");
    assert.ok(verifySignature(rx.at('/only-failed')[0]!.headers['cvvops-signature'], rx.at('/only-failed')[0]!.body, failedOnly.secret).ok);
    assert.ok(verifySignature(rx.at('/only-completed')[0]!.headers['cvvops-signature'], rx.at('/only-completed')[0]!.body, completedOnly.secret).ok);
  });

  it('a receiver answering 500 is retried after 10 s, 20 s, …; delivered once it answers 200, never again after', async () => {
    const m = await makeMerchant(h);
    const ep = await addEndpoint(h, m.testKey, rx.url('/retry'), ['session.canceled']);
    let answer = 500;
    rx.status = (d) => (d.path === '/retry' ? answer : 200);
    try {
      const s = await makeSession(h, m.testKey);
      await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).expect(200);
      const t0 = h.clock.now();
      const count = () => rx.at('/retry').length;
      const row = async () => (await h.deps.store.webhooks.listOutbox(m.id))[0]!;

      await h.deps.webhooks.tick();
      assert.equal(count(), 1);
      assert.deepEqual([(await row()).status, (await row()).attempts, (await row()).lastStatus, (await row()).nextAttemptAt], ['pending', 1, 500, t0 + 10_000]);
      await h.deps.webhooks.tick();
      assert.equal(count(), 1, 'not retried before its time');
      h.clock.set(t0 + 9_999);
      await h.deps.webhooks.tick();
      assert.equal(count(), 1, 'not retried before 10 s');
      h.clock.set(t0 + 10_000);
      await h.deps.webhooks.tick();
      assert.equal(count(), 2, 'retried at 10 s');
      assert.deepEqual([(await row()).attempts, (await row()).nextAttemptAt], [2, t0 + 30_000], 'then 20 s later');
      h.clock.set(t0 + 29_999);
      await h.deps.webhooks.tick();
      assert.equal(count(), 2);
      answer = 200;
      h.clock.set(t0 + 30_000);
      await h.deps.webhooks.tick();
      assert.equal(count(), 3);
      assert.deepEqual([(await row()).status, (await row()).attempts, (await row()).lastStatus], ['delivered', 3, 200]);
      for (let i = 0; i < 5; i++) {
        h.clock.advance(3600_000);
        await h.deps.webhooks.tick();
      }
      assert.equal(count(), 3, 'delivered rows are never sent again');
      const events = rx.at('/retry').map(parse);
      assert.equal(new Set(events.map((e) => e.id)).size, 1, 'every attempt carries the same event id');
      for (const d of rx.at('/retry')) assert.ok(verifySignature(d.headers['cvvops-signature'], d.body, ep.secret).ok);
    } finally {
      rx.status = () => 200;
    }
  });

  it("an endpoint's secret is sealed under a key of its own (not the signing keys'); one sealed the old way still signs its deliveries", async () => {
    const m = await makeMerchant(h);
    const ep = await addEndpoint(h, m.testKey, rx.url('/own-key'), ['session.canceled']);
    const stored = (await h.deps.store.webhooks.listEndpoints(m.id, 'test')).find((e) => e.id === ep.id)!;
    const aad = `webhook|${m.id}|${ep.id}`;
    assert.equal(h.deps.keyring.open('webhook-secret', stored.secretSealed, aad).toString('utf8'), ep.secret);
    assert.throws(() => h.deps.keyring.open('signing-key', stored.secretSealed, aad), 'the signing-key purpose does not open it');
    // An endpoint from before: its secret sealed under the signing-key purpose.
    const legacySecret = `whsec_${'l'.repeat(43)}`;
    const legacyId = `whe_legacy${Date.now()}`;
    await h.deps.store.webhooks.insertEndpoint({
      id: legacyId,
      merchantId: m.id,
      mode: 'test',
      url: rx.url('/legacy-key'),
      events: ['session.canceled'],
      secretSealed: h.deps.keyring.seal('signing-key', legacySecret, `webhook|${m.id}|${legacyId}`),
      createdAt: h.clock.now(),
    });
    h.deps.webhooks.forget(m.id, 'test');
    const s = await makeSession(h, m.testKey);
    await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).expect(200);
    await h.deps.webhooks.tick();
    const [own] = rx.at('/own-key');
    const [legacy] = rx.at('/legacy-key');
    assert.ok(own && verifySignature(own.headers['cvvops-signature'], own.body, ep.secret).ok);
    assert.ok(legacy && verifySignature(legacy.headers['cvvops-signature'], legacy.body, legacySecret).ok);
  });

  it('a redirect is a failed delivery: not followed, retried later', async () => {
    const m = await makeMerchant(h);
    await addEndpoint(h, m.testKey, rx.url('/moved'), ['session.canceled']);
    rx.reply = (d, res) => {
      res.writeHead(d.path === '/moved' ? 307 : 200, { location: rx.url('/moved-here') });
      res.end();
    };
    try {
      const s = await makeSession(h, m.testKey);
      await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).expect(200);
      // tick() returns once its deliveries have ended: a followed redirect would have been requested by then.
      await h.deps.webhooks.tick();
      assert.equal(rx.at('/moved').length, 1);
      assert.equal(rx.at('/moved-here').length, 0, 'the redirect was followed');
      const row = (await h.deps.store.webhooks.listOutbox(m.id))[0]!;
      assert.deepEqual([row.status, row.lastStatus], ['pending', 307]);
    } finally {
      rx.reply = null;
    }
  });

  it('an endpoint deleted before delivery gets nothing', async () => {
    const m = await makeMerchant(h);
    const ep = await addEndpoint(h, m.testKey, rx.url('/deleted'), ['session.canceled']);
    const s = await makeSession(h, m.testKey);
    await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).expect(200);
    await request(h.app).delete(`/WebhookEndpoints/${ep.id}`).set(auth(m.testKey)).expect(204);
    await h.deps.webhooks.tick();
    assert.equal(rx.at('/deleted').length, 0);
    const rows = await h.deps.store.webhooks.listOutbox(m.id);
    assert.ok(
      rows.every((r) => r.status !== 'pending' && r.status !== 'delivered'),
      JSON.stringify(rows.map((r) => r.status)),
    );
  });

  it('after 24 hours of failures the delivery is given up (status failed), and not before', async () => {
    const m = await makeMerchant(h);
    await addEndpoint(h, m.testKey, rx.url('/down'), ['session.canceled']);
    rx.status = (d) => (d.path === '/down' ? 503 : 200);
    try {
      const s = await makeSession(h, m.testKey);
      await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).expect(200);
      const created = h.clock.now();
      let row = (await h.deps.store.webhooks.listOutbox(m.id))[0]!;
      let lastPendingAt = created;
      for (let i = 0; i < 200 && row.status === 'pending'; i++) {
        h.clock.set(Math.max(h.clock.now(), row.nextAttemptAt));
        lastPendingAt = h.clock.now();
        await h.deps.webhooks.tick();
        row = (await h.deps.store.webhooks.listOutbox(m.id))[0]!;
      }
      assert.equal(row.status, 'failed');
      assert.equal(row.lastStatus, 503);
      const attempts = rx.at('/down').length;
      assert.equal(row.attempts, attempts, 'every attempt reached the receiver');
      assert.ok(lastPendingAt - created >= 23 * 3600_000, `given up after only ${(lastPendingAt - created) / 3600_000} h`);
      assert.ok(lastPendingAt - created <= 24 * 3600_000, `retried past 24 h (${(lastPendingAt - created) / 3600_000} h)`);
      assert.ok(attempts >= 20 && attempts <= 40, `${attempts} attempts in 24 h with backoff 10 s … 1 h`);
      rx.status = () => 200;
      h.clock.advance(48 * 3600_000);
      await h.deps.webhooks.tick();
      assert.equal(rx.at('/down').length, attempts, 'a failed delivery is never sent again');
    } finally {
      rx.status = () => 200;
    }
  });
});

// ---------------------------------------------------------------------------

describe('webhooks in live mode and without CVVOPS_ALLOW_PRIVATE_TARGETS never reach private addresses', () => {
  it('live mode, CVVOPS_ALLOW_PRIVATE_TARGETS on: a loopback endpoint is refused or never reached', async () => {
    const h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    const rx = await Receiver.start();
    try {
      const m = await makeMerchant(h);
      // Control: in test mode the same receiver is reached.
      await addEndpoint(h, m.testKey, rx.url('/test'), ['cvv.collected']);
      const ts = await makeSession(h, m.testKey);
      await collect(h, ts.token).expect(200);
      await h.deps.webhooks.tick();
      assert.equal(rx.at('/test').length, 1);

      const r = await request(h.app)
        .post('/WebhookEndpoints')
        .set(auth(m.liveKey))
        .send({ url: rx.url('/live'), events: ['cvv.collected'] });
      if (r.status === 201) {
        const card = await makeCard(h, m.liveKey, { number: LIVE_CARD });
        const s = await makeSession(h, m.liveKey, { card });
        await collect(h, s.token).expect(200);
        await h.deps.webhooks.tick();
        assert.equal(rx.at('/live').length, 0, 'a live-mode webhook reached a loopback address');
      } else {
        assert.equal(r.status, 400);
      }
    } finally {
      await rx.close();
      await h.close();
    }
  });

  it('without CVVOPS_ALLOW_PRIVATE_TARGETS: http endpoints are refused; an https loopback endpoint is never reached', async () => {
    const h = await makeHarness();
    const rx = await Receiver.start();
    try {
      const m = await makeMerchant(h);
      const r = await request(h.app)
        .post('/WebhookEndpoints')
        .set(auth(m.testKey))
        .send({ url: rx.url('/plain'), events: ['cvv.collected'] });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'invalid_request');
      const urls = [`https://127.0.0.1:${rx.port}/tls`, `https://localhost:${rx.port}/tls`];
      for (const url of urls) {
        const c = await request(h.app)
          .post('/WebhookEndpoints')
          .set(auth(m.testKey))
          .send({ url, events: ['cvv.collected'] });
        assert.ok(c.status === 201 || c.status === 400, `${url}: ${c.status}`);
      }
      const s = await makeSession(h, m.testKey);
      await collect(h, s.token).expect(200);
      await h.deps.webhooks.tick();
      assert.equal(rx.connections, 0, 'the receiver got a connection');
      assert.equal(rx.got.length, 0);
    } finally {
      await rx.close();
      await h.close();
    }
  });
});

// ---------------------------------------------------------------------------

describe('the outbox survives a restart', () => {
  it('an event enqueued while the receiver was down is delivered exactly once by the next process', async () => {
    const h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    const more: Deps[] = [];
    let rx: Receiver | null = null;
    try {
      const m = await makeMerchant(h);
      const port = await freePort();
      const ep = await addEndpoint(h, m.testKey, `http://127.0.0.1:${port}/hook`, ['cvv.collected', 'session.canceled']);
      const s = await makeSession(h, m.testKey);
      await collect(h, s.token).expect(200);
      // The receiver is down: the first attempt fails and the row waits.
      await h.deps.webhooks.tick();
      let rows = await h.deps.store.webhooks.listOutbox(m.id);
      assert.deepEqual(
        rows.map((r) => [r.status, r.attempts]),
        [['pending', 1]],
      );
      // A second event, never attempted before the restart.
      const s2 = await makeSession(h, m.testKey);
      await request(h.app).post(`/CvvOperations/${s2.id}/cancel`).set(auth(m.testKey)).expect(200);

      await h.deps.close();

      const logs: string[] = [];
      const sink = new Writable({
        write(chunk, _enc, cb) {
          logs.push(String(chunk));
          cb();
        },
      });
      const open = () => createDeps(h.config, createLogger('info', sink), { clock: h.clock, masterKey: new Secret(h.masterKey) });
      const d2 = await open();
      more.push(d2);
      const app2 = buildApp(d2);
      const list = await request(app2).get('/WebhookEndpoints').set(auth(m.testKey));
      assert.deepEqual(
        list.body.data.map((e: { id: string }) => e.id),
        [ep.id],
        'the endpoint survived the restart',
      );

      rx = await Receiver.start(port);
      h.clock.advance(10_000);
      // Two workers over the same database (a restart while another instance runs): still once each.
      const d3 = await open();
      more.push(d3);
      await Promise.all([d2.webhooks.tick(), d3.webhooks.tick()]);
      assert.equal(rx.got.length, 2, `delivered ${rx.got.length} times`);
      const types = rx.got.map((d) => JSON.parse(d.body).type).sort();
      assert.deepEqual(types, ['cvv.collected', 'session.canceled']);
      for (const d of rx.got) assert.ok(verifySignature(d.headers['cvvops-signature'], d.body, ep.secret).ok, 'the secret survived the restart');

      for (let i = 0; i < 3; i++) {
        h.clock.advance(3600_000);
        await Promise.all([d2.webhooks.tick(), d3.webhooks.tick()]);
      }
      assert.equal(rx.got.length, 2, 'delivered again after being delivered');
      rows = await d2.store.webhooks.listOutbox(m.id);
      assert.deepEqual(
        rows.map((r) => r.status),
        ['delivered', 'delivered'],
      );
    } finally {
      await rx?.close();
      for (const d of more) await d.close();
      rmSync(h.dir, { recursive: true, force: true });
    }
  });
});
