import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import type { KyselyStore } from '../../server/store/kysely-store.js';
import { listDataKeys, loadDataKeys, rotateDataKey } from '../../server/domain/data-keys.js';
import { auth, type Harness, makeHarness, makeMerchant, type TestMerchant } from '../helpers/harness.js';

/** A live-looking card number and a CVV used nowhere else: sentinels to look for. */
const PAN = '4929123456781236';
const CVV = '731';

const cvvAsValue = new RegExp(`"${CVV}"|cvv[^,}]{0,12}${CVV}`);

/** Found nowhere: in the logs, the database files (every encoding), or any cell of any table; `secrets`: more bytes that must not be stored. */
async function assertNoLeaks(h: Harness, cardToken: string, secrets: Buffer[] = []): Promise<void> {
  const logs = h.logs.join('');
  assert.ok(!logs.includes(PAN), 'the logs carry the card number');
  assert.ok(!cvvAsValue.test(logs), 'the logs carry the CVV');
  const files = ['-wal', '-shm', ''].map((x) => h.dbPath + x).filter(existsSync);
  assert.ok(files.length >= 1);
  const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
  for (const x of secrets) {
    assert.ok(!bytes.includes(x), 'a raw key is in the database files');
    assert.ok(!logs.includes(x.toString('base64')) && !logs.includes(x.toString('hex')), 'a raw key is in the logs');
  }
  assert.ok(bytes.includes(Buffer.from(cardToken)), 'the right files were read (the card token is there)');
  for (const enc of ['latin1', 'utf16le'] as const) {
    assert.ok(!bytes.includes(Buffer.from(PAN, enc)), `the card number is in the database files (${enc})`);
    assert.ok(!bytes.includes(Buffer.from('Sentinel Holder', enc)), `the holder name is in the database files (${enc})`);
  }
  // A 3-digit CVV can occur by chance among random bytes, so it is looked for as a stored value: no text or blob
  // cell of any table holds it, alone or inside JSON.
  const db = (h.deps.store as KyselyStore).db;
  const tables = [
    'merchants',
    'api_keys',
    'signing_keys',
    'cards',
    'cvv_status',
    'cvc_sessions',
    'sessions',
    'idempotency_keys',
    'meta',
    'tds_transactions',
    'charges',
    'webhook_endpoints',
    'webhook_outbox',
    'custom_forms',
    'cvv_keys',
  ];
  for (const table of tables) {
    const rows = await db
      .selectFrom(table as 'meta')
      .selectAll()
      .execute();
    for (const row of rows) {
      for (const [col, v] of Object.entries(row)) {
        const cell: unknown = v;
        const text = cell instanceof Uint8Array ? Buffer.from(cell).toString('latin1') : String(cell);
        assert.ok(text !== CVV && !cvvAsValue.test(text), `${table}.${col} holds the CVV`);
        assert.ok(!text.includes(PAN), `${table}.${col} holds the card number`);
      }
    }
  }
}

describe('sentinel card data never leaks', () => {
  let h: Harness;
  let m: TestMerchant;
  const bodies: string[] = [];
  const rec = (r: request.Response) => {
    bodies.push(r.text ?? '');
    return r;
  };

  before(async () => {
    h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'on' } });
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('a live flow with a sentinel card number and CVV, its errors too: nothing in responses, errors, logs or the database files', async () => {
    const card = rec(
      await request(h.app).post('/Cards').set(auth(m.liveKey)).send({ number: PAN, expMonth: 1, expYear: 2031, cvv: CVV, holderName: 'Sentinel Holder' }),
    );
    assert.equal(card.status, 201);
    rec(
      await request(h.app)
        .post('/Cards')
        .set(auth(m.liveKey))
        .send({ number: PAN.slice(0, -1) + '0', expMonth: 1, expYear: 2031, cvv: CVV }),
    ); // Luhn error
    rec(
      await request(h.app)
        .post('/Cards')
        .set(auth(m.liveKey))
        .send({ number: PAN, expMonth: 1, expYear: 2031, cvv: `${CVV}x` }),
    ); // invalid_cvv
    rec(await request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: PAN, expMonth: 1, expYear: 2031, cvv: CVV })); // test key refuses it
    const s = rec(
      await request(h.app)
        .post('/CvvOperations')
        .set(auth(m.liveKey))
        .send({ card: card.body.token, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 500, currency: 'EUR' } }),
    );
    const c = rec(await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.body.token)).send({ cvv: CVV }));
    assert.equal(c.status, 200);
    rec(await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.body.token)).send({ cvv: CVV })); // replay
    rec(await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.body.token)).send({ cvv: '732' })); // superseded
    rec(
      await request(h.app)
        .post('/CvvOperations/collectCvv')
        .set(auth(c.body.token))
        .send({ cvv: `${CVV}9` }),
    ); // invalid_cvv
    const t = rec(await request(h.app).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({}));
    const p = rec(await request(h.app).post('/CvvOperations/charge').set(auth(t.body.token)).send({}));
    assert.equal(p.body.result.status, 'error', 'the simulator refuses a live card: an error result, the CVV used');
    rec(await request(h.app).get(`/CvvOperations/${s.body.id}`).set(auth(m.liveKey)));
    rec(await request(h.app).post('/CvvOperations/validateToken').set(auth(m.liveKey)).send({ token: p.body.token }));
    rec(await request(h.app).get(`/Cards/${card.body.token}`).set(auth(m.liveKey)));
    rec(await request(h.app).get(`/Cards/${card.body.token}/cvv/status`).set(auth(m.liveKey)));
    rec(await request(h.app).get(`/Cards/${PAN}`).set(auth(m.liveKey)));
    rec(await request(h.app).get(`/CvvOperations/${s.body.id}?number=${PAN}&cvv=${CVV}`).set(auth(m.liveKey)));
    rec(await request(h.app).get('/metrics'));
    (h.deps.store as KyselyStore).checkpointNow();

    for (const b of bodies) {
      assert.ok(!b.includes(PAN), `a response carried the card number: ${b.slice(0, 120)}`);
      assert.ok(!cvvAsValue.test(b), `a response carried the CVV: ${b.slice(0, 120)}`);
      assert.ok(!b.includes('Sentinel Holder'), 'a response carried the holder name');
    }
    await assertNoLeaks(h, card.body.token as string);
  });

  it('still after every key rotation: the card and a live CVV re-sealed, data keys re-wrapped under a new KEK; no sentinel, and no raw data key, in the logs or the files', async () => {
    const card = await request(h.app)
      .post('/Cards')
      .set(auth(m.liveKey))
      .send({ number: PAN, expMonth: 1, expYear: 2031, cvv: CVV, holderName: 'Sentinel Holder' });
    assert.equal(card.status, 201);
    const d = h.deps;
    for (const p of ['card', 'cvv'] as const) await rotateDataKey(d.store.meta, d.keyProvider, p, d.clock.now(), 0);
    await loadDataKeys(d.store.meta, d.keyring, d.keyProvider);
    await d.keyProvider.rotate(d.clock.now());
    for (let i = 0; i < 20 && (await d.keyMaintenance.slice(10)) > 0; i++);
    const stored = (await d.store.cards.get(m.id, 'live', card.body.token as string))!;
    assert.equal(stored.numberSealed.keyVersion, 2, 're-sealed');
    assert.ok(
      (await listDataKeys(d.store.meta)).every((e) => e.kekVersion === 2),
      're-wrapped',
    );
    const deks = [d.keyring.exportForWrap('card', 2), d.keyring.exportForWrap('cvv', 2)];
    (d.store as KyselyStore).checkpointNow();
    await assertNoLeaks(h, card.body.token as string, deks);
  });
});
