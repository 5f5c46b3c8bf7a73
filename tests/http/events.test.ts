import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { ManualClock } from '../../server/domain/clock.js';
import { Sweeper } from '../../server/domain/sweeper.js';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

const DAY = 24 * 3600 * 1000;

/**
 * GET /Events and GET /Events/{id}: every event, whether or not an endpoint
 * listens, with the payload its webhook carries; newest first in pages; only
 * the key's merchant and mode; kept 30 days.
 */
describe('GET /Events', () => {
  const clock = new ManualClock(Date.UTC(2026, 11, 2, 9, 0, 0));
  let h: Harness;
  let a: TestMerchant;
  let b: TestMerchant;
  let receiver: http.Server;
  const received: string[] = [];

  before(async () => {
    h = await makeHarness({ clock, env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    a = await makeMerchant(h);
    b = await makeMerchant(h);
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push(body);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    receiver.close();
    await h.close();
  });

  const events = (key: string, query: Record<string, string> = {}) => request(h.app).get('/Events').query(query).set(auth(key));

  it('every event is listed, even with no endpoint listening, newest first', async () => {
    const s = await makeSession(h, a.testKey);
    assert.equal((await collect(h, s.token)).status, 200);
    clock.advance(1000);
    assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(a.testKey)).send({})).status, 200);
    const r = await events(a.testKey);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.object, 'list');
    const mine = r.body.data.filter((e: { data: { session?: string } }) => e.data.session === s.id);
    assert.deepEqual(
      mine.map((e: { type: string }) => e.type),
      ['session.canceled', 'cvv.collected'],
    );
    for (const e of mine) {
      assert.match(e.id, /^evt_/);
      assert.equal(e.mode, 'test');
      assert.match(e.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    const one = await request(h.app).get(`/Events/${mine[0].id}`).set(auth(a.testKey));
    assert.equal(one.status, 200);
    assert.deepEqual(one.body, mine[0]);
  });

  it('an event is the payload its webhook delivered', async () => {
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    assert.equal(
      (
        await request(h.app)
          .post('/WebhookEndpoints')
          .set(auth(a.testKey))
          .send({ url, events: ['cvv.collected'] })
      ).status,
      201,
    );
    clock.advance(1500); // past the endpoint cache
    const s = await makeSession(h, a.testKey);
    assert.equal((await collect(h, s.token)).status, 200);
    while ((await h.deps.webhooks.tick(50, 10)) > 0);
    const delivered = received.map((b) => JSON.parse(b) as { id: string; data: { session: string } }).find((e) => e.data.session === s.id);
    assert.ok(delivered, 'the webhook was delivered');
    const listed = await request(h.app).get(`/Events/${delivered.id}`).set(auth(a.testKey));
    assert.deepEqual(listed.body, delivered);
  });

  it('pages and the type filter; another merchant or mode never sees them', async () => {
    for (let i = 0; i < 7; i++) {
      const s = await makeSession(h, a.testKey);
      await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(a.testKey)).send({});
      clock.advance(10);
    }
    const all = (await events(a.testKey, { limit: '100' })).body.data.map((e: { id: string }) => e.id);
    const paged: string[] = [];
    let after: string | undefined;
    for (;;) {
      const r = await events(a.testKey, { limit: '4', ...(after ? { starting_after: after } : {}) });
      paged.push(...r.body.data.map((e: { id: string }) => e.id));
      if (!r.body.hasMore) break;
      after = paged.at(-1);
    }
    assert.deepEqual(paged, all, 'the pages are the whole list, in order, each once');
    const canceled = (await events(a.testKey, { limit: '100', type: 'session.canceled' })).body.data;
    assert.ok(canceled.length >= 8);
    assert.ok(canceled.every((e: { type: string }) => e.type === 'session.canceled'));
    assert.deepEqual((await events(b.testKey)).body.data, [], 'another merchant');
    assert.deepEqual((await events(a.liveKey)).body.data, [], 'the other mode');
    assert.equal((await request(h.app).get(`/Events/${all[0]}`).set(auth(b.testKey))).status, 404);
    assert.equal((await request(h.app).get(`/Events/${all[0]}`).set(auth(a.liveKey))).status, 404);
    assert.deepEqual((await events(b.testKey, { starting_after: all[0] })).body.data, [], "a cursor that is not the key's");
    assert.equal((await events(a.testKey, { limit: '0' })).status, 400);
    assert.equal((await events(a.testKey, { since: 'x' })).status, 400);
  });

  it('events are kept 30 days', async () => {
    const old = (await events(a.testKey, { limit: '100' })).body.data.map((e: { id: string }) => e.id);
    assert.ok(old.length > 0);
    clock.advance(30 * DAY + 60_000);
    await new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks, h.deps.charges, { retentionDays: 90 }).tick();
    const left = (await events(a.testKey, { limit: '100' })).body.data as Array<{ id: string; type: string }>;
    assert.deepEqual(
      left.filter((e) => old.includes(e.id)),
      [],
      'the events older than 30 days are gone',
    );
    assert.ok(
      left.every((e) => e.type === 'session.expired'),
      'what is left is what this sweep itself raised (the sessions left active expired now)',
    );
  });
});
