import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import request from 'supertest';
import type { Database } from '../../server/store/schema.js';
import { auth, collect, type Harness, makeHarness, makeMerchant, makeSession, TEST_CARD, type TestMerchant } from '../helpers/harness.js';

/** API.md section 11. */
const TEST_CARDS: Array<[string, string]> = [
  ['4000000000001018', 'visa'],
  ['4000000000002024', 'visa'],
  ['4000000000003030', 'visa'],
  ['4000000000004046', 'visa'],
  ['4000000000005050', 'visa'],
  ['4000000000006066', 'visa'],
  ['4000000000007072', 'visa'],
  ['4000000000008088', 'visa'],
  ['5555555555554402', 'mastercard'],
  ['378282246310005', 'amex'],
  ['6011111111111117', 'discover'],
];
/** Real-looking (Luhn-valid, not test) cards: what a live key accepts and a test key refuses. */
const LIVE_VISA = '4242424242424242';
const LIVE_AMEX = '371449635398431';
const YEAR_MS = 365 * 24 * 3600 * 1000;

/** The prefix with its Luhn check digit appended. */
function withLuhn(prefix: string): string {
  let sum = 0;
  for (let i = 0; i < prefix.length; i++) {
    let d = Number(prefix[prefix.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return prefix + String((10 - (sum % 10)) % 10);
}

/** A fresh, Luhn-valid visa number that is not a test card: a sentinel to look for on disk and in logs. */
const sentinelVisa = () => withLuhn(`4${Array.from({ length: 14 }, () => randomInt(10)).join('')}`);

const db = (h: Harness) => (h.deps.store as unknown as { db: Kysely<Database> }).db;

async function count(h: Harness, table: 'cards' | 'cvc_sessions'): Promise<number> {
  const r = await db(h).selectFrom(table).select(db(h).fn.countAll().as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}

describe('cards and CVC sessions (API.md section 5)', () => {
  let h: Harness;
  let m: TestMerchant;
  /** Every card number this file sends: none may appear in a response or a log line. */
  const numbers = new Set<string>([LIVE_VISA, LIVE_AMEX]);
  const post = (key: string, body: Record<string, unknown>) => {
    if (typeof body.number === 'string' && body.number.length >= 12) numbers.add(body.number);
    return request(h.app).post('/Cards').set(auth(key)).send(body);
  };
  const assertNoNumber = (text: string, what: string) => {
    for (const n of numbers) assert.ok(!text.includes(n), `${what}: the full number ${n.slice(0, 6)}… is in the response`);
  };

  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('tokenizes every test card of section 11 in test mode with its brand, last4 and bin', async () => {
    for (const [number, brand] of TEST_CARDS) {
      const res = await post(m.testKey, { number, expMonth: 12, expYear: 2030 });
      assert.equal(res.status, 201, `${number}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.token, /^tok_[A-Za-z0-9_-]{22,}$/);
      assert.equal(res.body.brand, brand, number);
      assert.equal(res.body.last4, number.slice(-4));
      assert.equal(res.body.bin, number.slice(0, 6));
      assert.equal(res.body.expMonth, 12);
      assert.equal(res.body.expYear, 2030);
      assert.equal(res.body.cvcSession, null);
      assert.equal(typeof res.body.createdAt, 'string');
      assertNoNumber(res.text, number);
    }
  });

  it('live keys refuse the test cards; test keys refuse every other card (400 invalid_card)', async () => {
    for (const [number] of TEST_CARDS) {
      const res = await post(m.liveKey, { number, expMonth: 12, expYear: 2030 });
      assert.equal(res.status, 400, `live ${number}: ${res.status}`);
      assert.equal(res.body.error.code, 'invalid_card');
      assertNoNumber(res.text, number);
    }
    for (const number of [LIVE_VISA, LIVE_AMEX, '5105105105105100', '6011000990139424', sentinelVisa()]) {
      const res = await post(m.testKey, { number, expMonth: 12, expYear: 2030 });
      assert.equal(res.status, 400, `test ${number}: ${res.status}`);
      assert.equal(res.body.error.code, 'invalid_card');
      assertNoNumber(res.text, number);
    }
    // Control: the live key takes a real-looking card.
    const ok = await post(m.liveKey, { number: LIVE_VISA, expMonth: 12, expYear: 2030 });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal(ok.body.brand, 'visa');
    assertNoNumber(ok.text, 'live 201');
  });

  it('refuses bad numbers, expiries and types with 400 invalid_card, in both modes', async () => {
    const now = new Date(h.clock.now());
    const y = now.getUTCFullYear();
    const mo = now.getUTCMonth() + 1;
    const prev = mo === 1 ? { expMonth: 12, expYear: y - 1 } : { expMonth: mo - 1, expYear: y };
    const cases: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
      // [what, test-mode body, live-mode body]
      ['Luhn failure', { number: '4000000000001019' }, { number: '4242424242424241' }],
      ['Luhn failure (amex)', { number: '378282246310006' }, { number: '371449635398432' }],
      ['unknown brand', { number: withLuhn('900000000000001') }, { number: withLuhn('900000000000001') }],
      ['visa of a wrong length (15)', { number: withLuhn('40000000000010') }, { number: withLuhn('42424242424242') }],
      ['too short (11 digits)', { number: withLuhn('4000000000') }, { number: withLuhn('4242424242') }],
      ['too long (20 digits)', { number: withLuhn('4000000000000000101') }, { number: withLuhn('4242424242424242424') }],
      ['empty', { number: '' }, { number: '' }],
      ['dashes', { number: '4000-0000-0000-1018' }, { number: '4242-4242-4242-4242' }],
      ['letters', { number: '400000000000101a' }, { number: '424242424242424a' }],
      ['fullwidth digits', { number: '４０００００００００００１０１８' }, { number: '４２４２４２４２４２４２４２４２' }],
      ['Arabic-Indic digits', { number: '٤٠٠٠٠٠٠٠٠٠٠٠١٠١٨' }, { number: '٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢' }],
      ['sign', { number: `+${TEST_CARD}` }, { number: `+${LIVE_VISA}` }],
      ['newline', { number: `${TEST_CARD}\n` }, { number: `${LIVE_VISA}\n` }],
      ['expired (previous month)', { number: TEST_CARD, ...prev }, { number: LIVE_VISA, ...prev }],
      ['expired (years ago)', { number: TEST_CARD, expMonth: 12, expYear: y - 3 }, { number: LIVE_VISA, expMonth: 12, expYear: y - 3 }],
      ['expMonth 13', { number: TEST_CARD, expMonth: 13 }, { number: LIVE_VISA, expMonth: 13 }],
      ['expMonth 0', { number: TEST_CARD, expMonth: 0 }, { number: LIVE_VISA, expMonth: 0 }],
      ['expMonth -1', { number: TEST_CARD, expMonth: -1 }, { number: LIVE_VISA, expMonth: -1 }],
      ['expMonth 1.5', { number: TEST_CARD, expMonth: 1.5 }, { number: LIVE_VISA, expMonth: 1.5 }],
      ['expMonth as a string', { number: TEST_CARD, expMonth: '12' }, { number: LIVE_VISA, expMonth: '12' }],
      ['expMonth null', { number: TEST_CARD, expMonth: null }, { number: LIVE_VISA, expMonth: null }],
      ['expYear as a string', { number: TEST_CARD, expYear: '2030' }, { number: LIVE_VISA, expYear: '2030' }],
      ['expYear two digits', { number: TEST_CARD, expYear: 30 }, { number: LIVE_VISA, expYear: 30 }],
      ['expYear boolean', { number: TEST_CARD, expYear: true }, { number: LIVE_VISA, expYear: true }],
      ['number as a number', { number: Number(TEST_CARD) }, { number: Number(LIVE_VISA) }],
      ['number as an array', { number: [TEST_CARD] }, { number: [LIVE_VISA] }],
      ['number as an object', { number: { n: TEST_CARD } }, { number: { n: LIVE_VISA } }],
      ['number null', { number: null }, { number: null }],
    ];
    const before = await count(h, 'cards');
    for (const [what, testBody, liveBody] of cases) {
      for (const [key, body] of [
        [m.testKey, testBody],
        [m.liveKey, liveBody],
      ] as const) {
        const res = await post(key, { number: TEST_CARD, expMonth: 12, expYear: 2030, ...body });
        assert.equal(res.status, 400, `${what} (${key.slice(0, 7)}): ${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'invalid_card', `${what} (${key.slice(0, 7)}): ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.requestId, res.headers['x-request-id']);
        assertNoNumber(res.text, what);
      }
    }
    assert.equal(await count(h, 'cards'), before, 'no card was created');

    // Missing fields are refused too (invalid_card, or invalid_request for the schema).
    for (const body of [{ expMonth: 12, expYear: 2030 }, { number: TEST_CARD, expYear: 2030 }, { number: TEST_CARD, expMonth: 12 }, {}]) {
      const res = await post(m.testKey, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.ok(['invalid_card', 'invalid_request'].includes(res.body.error.code), JSON.stringify(res.body));
    }
    // An unknown field is refused (API.md section 2).
    const extra = await post(m.testKey, { number: TEST_CARD, expMonth: 12, expYear: 2030, cvc: '123' });
    assert.equal(extra.status, 400);
    assert.equal(extra.body.error.code, 'invalid_request');

    // Controls: this month is not expired, in either mode; so the refusals above are about the fields.
    const thisMonth = { expMonth: mo, expYear: y };
    assert.equal((await post(m.testKey, { number: TEST_CARD, ...thisMonth })).status, 201);
    assert.equal((await post(m.liveKey, { number: LIVE_VISA, ...thisMonth })).status, 201);
    assert.equal((await post(m.liveKey, { number: LIVE_AMEX, expMonth: 1, expYear: y + 1 })).status, 201);
  });

  it('expiry follows the clock: a card valid this month is expired once the month has passed', async () => {
    const start = h.clock.now();
    const now = new Date(start);
    const exp = { expMonth: now.getUTCMonth() + 1, expYear: now.getUTCFullYear() };
    assert.equal((await post(m.testKey, { number: TEST_CARD, ...exp })).status, 201);
    // The first instant of the next month.
    h.clock.set(Date.UTC(exp.expYear, exp.expMonth, 1, 0, 0, 1));
    try {
      const res = await post(m.testKey, { number: TEST_CARD, ...exp });
      assert.equal(res.status, 400);
      assert.equal(res.body.error.code, 'invalid_card');
    } finally {
      h.clock.set(start);
    }
  });

  it('GET shows masked details only; DELETE is 204, then GET and DELETE are 404', async () => {
    const created = await post(m.testKey, { number: TEST_CARD, expMonth: 7, expYear: 2031, holderName: 'Ada Lovelace' });
    assert.equal(created.status, 201);
    const token = created.body.token;
    const res = await request(h.app).get(`/Cards/${token}`).set(auth(m.testKey));
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), ['bin', 'brand', 'createdAt', 'expMonth', 'expYear', 'last4', 'token']);
    assert.deepEqual(
      { ...res.body, createdAt: undefined },
      {
        token,
        brand: 'visa',
        last4: '1018',
        bin: '400000',
        expMonth: 7,
        expYear: 2031,
        createdAt: undefined,
      },
    );
    assert.equal(res.body.createdAt, created.body.createdAt);
    assertNoNumber(res.text, 'GET');
    assert.equal(res.headers['cache-control'], 'no-store');

    const del = await request(h.app).delete(`/Cards/${token}`).set(auth(m.testKey));
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    const gone = await request(h.app).get(`/Cards/${token}`).set(auth(m.testKey));
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'not_found');
    const again = await request(h.app).delete(`/Cards/${token}`).set(auth(m.testKey));
    assert.equal(again.status, 404);
    assert.equal(again.body.error.code, 'not_found');
    assert.equal(await h.deps.store.cards.get(m.id, 'test', token), null, 'the row is gone');
    // A session cannot be started on the deleted card.
    const s = await request(h.app)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .send({ card: token, operations: ['collectCvv'] });
    assert.equal(s.status, 400);
    assert.equal(s.body.error.code, 'invalid_card');
  });

  it('a cvv on POST /Cards creates a CVC session (one year in test mode, 90 s live) that a session can use', async () => {
    const now = h.clock.now();
    const res = await post(m.testKey, { number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.ok(res.body.cvcSession, 'the CVV is not silently dropped');
    assert.match(res.body.cvcSession.id, /^cvc_[A-Za-z0-9_-]{22,}$/);
    const ttl = Date.parse(res.body.cvcSession.expiresAt) - now;
    assert.ok(Math.abs(ttl - YEAR_MS) <= 2000, `test-mode lifetime is one year, got ${ttl} ms`);
    assert.ok(!res.text.includes('"123"'), 'the CVV is not echoed');
    const stored = await h.deps.store.cvc.getLive(m.id, 'test', res.body.cvcSession.id, h.clock.now());
    assert.ok(stored, 'the CVC session is in storage');
    assert.equal(stored.cardToken, res.body.token);

    // A session on this card sees the card's CVC session (it satisfies requireCvv).
    const s = await makeSession(h, m.testKey, { card: res.body.token });
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.cvv.available, true);
    assert.ok(!JSON.stringify(g.body).includes('"123"'));

    // Amex: four digits.
    const amex = await post(m.testKey, { number: '378282246310005', expMonth: 12, expYear: 2030, cvv: '1234' });
    assert.equal(amex.status, 201, JSON.stringify(amex.body));
    assert.match(amex.body.cvcSession.id, /^cvc_/);

    // Live mode: the merchant's CVC lifetime (default 90 seconds).
    const live = await post(m.liveKey, { number: LIVE_VISA, expMonth: 12, expYear: 2030, cvv: '321' });
    assert.equal(live.status, 201, JSON.stringify(live.body));
    assert.match(live.body.cvcSession.id, /^cvc_/);
    const liveTtl = Date.parse(live.body.cvcSession.expiresAt) - now;
    assert.ok(liveTtl > 88_000 && liveTtl <= 90_000, `live lifetime is 90 s, got ${liveTtl} ms`);

    // Without a cvv: no CVC session.
    const none = await post(m.testKey, { number: TEST_CARD, expMonth: 12, expYear: 2030 });
    assert.equal(none.body.cvcSession, null);
  });

  it('a wrong-shaped cvv is 400 invalid_cvv and creates no card and no CVC session', async () => {
    const cards0 = await count(h, 'cards');
    const cvcs0 = await count(h, 'cvc_sessions');
    const cases: Array<[string, string, unknown]> = [
      [m.testKey, TEST_CARD, '12'],
      [m.testKey, TEST_CARD, 12],
      [m.testKey, TEST_CARD, 123],
      [m.testKey, TEST_CARD, '1234'],
      [m.testKey, TEST_CARD, ''],
      [m.testKey, TEST_CARD, '12a'],
      [m.testKey, TEST_CARD, ' 123'],
      [m.testKey, TEST_CARD, '１２３'],
      [m.testKey, TEST_CARD, null],
      [m.testKey, TEST_CARD, ['123']],
      [m.testKey, TEST_CARD, { v: '123' }],
      [m.testKey, TEST_CARD, true],
      [m.testKey, '378282246310005', '123'],
      [m.testKey, '378282246310005', '12345'],
      [m.liveKey, LIVE_VISA, '12'],
      [m.liveKey, LIVE_VISA, '1234'],
      [m.liveKey, LIVE_AMEX, '123'],
      [m.liveKey, LIVE_VISA, 123],
    ];
    for (const [key, number, cvv] of cases) {
      const res = await post(key, { number, expMonth: 12, expYear: 2030, cvv });
      assert.equal(res.status, 400, `${number} cvv ${JSON.stringify(cvv)}: ${res.status} ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, 'invalid_cvv', `${number} cvv ${JSON.stringify(cvv)}`);
      assertNoNumber(res.text, 'invalid_cvv');
    }
    assert.equal(await count(h, 'cards'), cards0, 'no card was created');
    assert.equal(await count(h, 'cvc_sessions'), cvcs0, 'no CVC session was created');
  });

  it('stores the card number encrypted: it is nowhere in the SQLite files', async () => {
    const live = sentinelVisa();
    const live2 = sentinelVisa();
    const holder = `Sentinel Holder ${randomInt(1e9)}`;
    const a = await post(m.liveKey, { number: live, expMonth: 11, expYear: 2032, holderName: holder, cvv: '987' });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    const b = await request(h.app)
      .post('/Cards')
      .set(auth(m.liveKey))
      .set('Idempotency-Key', `disk-${randomInt(1e9)}`)
      .send({ number: live2, expMonth: 11, expYear: 2032 });
    numbers.add(live2);
    assert.equal(b.status, 201, JSON.stringify(b.body));
    const t = await post(m.testKey, { number: '5555555555554402', expMonth: 11, expYear: 2032 });
    assert.equal(t.status, 201);

    const files = [h.dbPath, `${h.dbPath}-wal`].filter(existsSync);
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    // Sanity: the rows were written to these files (their tokens are stored in clear).
    assert.ok(bytes.includes(Buffer.from(a.body.token)), 'the card row is in the files read');
    assert.ok(bytes.includes(Buffer.from(b.body.token)), 'the card row is in the files read');
    for (const n of [live, live2, '5555555555554402']) {
      assert.ok(!bytes.includes(Buffer.from(n, 'ascii')), `the number ${n.slice(0, 6)}… is on disk in clear`);
      assert.ok(!bytes.includes(Buffer.from(n, 'utf16le')), `the number ${n.slice(0, 6)}… is on disk (UTF-16)`);
    }
    assert.ok(!bytes.includes(Buffer.from(holder)), 'the holder name is on disk in clear');
    // And the numbers are in no log line either.
    const logs = h.logs.join('');
    for (const n of numbers) assert.ok(!logs.includes(n), `the number ${n.slice(0, 6)}… is in the logs`);
    assert.ok(!logs.includes(holder));
  });

  it('Idempotency-Key on POST /Cards replays the first response; another body is 409 idempotency_key_reused', async () => {
    const before = await count(h, 'cards');
    const body = { number: TEST_CARD, expMonth: 12, expYear: 2030, holderName: 'Idem' };
    const a = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'card-key-1').send(body);
    const b = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'card-key-1').send(body);
    assert.equal(a.status, 201);
    assert.equal(b.status, 201);
    assert.deepEqual(b.body, a.body, 'the same token and details');
    assert.equal(await count(h, 'cards'), before + 1, 'one card only');
    assertNoNumber(b.text, 'replay');

    const c = await request(h.app)
      .post('/Cards')
      .set(auth(m.testKey))
      .set('Idempotency-Key', 'card-key-1')
      .send({ ...body, expMonth: 11 });
    assert.equal(c.status, 409);
    assert.equal(c.body.error.code, 'idempotency_key_reused');
    assert.equal(await count(h, 'cards'), before + 1);
    // The first response is still what the key replays.
    const d = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'card-key-1').send(body);
    assert.deepEqual(d.body, a.body);
    // Another key is another card.
    const e = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'card-key-2').send(body);
    assert.equal(e.status, 201);
    assert.notEqual(e.body.token, a.body.token);

    // A CVV with an idempotent request: the replay does not create a second CVC session.
    const cvcs = await count(h, 'cvc_sessions');
    const withCvv = { number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' };
    const f = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'card-key-3').send(withCvv);
    const g = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Idempotency-Key', 'card-key-3').send(withCvv);
    assert.equal(f.status, 201);
    assert.deepEqual(g.body, f.body);
    assert.equal(await count(h, 'cvc_sessions'), cvcs + 1);
    // Another CVV under the same key is a different body.
    const i = await request(h.app)
      .post('/Cards')
      .set(auth(m.testKey))
      .set('Idempotency-Key', 'card-key-3')
      .send({ ...withCvv, cvv: '456' });
    assert.equal(i.status, 409);
    assert.equal(i.body.error.code, 'idempotency_key_reused');
  });

  it('deleting a card deletes every CVC session of it (DELETE /CvcSessions/{id} then answers 410)', async () => {
    const created = await post(m.testKey, { number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' });
    const token = created.body.token;
    const fromCard = created.body.cvcSession.id;
    const s = await makeSession(h, m.testKey, { card: token });
    const r = await collect(h, s.token);
    assert.equal(r.status, 200);
    const fromSession = r.body.result.cvcSession.id;
    const rows = () => db(h).selectFrom('cvc_sessions').select('id').where('card_token', '=', token).execute();
    assert.equal((await rows()).length, 2);

    assert.equal((await request(h.app).delete(`/Cards/${token}`).set(auth(m.testKey))).status, 204);
    assert.equal((await rows()).length, 0, 'no CVC session of the card is left in storage');
    for (const id of [fromCard, fromSession]) {
      assert.equal(await h.deps.store.cvc.getLive(m.id, 'test', id, h.clock.now()), null);
      const del = await request(h.app).delete(`/CvcSessions/${id}`).set(auth(m.testKey));
      assert.equal(del.status, 410, id);
      assert.equal(del.body.error.code, 'cvc_session_not_found');
    }
  });

  it('DELETE /CvcSessions/{id}: 204, then 410 cvc_session_not_found; unknown and expired ids are 410', async () => {
    const created = await post(m.testKey, { number: TEST_CARD, expMonth: 12, expYear: 2030, cvv: '123' });
    const id = created.body.cvcSession.id;
    const s = await makeSession(h, m.testKey, { card: created.body.token });
    assert.equal((await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey))).body.cvv.available, true);

    const del = await request(h.app).delete(`/CvcSessions/${id}`).set(auth(m.testKey));
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    assert.equal(await h.deps.store.cvc.getLive(m.id, 'test', id, h.clock.now()), null);
    assert.equal((await db(h).selectFrom('cvc_sessions').select('id').where('id', '=', id).execute()).length, 0, 'the row is gone');
    assert.equal((await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey))).body.cvv.available, false);
    // The card itself stays.
    assert.equal((await request(h.app).get(`/Cards/${created.body.token}`).set(auth(m.testKey))).status, 200);

    const again = await request(h.app).delete(`/CvcSessions/${id}`).set(auth(m.testKey));
    assert.equal(again.status, 410);
    assert.equal(again.body.error.code, 'cvc_session_not_found');
    assert.equal(again.body.error.requestId, again.headers['x-request-id']);

    for (const unknown of ['cvc_AAAAAAAAAAAAAAAAAAAAAAAAAAA', 'cvc_x', 'nope', 'tok_AAAAAAAAAAAAAAAAAAAAAAAAAAA', `${id}x`]) {
      const res = await request(h.app).delete(`/CvcSessions/${unknown}`).set(auth(m.testKey));
      assert.equal(res.status, 410, unknown);
      assert.equal(res.body.error.code, 'cvc_session_not_found');
      assert.equal(res.body.error.message, again.body.error.message, 'one answer for all');
    }

    // Expired (live: 90 seconds): 410 as well, with the same message, and the row is gone afterwards.
    const live = await post(m.liveKey, { number: LIVE_VISA, expMonth: 12, expYear: 2030, cvv: '123' });
    const liveId = live.body.cvcSession.id;
    h.clock.advance(91_000);
    try {
      const expired = await request(h.app).delete(`/CvcSessions/${liveId}`).set(auth(m.liveKey));
      assert.equal(expired.status, 410);
      assert.equal(expired.body.error.code, 'cvc_session_not_found');
      assert.equal(expired.body.error.message, again.body.error.message);
      assert.equal((await db(h).selectFrom('cvc_sessions').select('id').where('id', '=', liveId).execute()).length, 0);
    } finally {
      h.clock.advance(-91_000);
    }

    // Without an API key: 401, not 410.
    const anon = await request(h.app).delete('/CvcSessions/cvc_x');
    assert.equal(anon.status, 401);
  });

  it('no response or log line of this file held a full card number', () => {
    const logs = h.logs.join('');
    assert.ok(numbers.size >= 15);
    for (const n of numbers) assert.ok(!logs.includes(n), `the number ${n.slice(0, 6)}… is in the logs`);
  });
});
