import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/** GET /WebhookEndpoints/{id}/deliveries and POST /Events/{id}/resend. */
describe('webhook deliveries and resend', () => {
  let h: Harness;
  let a: TestMerchant;
  let b: TestMerchant;
  let good: http.Server;
  let bad: http.Server;
  const got: Array<{ id: string; type: string }> = [];
  let okEndpoint: string;
  let failingEndpoint: string;
  let otherEndpoint: string;

  const listen = async (s: http.Server) => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}/hooks`;
  };
  const endpoint = async (key: string, url: string, events: string[]) => {
    const r = await request(h.app).post('/WebhookEndpoints').set(auth(key)).send({ url, events });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const deliverAll = async () => {
    while ((await h.deps.webhooks.tick(50, 10)) > 0);
  };

  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    a = await makeMerchant(h);
    b = await makeMerchant(h);
    good = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        got.push(JSON.parse(body) as { id: string; type: string });
        res.writeHead(200).end();
      });
    });
    bad = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(500).end());
    });
    okEndpoint = await endpoint(a.testKey, await listen(good), ['session.canceled']);
    failingEndpoint = await endpoint(a.testKey, await listen(bad), ['session.canceled']);
    otherEndpoint = await endpoint(b.testKey, 'https://hooks.example/b', ['session.canceled']);
    h.clock.advance(1500); // past the endpoint cache
    for (let i = 0; i < 3; i++) {
      const s = await makeSession(h, a.testKey);
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(a.testKey)).send({})).status, 200);
      h.clock.advance(10);
    }
    await deliverAll();
  });
  after(async () => {
    good.close();
    bad.close();
    await h.close();
  });

  const deliveries = (key: string, id: string, query: Record<string, string> = {}) =>
    request(h.app).get(`/WebhookEndpoints/${id}/deliveries`).query(query).set(auth(key));

  it("an endpoint's deliveries: event, attempts, last status code, next try; newest first, in pages", async () => {
    const ok = await deliveries(a.testKey, okEndpoint);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.data.length, 3);
    for (const d of ok.body.data) {
      assert.equal(d.status, 'delivered');
      assert.equal(d.attempts, 1);
      assert.equal(d.lastStatus, 200);
      assert.equal(d.nextAttemptAt, null);
      assert.equal(d.type, 'session.canceled');
      assert.match(d.event, /^evt_/);
    }
    assert.deepEqual(
      ok.body.data.map((d: { event: string }) => d.event),
      got.map((e) => e.id).reverse(),
      'newest first, the events the receiver got',
    );
    const failing = await deliveries(a.testKey, failingEndpoint);
    for (const d of failing.body.data) {
      assert.equal(d.status, 'pending');
      assert.equal(d.lastStatus, 500);
      assert.ok(d.nextAttemptAt, 'a next try');
    }
    const first = await deliveries(a.testKey, okEndpoint, { limit: '2' });
    assert.equal(first.body.hasMore, true);
    const second = await deliveries(a.testKey, okEndpoint, { limit: '2', starting_after: first.body.data[1].id });
    assert.deepEqual(
      [...first.body.data, ...second.body.data].map((d: { id: string }) => d.id),
      ok.body.data.map((d: { id: string }) => d.id),
    );
    assert.equal(second.body.hasMore, false);
  });

  it('resend queues one new delivery of the same payload, delivered once', async () => {
    const eventId = got[0]!.id;
    const before = got.filter((e) => e.id === eventId).length;
    const r = await request(h.app).post(`/Events/${eventId}/resend`).set(auth(a.testKey)).send({ endpoint: okEndpoint });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.deliveries.length, 1);
    assert.equal(r.body.deliveries[0].status, 'pending');
    await deliverAll();
    await deliverAll();
    assert.equal(got.filter((e) => e.id === eventId).length, before + 1, 'the receiver got it exactly once more');
    assert.deepEqual(
      got.filter((e) => e.id === eventId).at(-1),
      got.find((e) => e.id === eventId),
      'the same payload',
    );
    const all = await request(h.app).post(`/Events/${eventId}/resend`).set(auth(a.testKey)).send({});
    assert.deepEqual(
      all.body.deliveries.map((d: { id: string }) => d.id.split('.')[1]).sort(),
      [okEndpoint, failingEndpoint].sort(),
      'without endpoint: every listening endpoint',
    );
  });

  it("another merchant's endpoints and events are not found; bad input is 400", async () => {
    assert.equal((await deliveries(a.testKey, otherEndpoint)).status, 404);
    assert.equal((await deliveries(a.liveKey, okEndpoint)).status, 404, 'the other mode');
    assert.equal((await request(h.app).post(`/Events/${got[0]!.id}/resend`).set(auth(b.testKey)).send({})).status, 404);
    assert.equal((await request(h.app).post(`/Events/${got[0]!.id}/resend`).set(auth(a.testKey)).send({ endpoint: otherEndpoint })).status, 404);
    assert.equal((await request(h.app).post(`/Events/${got[0]!.id}/resend`).set(auth(a.testKey)).send({ to: 'x' })).status, 400);
    assert.equal((await deliveries(a.testKey, okEndpoint, { limit: '500' })).status, 400);
  });
});
