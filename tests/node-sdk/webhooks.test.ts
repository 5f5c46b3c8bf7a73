import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { CvvOps, CvvOpsError, Webhooks } from '../../packages/node/src/index.js';
import { type Recorded, RecordingServer } from '../helpers/recording-server.js';
import { TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { merchantOf, serve, type Served } from './helpers.js';

/** issue 17: webhooks.constructEvent with real deliveries from the server's outbox (API.md section 8). */

class Receiver extends RecordingServer {
  static async start(): Promise<Receiver> {
    return RecordingServer.listen((server) => new Receiver(server));
  }

  protected override respond(_d: Recorded, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  }
}

function invalidSignature(fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CvvOpsError, String(err));
    assert.equal(err.code, 'invalid_signature');
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('webhooks.constructEvent with real deliveries', () => {
  let s: Served;
  let m: TestMerchant;
  let rx: Receiver;
  let cvvops: CvvOps;
  let secret: string;
  before(async () => {
    s = await serve();
    m = await merchantOf(s);
    rx = await Receiver.start();
    cvvops = new CvvOps(m.testKey, { baseUrl: s.base });
    const ep = await cvvops.webhookEndpoints.create({ url: rx.url('/hooks'), events: ['session.canceled'] });
    secret = ep.secret;
  });
  after(async () => {
    await rx.close();
    await s.close();
  });

  /** Cancels a new session and delivers the outbox: the session.canceled delivery. */
  async function deliverCancel(): Promise<{ id: string; delivery: Recorded }> {
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] });
    await cvvops.sessions.cancel(session.id);
    rx.requests.length = 0;
    assert.equal(await s.h.deps.webhooks.tick(), 1);
    assert.equal(rx.requests.length, 1);
    return { id: session.id, delivery: rx.requests[0]! };
  }

  it('verifies a delivery and returns the event', async () => {
    const { id, delivery } = await deliverCancel();
    const header = delivery.headers['cvvops-signature'];
    assert.match(String(header), /^t=\d+,v1=[0-9a-f]{64}$/);
    const event = cvvops.webhooks.constructEvent(delivery.body, header, secret);
    assert.equal(event.type, 'session.canceled');
    assert.equal(event.mode, 'test');
    assert.match(event.id, /^evt_/);
    assert.match(event.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'API.md section 8: createdAt, ISO 8601');
    assert.equal(event.data.session, id);
    // The raw bytes (express.raw()) work the same; the standalone class too.
    assert.equal(new Webhooks().constructEvent(Buffer.from(delivery.body), String(header), secret).id, event.id);
  });

  it('refuses a tampered body, another secret, a missing or mangled header, and a parsed body', async () => {
    const { delivery } = await deliverCancel();
    const header = String(delivery.headers['cvvops-signature']);
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body.replace('"mode":"test"', '"mode":"live"'), header, secret), /matches/);
    invalidSignature(() => cvvops.webhooks.constructEvent(`${delivery.body} `, header, secret));
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header, `${secret}x`));
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, undefined, secret));
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header.replace(/v1=[0-9a-f]+/, 'v1=abc'), secret));
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header.replace(/t=\d+/, 't=1'), secret));
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header.replace(/^t=\d+,/, ''), secret), /timestamp/);
    invalidSignature(() => cvvops.webhooks.constructEvent(JSON.parse(delivery.body), header, secret), /raw request body/);
    // A header with a second, stale v1 still verifies when one matches (a secret being rolled).
    assert.equal(cvvops.webhooks.constructEvent(delivery.body, `${header},v1=${'0'.repeat(64)}`, secret).type, 'session.canceled');
  });

  it('refuses a stale delivery: signed more than toleranceSeconds ago', async () => {
    // The server's clock ten minutes back: the event and its delivery are signed with t ten minutes old.
    const now = Date.now();
    s.h.clock.set(now - 600_000);
    let delivery: Recorded;
    try {
      ({ delivery } = await deliverCancel());
    } finally {
      s.h.clock.set(now);
    }
    const header = String(delivery.headers['cvvops-signature']);
    const t = Number(/t=(\d+)/.exec(header)![1]);
    assert.ok(Math.abs(t - (Math.floor(now / 1000) - 600)) <= 1);
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header, secret), /more than 300 s/);
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header, secret, { toleranceSeconds: 300 }));
    assert.equal(cvvops.webhooks.constructEvent(delivery.body, header, secret, { toleranceSeconds: 900 }).type, 'session.canceled');
    assert.equal(cvvops.webhooks.constructEvent(delivery.body, header, secret, { receivedAt: t + 10 }).type, 'session.canceled');
    // A signature from the future is as suspect as an old one.
    invalidSignature(() => cvvops.webhooks.constructEvent(delivery.body, header, secret, { receivedAt: t - 301 }));
  });

  it("generateTestHeader makes headers constructEvent accepts (for merchants' own tests)", () => {
    const payload = JSON.stringify({ id: 'evt_test', type: 'charge.succeeded', mode: 'test', createdAt: '2026-11-21T12:00:00Z', data: {} });
    const header = cvvops.webhooks.generateTestHeader({ payload, secret: 'whsec_test' });
    assert.equal(cvvops.webhooks.constructEvent(payload, header, 'whsec_test').id, 'evt_test');
    invalidSignature(() =>
      cvvops.webhooks.constructEvent(payload, cvvops.webhooks.generateTestHeader({ payload, secret: 'whsec_test', timestamp: 1000 }), 'whsec_test'),
    );
  });
});
