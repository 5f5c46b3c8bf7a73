import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { newId } from '../../server/domain/ids.js';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, TEST_CARD, type TestMerchant } from '../helpers/harness.js';

type Answer = { status: number; code: string | undefined; message: string | undefined; keys: string[] };

const answer = (res: request.Response): Answer => ({
  status: res.status,
  code: res.body?.error?.code,
  message: res.body?.error?.message,
  keys: Object.keys(res.body ?? {}).sort(),
});

/** The world merchant A has built: a card with a CVC session, a session that collected a CVV. */
interface World {
  card: string;
  cardCvc: string;
  session: { id: string; token: string };
  /** The session's current token (after collectCvv). */
  current: string;
  sessionCvc: string;
}

async function buildWorld(h: Harness, key: string): Promise<World> {
  const c = await request(h.app).post('/Cards').set(auth(key)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  const session = await makeSession(h, key, { card: c.body.token });
  const r = await collect(h, session.token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return { card: c.body.token, cardCvc: c.body.cvcSession.id, session, current: r.body.token, sessionCvc: r.body.result.cvcSession.id };
}

/** What A sees of its world: every view that must be unchanged by B's attempts. */
async function snapshot(h: Harness, key: string, w: World): Promise<Record<string, unknown>> {
  const card = await request(h.app).get(`/Cards/${w.card}`).set(auth(key));
  const session = await request(h.app).get(`/CvvOperations/${w.session.id}`).set(auth(key));
  const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(key)).send({ token: w.current });
  return { card: [card.status, card.body], session: [session.status, session.body], current: v.body.current, valid: v.body.valid };
}

describe('another merchant\'s objects answer exactly like unknown ones (SECURITY.md "Merchants")', () => {
  let h: Harness;
  let a: TestMerchant;
  let b: TestMerchant;
  let wa: World;

  before(async () => {
    h = await makeHarness();
    a = await makeMerchant(h, ['https://a.example']);
    b = await makeMerchant(h, ['https://b.example']);
    wa = await buildWorld(h, a.testKey);
    // B has objects of its own, so B's lookups run against a populated store.
    await buildWorld(h, b.testKey);
  });
  after(() => h.close());

  /** B's request for A's object, and B's request for a random id of the same shape: identical answers. */
  const cases: Array<{ what: string; expect: [number, string]; run: (id: string) => request.Test; foreign: () => string; prefix: 'tok' | 'cvo' | 'cvc' }> = [
    {
      what: 'GET /Cards/{token}',
      expect: [404, 'not_found'],
      prefix: 'tok',
      foreign: () => wa.card,
      run: (id) => request(h.app).get(`/Cards/${id}`).set(auth(b.testKey)),
    },
    {
      what: 'DELETE /Cards/{token}',
      expect: [404, 'not_found'],
      prefix: 'tok',
      foreign: () => wa.card,
      run: (id) => request(h.app).delete(`/Cards/${id}`).set(auth(b.testKey)),
    },
    {
      what: 'GET /CvvOperations/{id}',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      foreign: () => wa.session.id,
      run: (id) => request(h.app).get(`/CvvOperations/${id}`).set(auth(b.testKey)),
    },
    {
      what: 'POST /CvvOperations/{id}/token',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      foreign: () => wa.session.id,
      run: (id) => request(h.app).post(`/CvvOperations/${id}/token`).set(auth(b.testKey)),
    },
    {
      what: 'POST /CvvOperations/{id}/cancel',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      foreign: () => wa.session.id,
      run: (id) => request(h.app).post(`/CvvOperations/${id}/cancel`).set(auth(b.testKey)),
    },
    {
      what: 'DELETE /CvvOperations/{id}/cvv',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      foreign: () => wa.session.id,
      run: (id) => request(h.app).delete(`/CvvOperations/${id}/cvv`).set(auth(b.testKey)),
    },
    {
      what: 'DELETE /CvcSessions/{id} (from POST /Cards)',
      expect: [410, 'cvc_session_not_found'],
      prefix: 'cvc',
      foreign: () => wa.cardCvc,
      run: (id) => request(h.app).delete(`/CvcSessions/${id}`).set(auth(b.testKey)),
    },
    {
      what: 'DELETE /CvcSessions/{id} (from collectCvv)',
      expect: [410, 'cvc_session_not_found'],
      prefix: 'cvc',
      foreign: () => wa.sessionCvc,
      run: (id) => request(h.app).delete(`/CvcSessions/${id}`).set(auth(b.testKey)),
    },
    {
      what: "POST /CvvOperations with another merchant's card",
      expect: [400, 'invalid_card'],
      prefix: 'tok',
      foreign: () => wa.card,
      run: (id) =>
        request(h.app)
          .post('/CvvOperations')
          .set(auth(b.testKey))
          .send({ card: id, operations: ['collectCvv', 'charge'], amount: { value: 100, currency: 'EUR' } }),
    },
  ];

  for (const c of cases) {
    it(`${c.what}: B asking for A's object answers like B asking for a nonexistent one`, async () => {
      const before = await snapshot(h, a.testKey, wa);
      const foreign = answer(await c.run(c.foreign()));
      const unknown = answer(await c.run(newId(c.prefix)));
      assert.deepEqual(foreign, unknown, `${c.what}: foreign ${JSON.stringify(foreign)} vs unknown ${JSON.stringify(unknown)}`);
      assert.deepEqual([foreign.status, foreign.code], c.expect, `${c.what}: ${JSON.stringify(foreign)}`);
      // Repeated, the answer does not change either (nothing was created or consumed by the first try).
      assert.deepEqual(answer(await c.run(c.foreign())), unknown);
      // A's world is exactly as it was: card, session, CVV availability, the current token.
      const afterwards = await snapshot(h, a.testKey, wa);
      assert.deepEqual(afterwards, before, `${c.what} changed A's objects`);
      assert.equal(afterwards.current, true, "A's token is still current");
      assert.ok(await h.deps.store.cvc.getLive(a.id, 'test', wa.cardCvc, h.clock.now()), "A's card CVC session is still there");
      assert.ok(await h.deps.store.cvc.getLive(a.id, 'test', wa.sessionCvc, h.clock.now()), "A's session CVC session is still there");
    });
  }

  it("A's objects still work for A after every attempt by B", async () => {
    const s = await request(h.app).get(`/CvvOperations/${wa.session.id}`).set(auth(a.testKey));
    assert.equal(s.status, 200);
    assert.equal(s.body.status, 'active');
    assert.equal(s.body.cvv.available, true);
    const r = await collect(h, wa.current, '123');
    assert.equal(r.status, 200, "A's current token still works");
    wa.current = r.body.token;
    wa.sessionCvc = r.body.result.cvcSession.id;
    assert.equal((await request(h.app).get(`/Cards/${wa.card}`).set(auth(a.testKey))).status, 200);
  });

  it("validateToken: A's token is wrong_merchant to B, and says nothing else", async () => {
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(b.testKey)).send({ token: wa.current });
    assert.equal(v.status, 200);
    assert.deepEqual(v.body, { valid: false, reason: 'wrong_merchant' });
    const mine = await request(h.app).post('/CvvOperations/validateToken').set(auth(a.testKey)).send({ token: wa.current });
    assert.equal(mine.body.valid, true, 'control: valid for A');
  });

  it("B's Idempotency-Key never replays A's response", async () => {
    const body = { number: TEST_CARD, expMonth: 12, expYear: 2030 };
    const ra = await request(h.app).post('/Cards').set(auth(a.testKey)).set('Idempotency-Key', 'shared-key').send(body);
    const rb = await request(h.app).post('/Cards').set(auth(b.testKey)).set('Idempotency-Key', 'shared-key').send(body);
    assert.equal(ra.status, 201);
    assert.equal(rb.status, 201);
    assert.notEqual(rb.body.token, ra.body.token);
    assert.equal((await request(h.app).get(`/Cards/${rb.body.token}`).set(auth(b.testKey))).status, 200);
    assert.equal((await request(h.app).get(`/Cards/${ra.body.token}`).set(auth(b.testKey))).status, 404);
  });

  it("B's live key does not see A's test-mode objects either", async () => {
    for (const [path, prefix] of [
      [`/Cards/${wa.card}`, 'tok'],
      [`/CvvOperations/${wa.session.id}`, 'cvo'],
    ] as const) {
      const foreign = answer(await request(h.app).get(path).set(auth(b.liveKey)));
      const unknown = answer(
        await request(h.app)
          .get(path.replace(/(tok|cvo)_[A-Za-z0-9_-]+/, newId(prefix)))
          .set(auth(b.liveKey)),
      );
      assert.deepEqual(foreign, unknown, path);
      assert.equal(foreign.status, 404);
    }
  });
});

describe('test mode and live mode of one merchant are separate worlds', () => {
  let h: Harness;
  let m: TestMerchant;
  let wt: World;

  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
    wt = await buildWorld(h, m.testKey);
    // The live world has a card of its own.
    const live = await request(h.app).post('/Cards').set(auth(m.liveKey)).send({ number: '4242424242424242', expMonth: 12, expYear: 2030 });
    assert.equal(live.status, 201, JSON.stringify(live.body));
  });
  after(() => h.close());

  const cases: Array<{
    what: string;
    expect: [number, string];
    run: (key: string, id: string) => request.Test;
    obj: () => string;
    prefix: 'tok' | 'cvo' | 'cvc';
  }> = [
    {
      what: 'GET /Cards/{token}',
      expect: [404, 'not_found'],
      prefix: 'tok',
      obj: () => wt.card,
      run: (k, id) => request(h.app).get(`/Cards/${id}`).set(auth(k)),
    },
    {
      what: 'DELETE /Cards/{token}',
      expect: [404, 'not_found'],
      prefix: 'tok',
      obj: () => wt.card,
      run: (k, id) => request(h.app).delete(`/Cards/${id}`).set(auth(k)),
    },
    {
      what: 'GET /CvvOperations/{id}',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      obj: () => wt.session.id,
      run: (k, id) => request(h.app).get(`/CvvOperations/${id}`).set(auth(k)),
    },
    {
      what: 'POST /CvvOperations/{id}/token',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      obj: () => wt.session.id,
      run: (k, id) => request(h.app).post(`/CvvOperations/${id}/token`).set(auth(k)),
    },
    {
      what: 'POST /CvvOperations/{id}/cancel',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      obj: () => wt.session.id,
      run: (k, id) => request(h.app).post(`/CvvOperations/${id}/cancel`).set(auth(k)),
    },
    {
      what: 'DELETE /CvvOperations/{id}/cvv',
      expect: [404, 'not_found'],
      prefix: 'cvo',
      obj: () => wt.session.id,
      run: (k, id) => request(h.app).delete(`/CvvOperations/${id}/cvv`).set(auth(k)),
    },
    {
      what: 'DELETE /CvcSessions/{id}',
      expect: [410, 'cvc_session_not_found'],
      prefix: 'cvc',
      obj: () => wt.cardCvc,
      run: (k, id) => request(h.app).delete(`/CvcSessions/${id}`).set(auth(k)),
    },
    {
      what: 'DELETE /CvcSessions/{id} (collectCvv)',
      expect: [410, 'cvc_session_not_found'],
      prefix: 'cvc',
      obj: () => wt.sessionCvc,
      run: (k, id) => request(h.app).delete(`/CvcSessions/${id}`).set(auth(k)),
    },
    {
      what: 'POST /CvvOperations with a test-mode card',
      expect: [400, 'invalid_card'],
      prefix: 'tok',
      obj: () => wt.card,
      run: (k, id) =>
        request(h.app)
          .post('/CvvOperations')
          .set(auth(k))
          .send({ card: id, operations: ['collectCvv'] }),
    },
  ];

  for (const c of cases) {
    it(`${c.what}: a test-mode object is unknown to the live key`, async () => {
      const before = await snapshot(h, m.testKey, wt);
      const cross = answer(await c.run(m.liveKey, c.obj()));
      const unknown = answer(await c.run(m.liveKey, newId(c.prefix)));
      assert.deepEqual(cross, unknown, `${c.what}: ${JSON.stringify(cross)} vs ${JSON.stringify(unknown)}`);
      assert.deepEqual([cross.status, cross.code], c.expect);
      assert.deepEqual(await snapshot(h, m.testKey, wt), before, `${c.what} changed the test-mode objects`);
      assert.ok(await h.deps.store.cvc.getLive(m.id, 'test', wt.cardCvc, h.clock.now()));
      assert.ok(await h.deps.store.cvc.getLive(m.id, 'test', wt.sessionCvc, h.clock.now()));
    });
  }

  it('a live-mode card is unknown to the test key', async () => {
    const live = await request(h.app).post('/Cards').set(auth(m.liveKey)).send({ number: '5105105105105100', expMonth: 12, expYear: 2030, cvv: '123' });
    assert.equal(live.status, 201, JSON.stringify(live.body));
    const cross = answer(await request(h.app).get(`/Cards/${live.body.token}`).set(auth(m.testKey)));
    const unknown = answer(
      await request(h.app)
        .get(`/Cards/${newId('tok')}`)
        .set(auth(m.testKey)),
    );
    assert.deepEqual(cross, unknown);
    assert.equal(cross.status, 404);
    const cvc = answer(await request(h.app).delete(`/CvcSessions/${live.body.cvcSession.id}`).set(auth(m.testKey)));
    assert.deepEqual(
      cvc,
      answer(
        await request(h.app)
          .delete(`/CvcSessions/${newId('cvc')}`)
          .set(auth(m.testKey)),
      ),
    );
    assert.equal(cvc.status, 410);
    assert.ok(await h.deps.store.cvc.getLive(m.id, 'live', live.body.cvcSession.id, h.clock.now()), 'the live CVC session is untouched');
    assert.equal((await request(h.app).get(`/Cards/${live.body.token}`).set(auth(m.liveKey))).status, 200, 'control: the live key sees it');
  });

  it('validateToken: a test-mode token is wrong_merchant to the live key', async () => {
    const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.liveKey)).send({ token: wt.current });
    assert.equal(v.status, 200);
    assert.deepEqual(v.body, { valid: false, reason: 'wrong_merchant' });
  });

  it('Idempotency-Keys are separate per mode: the live key never gets the test-mode replay', async () => {
    const body = { number: TEST_CARD, expMonth: 12, expYear: 2030 };
    const t = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'mode-key').send(body);
    assert.equal(t.status, 201);
    const l = await request(h.app).post('/Cards').set(auth(m.liveKey)).set('Idempotency-Key', 'mode-key').send(body);
    assert.equal(l.status, 400, `the live key refuses the test card instead of replaying: ${JSON.stringify(l.body)}`);
    assert.equal(l.body.error.code, 'invalid_card');
  });
});
