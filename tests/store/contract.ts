import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { KyselyStore } from '../../server/store/kysely-store.js';
import { NO_OUTCOME } from '../../server/store/store.js';
import type { Sealed } from '../../server/domain/keyring.js';
import type {
  ApiKeyRecord,
  CardRecord,
  ChargeRecord,
  CvcSessionRecord,
  EventWrite,
  HistoryRecord,
  MerchantRecord,
  OutboxRecord,
  SessionRecord,
  SigningKeyRecord,
  Store,
  TdsRecord,
  WebhookEndpointRecord,
} from '../../server/store/store.js';

/**
 * The storage contract: what every Store implementation must do, tested
 * through the Store interface only. A runner calls `storeContract` with a
 * factory returning a fresh, migrated store.
 *
 * Tests share one store and keep apart by unique ids. The few operations that
 * act on every row (sweeps of expired rows, signing-key retirement, session
 * expiry, pending charges, claiming due webhooks) use times far below every
 * other test's (T0), so they only ever see their own rows.
 */

/** Every ordinary test's "now": 2026-11-21T12:00:00Z. */
const T0 = Date.UTC(2026, 10, 21, 12, 0, 0);
/** Times for the sweeps, far below T0. */
const SWEEP_NOW = 2_000;

const uid = (prefix: string): string => `${prefix}_${randomBytes(9).toString('base64url')}`;
/** A fake sealed value: the store only keeps bytes, it never opens them. */
const sealed = (keyVersion = 1): Sealed => ({ keyVersion, blob: randomBytes(40) });

function assertSealed(got: Sealed | null | undefined, want: Sealed, what: string): void {
  assert.ok(got, `${what}: missing`);
  assert.equal(got.keyVersion, want.keyVersion, `${what}: keyVersion`);
  assert.ok(Buffer.isBuffer(got.blob), `${what}: blob is a Buffer`);
  assert.equal(got.blob.toString('hex'), want.blob.toString('hex'), `${what}: bytes`);
}

function merchantRec(over: Partial<MerchantRecord> = {}): MerchantRecord {
  return {
    id: uid('mer'),
    name: 'Shop',
    mode: 'test',
    allowedOrigins: ['https://shop.example'],
    allowedProxyTargets: [],
    processor: { type: 'simulator' },
    cvvBlockThreshold: 3,
    cvcSessionTtlSeconds: 90,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

function cardRec(merchantId: string, over: Partial<CardRecord> = {}): CardRecord {
  return {
    token: uid('tok'),
    merchantId,
    mode: 'test',
    brand: 'visa',
    last4: '1018',
    bin: '400000',
    expMonth: 12,
    expYear: 2030,
    fingerprint: randomBytes(32).toString('hex'),
    numberSealed: sealed(),
    holderSealed: null,
    createdAt: T0,
    ...over,
  };
}

function cvcRec(merchantId: string, cardToken: string, over: Partial<CvcSessionRecord> = {}): CvcSessionRecord {
  return {
    id: uid('cvc'),
    merchantId,
    mode: 'test',
    cardToken,
    sessionId: null,
    sealed: sealed(),
    retention: 'single_use',
    expiresAt: T0 + 90_000,
    firstUsedAt: null,
    createdAt: T0,
    ...over,
  };
}

function sessionRec(merchantId: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: uid('cvo'),
    merchantId,
    mode: 'test',
    cardToken: uid('tok'),
    operations: ['collectCvv', 'threeDS', 'charge'],
    amount: { value: 1999, currency: 'EUR' },
    reference: 'order-1234',
    require3DS: true,
    requireCvv: false,
    maxAttempts: 3,
    cvvRetention: 'single_use',
    form: 'hosted',
    returnUrl: 'https://shop.example/return',
    metadata: { cart: 'c_77' },
    status: 'active',
    jti: uid('jti'),
    seq: 0,
    tokenHash: uid('th'),
    attempts: { collectCvv: 0, threeDS: 0, charge: 0 },
    results: {},
    replay: null,
    chargeInFlight: null,
    expiresAt: T0 + 900_000,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

export function storeContract(name: string, open: () => Promise<Store & { close(): Promise<void> }>): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    /** Two merchants (cards reference merchants). */
    let mA: MerchantRecord;
    let mB: MerchantRecord;

    before(async () => {
      store = await open();
      mA = merchantRec({ name: 'Merchant A' });
      mB = merchantRec({ name: 'Merchant B', allowedOrigins: ['https://b.example'] });
      await store.merchants.insert(mA);
      await store.merchants.insert(mB);
    });
    after(async () => {
      await store?.close();
    });

    async function newSession(over: Partial<SessionRecord> = {}): Promise<SessionRecord> {
      const s = sessionRec(mA.id, over);
      await store.sessions.insert(s);
      return s;
    }
    const mustSession = async (id: string): Promise<SessionRecord> => {
      const s = await store.sessions.getById(id);
      assert.ok(s, `session ${id} exists`);
      return s;
    };
    /**
     * The token rotation of an operation (Store.sessions.commitOperation) with nothing else to write: the session's
     * results, token hash and replay record kept as they were read, so only the rotation and the attempt change.
     */
    const claim = async (p: {
      id: string;
      jti: string;
      newJti: string;
      op: 'collectCvv' | 'threeDS' | 'charge';
      now: number;
      countAttempt?: boolean;
    }): Promise<boolean> => {
      const s = await store.sessions.getById(p.id);
      return store.sessions.commitOperation({
        id: p.id,
        jti: p.jti,
        newJti: p.newJti,
        op: p.op,
        countAttempt: p.countAttempt !== false,
        now: p.now,
        results: s?.results ?? {},
        tokenHash: s?.tokenHash ?? '',
        complete: false,
        replay: s?.replay ?? { jti: p.jti, hash: '', sealed: { keyVersion: 1, blob: Buffer.alloc(0) }, at: p.now },
        writes: [],
        events: [],
      });
    };

    /** An operation's unit on `s` (its stored jti presented) that writes `rows` with the rotation: whether it won. */
    const claimWith = async (s: SessionRecord, rows: EventWrite[]): Promise<boolean> =>
      store.sessions.commitOperation({
        id: s.id,
        jti: s.jti,
        newJti: uid('jti'),
        op: 'collectCvv',
        countAttempt: true,
        now: T0 + 1,
        results: {},
        tokenHash: uid('th'),
        complete: false,
        replay: { jti: s.jti, hash: uid('rh'), sealed: sealed(), at: T0 + 1 },
        writes: [],
        events: rows,
      });

    describe('lifecycle and meta', () => {
      it('migrate is idempotent and keeps the data', async () => {
        const n = uid('meta');
        await store.meta.putIfAbsent(n, 'kept');
        await store.migrate();
        await store.migrate();
        await store.ping();
        assert.equal(await store.meta.get(n), 'kept');
        assert.deepEqual(await store.merchants.get(mA.id, 'test'), mA);
      });

      it('reports its engine', () => {
        assert.ok(['sqlite', 'postgres', 'memory'].includes(store.engine));
      });

      it('getMeta is null for an unknown name; putMetaIfAbsent keeps the first value', async () => {
        const n = uid('meta');
        assert.equal(await store.meta.get(n), null);
        assert.equal(await store.meta.putIfAbsent(n, 'first'), 'first');
        assert.equal(await store.meta.putIfAbsent(n, 'second'), 'first', 'the second put returns the stored value');
        assert.equal(await store.meta.get(n), 'first');
      });

      it('protectedCounts counts what each key purpose protects (a card, an endpoint, a sealed processor, an API key)', async () => {
        const before = await store.meta.protectedCounts();
        await store.cards.insert(cardRec(mA.id));
        await store.webhooks.insertEndpoint({
          id: uid('whe'),
          merchantId: mA.id,
          mode: 'test',
          url: 'https://hooks.example/a',
          events: ['charge.succeeded'],
          secretSealed: sealed(1),
          createdAt: T0,
        });
        const after = await store.meta.protectedCounts();
        assert.equal(after.cards, before.cards + 1);
        assert.equal(after.webhookEndpoints, before.webhookEndpoints + 1);
        assert.equal(after.signingKeys, before.signingKeys, 'nothing else moved');
        assert.equal(after.cvcSessions, before.cvcSessions);
        for (const v of Object.values(after)) assert.ok(Number.isInteger(v) && v >= 0);
      });

      it('meta.replace swaps a value only if it still holds the expected one', async () => {
        const n = uid('cas');
        assert.equal(await store.meta.replace(n, 'x', 'y'), false, 'no such name');
        await store.meta.putIfAbsent(n, 'a');
        assert.equal(await store.meta.replace(n, 'b', 'c'), false, 'another value');
        assert.equal(await store.meta.get(n), 'a');
        assert.equal(await store.meta.replace(n, 'a', 'b'), true);
        assert.equal(await store.meta.get(n), 'b');
      });

      it('sealed: versionCounts by purpose and key version; listBelow and reseal of a webhook secret, only if unchanged', async () => {
        const before = await store.sealed.versionCounts();
        const count = (cs: typeof before, p: string, v: number) => cs.find((c) => c.purpose === p && c.version === v)?.count ?? 0;
        const id = uid('whe');
        await store.webhooks.insertEndpoint({
          id,
          merchantId: mA.id,
          mode: 'test',
          url: 'https://hooks.example/s',
          events: ['charge.succeeded'],
          secretSealed: sealed(1),
          createdAt: T0,
        });
        await store.cards.insert(cardRec(mA.id));
        const mid = await store.sealed.versionCounts();
        assert.equal(count(mid, 'webhook-secret', 1), count(before, 'webhook-secret', 1) + 1);
        assert.ok(count(mid, 'card', 1) >= count(before, 'card', 1) + 1);
        const item = (await store.sealed.listBelow('webhook-secret', 2, 10_000)).find((i) => i.ref === id)!;
        assert.equal(item.merchantId, mA.id);
        assert.equal(item.sealed.keyVersion, 1);
        const next = { keyVersion: 2, blob: Buffer.from('resealed-blob-of-28-bytes-or-more') };
        assert.equal(await store.sealed.reseal(item, next), true);
        assert.equal(await store.sealed.reseal(item, next), false, 'changed meanwhile: not written');
        assert.deepEqual((await store.webhooks.getEndpoint(id))!.secretSealed, next);
        const after = await store.sealed.versionCounts();
        assert.equal(count(after, 'webhook-secret', 2), count(before, 'webhook-secret', 2) + 1);
        assert.ok(!(await store.sealed.listBelow('webhook-secret', 2, 10_000)).some((i) => i.ref === id));
      });

      it('sealed: a CVV is re-sealed in place only while it is there, unchanged; versionCounts can be asked for some purposes only', async () => {
        const card = cardRec(mA.id);
        await store.cards.insert(card);
        const c = cvcRec(mA.id, card.token);
        await store.cvc.insert(c);
        const item = (await store.sealed.listBelow('cvv', 2, 100_000)).find((i) => i.ref === c.id)!;
        assert.deepEqual([item.merchantId, item.mode, item.sealed.keyVersion], [mA.id, 'test', 1]);
        const next = { keyVersion: 2, blob: randomBytes(40) };
        assert.equal(await store.sealed.reseal(item, next), true);
        assert.deepEqual((await store.cvc.getById(c.id, T0))!.sealed, next);
        assert.equal(await store.sealed.reseal(item, { keyVersion: 2, blob: randomBytes(40) }), false, 'changed meanwhile');
        const taken = await store.cvc.take(c.id, T0);
        assert.ok(taken);
        assert.equal(
          await store.sealed.reseal({ ...item, sealed: next }, { keyVersion: 3, blob: randomBytes(40) }),
          false,
          'a CVV used meanwhile is not brought back',
        );
        assert.equal(await store.cvc.getById(c.id, T0), null);
        const only = await store.sealed.versionCounts(['cvv']);
        assert.ok(only.every((x) => x.purpose === 'cvv'));
      });

      it('meta.list(prefix): exactly the names that start with it (no wildcard: _ and % are characters), by name', async () => {
        const p = `${uid('pre')}_x%/`;
        await store.meta.putIfAbsent(`${p}b`, '2');
        await store.meta.putIfAbsent(`${p}a`, '1');
        await store.meta.putIfAbsent(`${p.replace('_x%', 'Zx%')}a`, 'not this');
        await store.meta.putIfAbsent(`${p.slice(0, -1)}`, 'not this either');
        assert.deepEqual(await store.meta.list(p), [
          { name: `${p}a`, value: '1' },
          { name: `${p}b`, value: '2' },
        ]);
        assert.deepEqual(await store.meta.list(`${uid('none')}/`), []);
      });

      it('concurrent putMetaIfAbsent calls agree on one value', async () => {
        const n = uid('meta');
        const got = await Promise.all(Array.from({ length: 10 }, (_, i) => store.meta.putIfAbsent(n, `v${i}`)));
        const stored = await store.meta.get(n);
        assert.ok(stored !== null && /^v\d$/.test(stored));
        for (const g of got) assert.equal(g, stored);
      });
    });

    describe('merchants and API keys', () => {
      it('inserts and gets a merchant with every field; unknown is null', async () => {
        const m = merchantRec({
          allowedOrigins: ['https://a.example', 'http://localhost:3000'],
          allowedProxyTargets: ['https://psp.example'],
          processor: { type: 'http', url: 'https://psp.example/charge', nested: { n: 1, ok: true } },
          cvvBlockThreshold: 5,
          cvcSessionTtlSeconds: 300,
          createdAt: T0 - 5,
          updatedAt: T0 + 5,
        });
        await store.merchants.insert(m);
        assert.deepEqual(await store.merchants.get(m.id, 'test'), m);
        assert.equal(await store.merchants.get(uid('mer'), 'test'), null);
      });

      it('refuses a second merchant with the same id', async () => {
        const m = merchantRec();
        await store.merchants.insert(m);
        await assert.rejects(store.merchants.insert({ ...m, name: 'Other' }));
        assert.equal((await store.merchants.get(m.id, 'test'))?.name, 'Shop');
      });

      it("listAllAllowedOrigins has every merchant's origins, each once", async () => {
        const shared = `https://${uid('shared').toLowerCase().replace(/_/g, '-')}.example`;
        const only1 = `https://${uid('one').toLowerCase().replace(/_/g, '-')}.example`;
        const only2 = `http://localhost:${3000 + Math.floor(Math.random() * 1000)}`;
        await store.merchants.insert(merchantRec({ allowedOrigins: [shared, only1] }));
        await store.merchants.insert(merchantRec({ allowedOrigins: [only2, shared] }));
        await store.merchants.insert(merchantRec({ allowedOrigins: [] }));
        const all = await store.merchants.listAllAllowedOrigins();
        assert.ok(all.includes(only1) && all.includes(only2) && all.includes(mB.allowedOrigins[0]!));
        assert.equal(all.filter((o) => o === shared).length, 1, 'an origin two merchants allow is listed once');
        assert.equal(new Set(all).size, all.length, 'no duplicates');
      });

      it('inserts an API key and finds it by its hash only', async () => {
        const live: ApiKeyRecord = {
          id: uid('key'),
          merchantId: mA.id,
          mode: 'live',
          hash: randomBytes(32).toString('hex'),
          suffix: 'aB_9',
          createdAt: T0,
          revokedAt: null,
        };
        const revoked: ApiKeyRecord = {
          id: uid('key'),
          merchantId: mB.id,
          mode: 'test',
          hash: randomBytes(32).toString('hex'),
          suffix: 'zz-1',
          createdAt: T0 - 10,
          revokedAt: T0 + 10,
        };
        await store.merchants.insertApiKey(live);
        await store.merchants.insertApiKey(revoked);
        assert.deepEqual(await store.merchants.findApiKeyByHash(live.hash), live);
        assert.deepEqual(await store.merchants.findApiKeyByHash(revoked.hash), revoked);
        assert.equal(await store.merchants.findApiKeyByHash(randomBytes(32).toString('hex')), null);
        assert.equal(await store.merchants.findApiKeyByHash(live.hash.toUpperCase()), null, 'the hash is compared exactly');
      });

      it('refuses a second API key with the same hash', async () => {
        const k: ApiKeyRecord = {
          id: uid('key'),
          merchantId: mA.id,
          mode: 'test',
          hash: randomBytes(32).toString('hex'),
          suffix: 'abcd',
          createdAt: T0,
          revokedAt: null,
        };
        await store.merchants.insertApiKey(k);
        await assert.rejects(store.merchants.insertApiKey({ ...k, id: uid('key'), merchantId: mB.id }));
        assert.equal((await store.merchants.findApiKeyByHash(k.hash))?.merchantId, mA.id);
      });
    });

    describe('the operator view of merchants and keys', () => {
      it("lists every merchant oldest first, a merchant's keys, and ends a key no later than it already ends", async () => {
        const all = await store.merchants.listAll();
        const ids = all.map((x) => x.id);
        assert.ok(ids.includes(mA.id) && ids.includes(mB.id));
        assert.deepEqual(
          all.find((x) => x.id === mA.id),
          { id: mA.id, name: mA.name, createdAt: mA.createdAt },
        );
        const m = merchantRec({ createdAt: T0 + 5 });
        await store.merchants.insert(m);
        const key = (over: Partial<ApiKeyRecord>): ApiKeyRecord => ({
          id: uid('key'),
          merchantId: m.id,
          mode: 'test',
          hash: randomBytes(32).toString('hex'),
          suffix: 'abcd',
          createdAt: T0,
          revokedAt: null,
          ...over,
        });
        const k1 = key({});
        const k2 = key({ mode: 'live', createdAt: T0 + 1 });
        await store.merchants.insertApiKey(k1);
        await store.merchants.insertApiKey(k2);
        assert.deepEqual(await store.merchants.listApiKeys(m.id), [k1, k2]);
        const ofB = await store.merchants.listApiKeys(mB.id);
        assert.ok(ofB.every((k) => k.merchantId === mB.id) && !ofB.some((k) => k.id === k1.id || k.id === k2.id), "another merchant's keys are not listed");
        assert.equal(await store.merchants.revokeApiKey(m.id, k1.id, T0 + 100), true);
        assert.equal((await store.merchants.findApiKeyByHash(k1.hash))?.revokedAt, T0 + 100);
        assert.equal(await store.merchants.revokeApiKey(m.id, k1.id, T0 + 500), true, 'a later end is no change');
        assert.equal((await store.merchants.findApiKeyByHash(k1.hash))?.revokedAt, T0 + 100);
        assert.equal(await store.merchants.revokeApiKey(m.id, k1.id, T0 + 50), true, 'an earlier end moves it forward');
        assert.equal((await store.merchants.findApiKeyByHash(k1.hash))?.revokedAt, T0 + 50);
        assert.equal(await store.merchants.revokeApiKey(mB.id, k2.id, T0), false, 'not through another merchant');
        assert.equal((await store.merchants.findApiKeyByHash(k2.hash))?.revokedAt, null);
      });
    });

    describe('signing keys', () => {
      // The only test touching signing keys: retirement acts on every key.
      it('lists newest activated first, retires all but one, deletes only those retired before a time', async () => {
        const key = (activatedAt: number, retiredAt: number | null = null): SigningKeyRecord => ({
          kid: uid('kid'),
          alg: 'EdDSA',
          publicJwk: JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: randomBytes(32).toString('base64url') }),
          privateSealed: sealed(1),
          createdAt: activatedAt - 1,
          activatedAt,
          retiredAt,
        });
        const old = key(T0 - 10_000, T0 - 5_000);
        const k1 = key(T0 - 3_000);
        const k2 = key(T0 - 2_000);
        const k3 = key(T0 - 1_000);
        k3.privateSealed = sealed(2);
        // Inserted out of order: the order comes from activatedAt.
        for (const k of [k2, old, k3, k1]) await store.signingKeys.insert(k);
        await assert.rejects(store.signingKeys.insert({ ...k1, alg: 'ES256' }), 'a kid is unique');

        const mine = new Set([old.kid, k1.kid, k2.kid, k3.kid]);
        const listed = (await store.signingKeys.list()).filter((k) => mine.has(k.kid));
        assert.deepEqual(listed, [k3, k2, k1, old]);
        assertSealed(listed[0]!.privateSealed, k3.privateSealed, 'private key');

        await store.signingKeys.retireAllExcept(k3.kid, T0);
        const byKid = new Map((await store.signingKeys.list()).map((k) => [k.kid, k]));
        assert.equal(byKid.get(k3.kid)!.retiredAt, null, 'the kept key stays active');
        assert.equal(byKid.get(k1.kid)!.retiredAt, T0);
        assert.equal(byKid.get(k2.kid)!.retiredAt, T0);
        assert.equal(byKid.get(old.kid)!.retiredAt, T0 - 5_000, 'an already retired key keeps its retirement time');

        assert.equal(await store.signingKeys.deleteRetiredBefore(T0 - 5_000), 0, 'retired exactly at t is not before t');
        assert.equal(await store.signingKeys.deleteRetiredBefore(T0), 1);
        assert.deepEqual(
          (await store.signingKeys.list()).map((k) => k.kid).filter((k) => mine.has(k)),
          [k3.kid, k2.kid, k1.kid],
        );
        assert.equal(await store.signingKeys.deleteRetiredBefore(T0 + 1), 2);
        assert.equal(await store.signingKeys.deleteRetiredBefore(Number.MAX_SAFE_INTEGER), 0, 'the active key is never deleted');
        // Re-sealing after a signing-key rotation: the key on version 2 is listed below 3, sealed anew only if unchanged.
        const item = (await store.sealed.listBelow('signing-key', 3, 1000)).find((i) => i.ref === k3.kid)!;
        assert.deepEqual([item.merchantId, item.mode, item.sealed.keyVersion], [null, null, 2]);
        assert.ok(!(await store.sealed.listBelow('signing-key', 2, 1000)).some((i) => i.ref === k3.kid), 'not below its own version');
        const next = sealed(3);
        assert.equal(await store.sealed.reseal(item, next), true);
        assert.equal(await store.sealed.reseal(item, sealed(3)), false, 'changed meanwhile');
        assertSealed((await store.signingKeys.list()).find((k) => k.kid === k3.kid)!.privateSealed, next, 'private key re-sealed');
        assert.deepEqual(
          (await store.signingKeys.list()).map((k) => k.kid).filter((k) => mine.has(k)),
          [k3.kid],
        );
      });
    });

    describe('cards', () => {
      it('listSealedBelow finds cards sealed with an older key version; reseal replaces the sealed values only if unchanged', async () => {
        const old = cardRec(mA.id, { numberSealed: sealed(1), holderSealed: sealed(1) });
        const cur = cardRec(mA.id, { numberSealed: sealed(7) });
        await store.cards.insert(old);
        await store.cards.insert(cur);
        const below = (await store.cards.listSealedBelow(7, 10_000)).map((c) => c.token);
        assert.ok(below.includes(old.token) && !below.includes(cur.token));
        const next = { token: old.token, merchantId: mA.id, numberSealed: sealed(7), holderSealed: sealed(7) };
        assert.equal(await store.cards.reseal(next, cur.numberSealed), false, 'not what it was read with: nothing written');
        assert.equal(await store.cards.reseal(next, old.numberSealed), true);
        const got = (await store.cards.get(mA.id, old.mode, old.token))!;
        assert.deepEqual([got.numberSealed, got.holderSealed], [next.numberSealed, next.holderSealed]);
        assert.ok(!(await store.cards.listSealedBelow(7, 10_000)).some((c) => c.token === old.token));
        assert.equal(await store.cards.reseal(next, old.numberSealed), false, 'once');
      });

      it('inserts and gets a card with every field, sealed blobs byte-exact', async () => {
        const plain = cardRec(mA.id);
        const full = cardRec(mA.id, {
          mode: 'live',
          brand: 'amex',
          last4: '0005',
          bin: '378282',
          expMonth: 1,
          expYear: 2099,
          numberSealed: { keyVersion: 3, blob: Buffer.concat([Buffer.from([0, 0, 255]), randomBytes(37)]) },
          holderSealed: sealed(1),
          createdAt: T0 + 123,
        });
        await store.cards.insert(plain);
        await store.cards.insert(full);
        assert.deepEqual(await store.cards.get(mA.id, 'test', plain.token), plain);
        const got = await store.cards.get(mA.id, 'live', full.token);
        assert.deepEqual(got, full);
        assertSealed(got.numberSealed, full.numberSealed, 'number');
        assertSealed(got.holderSealed, full.holderSealed!, 'holder');
      });

      it('gets a card only for its merchant and mode', async () => {
        const c = cardRec(mA.id);
        await store.cards.insert(c);
        assert.equal(await store.cards.get(mB.id, 'test', c.token), null, 'another merchant');
        assert.equal(await store.cards.get(mA.id, 'live', c.token), null, 'the other mode');
        assert.equal(await store.cards.get(mA.id, 'test', uid('tok')), null, 'unknown');
      });

      it('deleteCard deletes the card and its CVC sessions, only for its merchant and mode', async () => {
        const c = cardRec(mA.id);
        const other = cardRec(mA.id);
        await store.cards.insert(c);
        await store.cards.insert(other);
        const cvc1 = cvcRec(mA.id, c.token);
        const cvc2 = cvcRec(mA.id, c.token, { sessionId: uid('cvo') });
        const otherCvc = cvcRec(mA.id, other.token);
        for (const x of [cvc1, cvc2, otherCvc]) await store.cvc.insert(x);

        assert.equal(await store.cards.delete(mB.id, 'test', c.token), false, 'another merchant cannot delete it');
        assert.equal(await store.cards.delete(mA.id, 'live', c.token), false, 'nor the other mode');
        assert.ok(await store.cards.get(mA.id, 'test', c.token));
        assert.ok(await store.cvc.getLive(mA.id, 'test', cvc1.id, T0));

        assert.equal(await store.cards.delete(mA.id, 'test', c.token), true);
        assert.equal(await store.cards.get(mA.id, 'test', c.token), null);
        assert.equal(await store.cvc.getLive(mA.id, 'test', cvc1.id, T0), null, "the card's CVC session is gone");
        assert.equal(await store.cvc.getLive(mA.id, 'test', cvc2.id, T0), null, "the card's session CVC is gone");
        assert.equal(await store.cvc.findUsable(mA.id, c.token, cvc2.sessionId!, T0), null);
        assert.ok(await store.cards.get(mA.id, 'test', other.token), 'another card stays');
        assert.ok(await store.cvc.getLive(mA.id, 'test', otherCvc.id, T0), "another card's CVC session stays");

        assert.equal(await store.cards.delete(mA.id, 'test', c.token), false, 'a second delete finds nothing');
        assert.equal(await store.cards.delete(mA.id, 'test', uid('tok')), false, 'unknown');
      });
    });

    describe('CVC sessions', () => {
      let card: CardRecord;
      before(async () => {
        card = cardRec(mA.id);
        await store.cards.insert(card);
      });

      it('round-trips every field; getLiveCvcSession is scoped by merchant and mode', async () => {
        const c = cvcRec(mA.id, card.token, {
          sessionId: uid('cvo'),
          retention: 'cache',
          sealed: { keyVersion: 2, blob: Buffer.concat([Buffer.alloc(4), randomBytes(36)]) },
          firstUsedAt: T0 + 7,
          createdAt: T0 + 3,
          expiresAt: T0 + 300_000,
        });
        const live = cvcRec(mA.id, card.token, { mode: 'live', retention: 'reusable' });
        await store.cvc.insert(c);
        await store.cvc.insert(live);
        const got = await store.cvc.getLive(mA.id, 'test', c.id, T0);
        assert.deepEqual(got, c);
        assertSealed(got.sealed, c.sealed, 'cvc');
        assert.deepEqual(await store.cvc.getLive(mA.id, 'live', live.id, T0), live);
        assert.equal(await store.cvc.getLive(mB.id, 'test', c.id, T0), null, 'another merchant');
        assert.equal(await store.cvc.getLive(mA.id, 'live', c.id, T0), null, 'the other mode');
        assert.equal(await store.cvc.getLive(mA.id, 'test', uid('cvc'), T0), null, 'unknown');
      });

      it('getLiveCvcSession never returns an expired one: gone at expiresAt, there a millisecond before', async () => {
        const c = cvcRec(mA.id, card.token, { expiresAt: T0 + 90_000 });
        await store.cvc.insert(c);
        assert.ok(await store.cvc.getLive(mA.id, 'test', c.id, c.expiresAt - 1));
        assert.equal(await store.cvc.getLive(mA.id, 'test', c.id, c.expiresAt), null);
        assert.equal(await store.cvc.getLive(mA.id, 'test', c.id, c.expiresAt + 1), null);
      });

      it("inserting with a sessionId replaces that session's earlier CVC session, and only that", async () => {
        const sid = uid('cvo');
        const first = cvcRec(mA.id, card.token, { sessionId: sid });
        const otherSession = cvcRec(mA.id, card.token, { sessionId: uid('cvo') });
        const cardLevel = cvcRec(mA.id, card.token);
        for (const x of [first, otherSession, cardLevel]) await store.cvc.insert(x);
        const second = cvcRec(mA.id, card.token, { sessionId: sid, createdAt: T0 + 1 });
        await store.cvc.insert(second);
        assert.equal(await store.cvc.getLive(mA.id, 'test', first.id, T0), null, 'the earlier one is gone');
        assert.deepEqual(await store.cvc.getLive(mA.id, 'test', second.id, T0), second);
        assert.ok(await store.cvc.getLive(mA.id, 'test', otherSession.id, T0), "another session's stays");
        assert.ok(await store.cvc.getLive(mA.id, 'test', cardLevel.id, T0), 'a card-level one stays');

        // Card-level ones (sessionId null) do not replace each other.
        const cardLevel2 = cvcRec(mA.id, card.token);
        await store.cvc.insert(cardLevel2);
        assert.ok(await store.cvc.getLive(mA.id, 'test', cardLevel.id, T0));
        assert.ok(await store.cvc.getLive(mA.id, 'test', cardLevel2.id, T0));
      });

      it("findUsableCvcSession prefers the session's own over a card-level one, even a newer one", async () => {
        const c = cardRec(mA.id);
        await store.cards.insert(c);
        const sid = uid('cvo');
        const own = cvcRec(mA.id, c.token, { sessionId: sid, createdAt: T0 });
        const cardLevel = cvcRec(mA.id, c.token, { createdAt: T0 + 10 });
        const foreign = cvcRec(mA.id, c.token, { sessionId: uid('cvo'), createdAt: T0 + 20 });
        await store.cvc.insert(cardLevel);
        await store.cvc.insert(own);
        await store.cvc.insert(foreign);
        assert.deepEqual(await store.cvc.findUsable(mA.id, c.token, sid, T0 + 30), own);
        // Another session never gets this session's CVC; it falls back to the card-level one.
        assert.deepEqual(await store.cvc.findUsable(mA.id, c.token, uid('cvo'), T0 + 30), cardLevel);
        assert.equal(await store.cvc.findUsable(mB.id, c.token, sid, T0 + 30), null, 'another merchant');
        assert.equal(await store.cvc.findUsable(mA.id, uid('tok'), sid, T0 + 30), null, 'another card');
      });

      it('findUsableCvcSession never returns an expired one (checked in the query)', async () => {
        const c = cardRec(mA.id);
        await store.cards.insert(c);
        const sid = uid('cvo');
        const own = cvcRec(mA.id, c.token, { sessionId: sid, expiresAt: T0 + 1_000 });
        const cardLevel = cvcRec(mA.id, c.token, { expiresAt: T0 + 2_000 });
        await store.cvc.insert(own);
        await store.cvc.insert(cardLevel);
        assert.equal((await store.cvc.findUsable(mA.id, c.token, sid, own.expiresAt - 1))?.id, own.id, 'a millisecond before: there');
        assert.equal((await store.cvc.findUsable(mA.id, c.token, sid, own.expiresAt))?.id, cardLevel.id, 'at expiresAt: the own one is gone');
        assert.equal((await store.cvc.findUsable(mA.id, c.token, sid, cardLevel.expiresAt - 1))?.id, cardLevel.id);
        assert.equal(await store.cvc.findUsable(mA.id, c.token, sid, cardLevel.expiresAt), null, 'both expired');
      });

      it('deleteCvcSession: true for a live one, false for an expired, unknown or foreign one', async () => {
        const live = cvcRec(mA.id, card.token);
        const expired = cvcRec(mA.id, card.token, { expiresAt: T0 });
        const other = cvcRec(mA.id, card.token);
        for (const x of [live, expired, other]) await store.cvc.insert(x);

        assert.equal(await store.cvc.delete(mB.id, 'test', other.id, T0), false, 'another merchant');
        assert.equal(await store.cvc.delete(mA.id, 'live', other.id, T0), false, 'the other mode');
        assert.ok(await store.cvc.getLive(mA.id, 'test', other.id, T0), 'a foreign delete leaves it');

        assert.equal(await store.cvc.delete(mA.id, 'test', live.id, T0), true);
        assert.equal(await store.cvc.getLive(mA.id, 'test', live.id, T0), null);
        assert.equal(await store.cvc.delete(mA.id, 'test', live.id, T0), false, 'already deleted');
        assert.equal(await store.cvc.delete(mA.id, 'test', expired.id, T0), false, 'expired');
        assert.equal(await store.cvc.delete(mA.id, 'test', uid('cvc'), T0), false, 'unknown');
      });

      it("deleteCvcSessionsOfSession removes that session's CVC sessions only", async () => {
        const sid = uid('cvo');
        const mine = cvcRec(mA.id, card.token, { sessionId: sid });
        const theirs = cvcRec(mA.id, card.token, { sessionId: uid('cvo') });
        const cardLevel = cvcRec(mA.id, card.token);
        for (const x of [mine, theirs, cardLevel]) await store.cvc.insert(x);
        assert.equal(await store.cvc.deleteOfSession(sid), 1);
        assert.equal(await store.cvc.getLive(mA.id, 'test', mine.id, T0), null);
        assert.ok(await store.cvc.getLive(mA.id, 'test', theirs.id, T0));
        assert.ok(await store.cvc.getLive(mA.id, 'test', cardLevel.id, T0));
        assert.equal(await store.cvc.deleteOfSession(sid), 0);
      });

      it('deleteExpiredCvcSessions respects the limit and leaves live ones', async () => {
        // Times far below T0: only this test's rows are expired at SWEEP_NOW.
        const expired = Array.from({ length: 5 }, (_, i) => cvcRec(mA.id, card.token, { createdAt: 500, expiresAt: 1_000 + i }));
        const atNow = cvcRec(mA.id, card.token, { createdAt: 500, expiresAt: SWEEP_NOW });
        const live = cvcRec(mA.id, card.token, { createdAt: 500, expiresAt: SWEEP_NOW + 1 });
        for (const x of [...expired, atNow, live]) await store.cvc.insert(x);
        assert.equal(await store.cvc.deleteExpired(SWEEP_NOW, 2), 2);
        assert.equal(await store.cvc.deleteExpired(SWEEP_NOW, 3), 3);
        assert.equal(await store.cvc.deleteExpired(SWEEP_NOW, 100), 1, 'one expiring exactly at now is expired');
        assert.equal(await store.cvc.deleteExpired(SWEEP_NOW, 100), 0);
        assert.deepEqual(await store.cvc.getLive(mA.id, 'test', live.id, SWEEP_NOW), live, 'the live one stays');
      });
    });

    describe('sessions', () => {
      it('round-trips every field (amount, metadata, reference, returnUrl set; booleans true)', async () => {
        const s = sessionRec(mA.id, {
          mode: 'live',
          operations: ['charge', 'collectCvv'],
          amount: { value: 5_000_000_000, currency: 'JPY' },
          reference: 'ref-é-✓',
          require3DS: true,
          requireCvv: true,
          maxAttempts: 7,
          cvvRetention: 'cache',
          form: 'custom',
          returnUrl: 'https://shop.example/r?x=1',
          metadata: { a: '1', b: 'two words', 'k-é': '✓' },
          seq: 4,
          attempts: { collectCvv: 1, threeDS: 2, charge: 3 },
          results: { collectCvv: { cvcSession: 'cvc_x', ok: true } },
          expiresAt: T0 + 3_600_000,
          createdAt: T0 - 1,
          updatedAt: T0 + 2,
        });
        await store.sessions.insert(s);
        assert.deepEqual(await store.sessions.get(mA.id, 'live', s.id), s);
        assert.deepEqual(await store.sessions.getById(s.id), s);
      });

      it('round-trips every field (amount, metadata, reference, returnUrl null; booleans false)', async () => {
        const s = sessionRec(mB.id, {
          amount: null,
          reference: null,
          require3DS: false,
          requireCvv: false,
          returnUrl: null,
          metadata: null,
          operations: ['collectCvv'],
          maxAttempts: 1,
          status: 'completed',
        });
        await store.sessions.insert(s);
        assert.deepEqual(await store.sessions.get(mB.id, 'test', s.id), s);
        assert.deepEqual(await store.sessions.getById(s.id), s);
      });

      it('getOperationContext: the session, its card, merchant settings of its mode, CVV status, latest 3DS and usable CVC session, in one read', async () => {
        const card = cardRec(mA.id, { holderSealed: sealed() });
        await store.cards.insert(card);
        const s = sessionRec(mA.id, { cardToken: card.token });
        await store.sessions.insert(s);
        let got = await store.sessions.getOperationContext(s.id, T0);
        assert.deepEqual(got?.session, s);
        assert.deepEqual(got?.card, await store.cards.get(mA.id, 'test', card.token));
        assertSealed(got?.card?.numberSealed, card.numberSealed, 'number');
        assertSealed(got?.card?.holderSealed, card.holderSealed!, 'holder');
        assert.deepEqual(got?.merchant, await store.merchants.get(mA.id, 'test'));
        assert.equal(got?.cvvStatus, null, 'never failed');
        assert.equal(got?.latestTds, null);
        assert.equal(got?.usableCvc, null);
        // Then each part appears as it is written.
        await store.cards.recordCvvFailure(mA.id, card.fingerprint, 3, T0);
        const cardLevel = cvcRec(mA.id, card.token, { createdAt: T0 + 1 });
        await store.cvc.insert(cardLevel);
        const older = {
          id: uid('tds'),
          merchantId: mA.id,
          sessionId: s.id,
          mode: 'test' as const,
          status: 'completed' as const,
          dsTransactionId: randomUUID(),
          version: '2.2.0',
          result: { status: 'N', eci: null, cavvSealed: null },
          createdAt: T0,
          expiresAt: T0 + 600_000,
          completedAt: T0,
        };
        const latest = { ...older, id: uid('tds'), status: 'challenge' as const, result: null, createdAt: T0 + 5, completedAt: null };
        await store.sessions.insertTds(older);
        await store.sessions.insertTds(latest);
        got = await store.sessions.getOperationContext(s.id, T0);
        assert.deepEqual(got?.cvvStatus, await store.cards.getCvvStatus(mA.id, card.fingerprint));
        assert.deepEqual(got?.latestTds, latest);
        assert.equal(got?.usableCvc?.id, cardLevel.id, "the card's CVC session, when the session has none of its own");
        const own = cvcRec(mA.id, card.token, { sessionId: s.id, createdAt: T0 });
        await store.cvc.insert(own);
        got = await store.sessions.getOperationContext(s.id, T0);
        assert.equal(got?.usableCvc?.id, own.id, "the session's own first, even an older one");
        assertSealed(got?.usableCvc?.sealed, own.sealed, 'cvc');
        assert.equal((await store.sessions.getOperationContext(s.id, own.expiresAt))?.usableCvc, null, 'expired ones are never served');
        // The card deleted: the session is still read, without it.
        await store.cards.delete(mA.id, 'test', card.token);
        const after = await store.sessions.getOperationContext(s.id, T0);
        assert.deepEqual(after?.session, s);
        assert.equal(after?.card, null);
        assert.equal(await store.sessions.getOperationContext(uid('cvo'), T0), null);
      });

      it('getCreateContext: the card of the merchant and mode and, for a key, its live record, in one read', async () => {
        const card = cardRec(mA.id);
        await store.cards.insert(card);
        const endpoint = 'test:POST /CvvOperations';
        const key = uid('idem');
        let got = await store.sessions.getCreateContext({ merchantId: mA.id, mode: 'test', cardToken: card.token, idempotency: { endpoint, key, now: T0 } });
        assert.deepEqual(got.card, await store.cards.get(mA.id, 'test', card.token));
        assert.equal(got.idempotency, null);
        assert.equal((await store.sessions.getCreateContext({ merchantId: mA.id, mode: 'live', cardToken: card.token })).card, null, 'another mode');
        assert.equal((await store.sessions.getCreateContext({ merchantId: mA.id, mode: 'test', cardToken: uid('tok') })).card, null);
        const resp = sealed();
        const s = sessionRec(mA.id, { cardToken: card.token });
        const rec = { endpoint, key, requestHash: 'h1', status: 201, responseSealed: resp, now: T0, expiresAt: T0 + 1000 };
        assert.equal(await store.sessions.insert(s, rec), true);
        got = await store.sessions.getCreateContext({ merchantId: mA.id, mode: 'test', cardToken: card.token, idempotency: { endpoint, key, now: T0 } });
        assert.equal(got.idempotency?.requestHash, 'h1');
        assert.equal(got.idempotency?.status, 201);
        assertSealed(got.idempotency?.responseSealed ?? undefined, resp, 'response');
        assert.equal(
          (await store.sessions.getCreateContext({ merchantId: mA.id, mode: 'test', cardToken: card.token, idempotency: { endpoint, key, now: T0 + 1000 } }))
            .idempotency,
          null,
          'expired ones are absent',
        );
        assert.equal(
          (
            await store.sessions.getCreateContext({
              merchantId: mA.id,
              mode: 'test',
              cardToken: card.token,
              idempotency: { endpoint: 'live:POST /CvvOperations', key, now: T0 },
            })
          ).idempotency,
          null,
          'scoped by endpoint',
        );
      });

      it('insertSession with a key: the session and the record in one transaction; a key held by another request writes nothing; an expired one is replaced', async () => {
        const endpoint = 'test:POST /CvvOperations';
        const key = uid('idem');
        const rec = (over: object = {}) => ({ endpoint, key, requestHash: 'h', status: 201, responseSealed: sealed(), now: T0, expiresAt: T0 + 1000, ...over });
        const first = sessionRec(mA.id);
        assert.equal(await store.sessions.insert(first, rec()), true);
        const second = sessionRec(mA.id);
        assert.equal(await store.sessions.insert(second, rec({ requestHash: 'other' })), false);
        assert.equal(await store.sessions.getById(second.id), null, 'nothing of the losing request was written');
        assert.deepEqual(await store.sessions.getById(first.id), first);
        const later = sessionRec(mA.id);
        assert.equal(
          await store.sessions.insert(later, rec({ requestHash: 'h2', now: T0 + 1000, expiresAt: T0 + 5000 })),
          true,
          'the expired record is replaced',
        );
        const got = await store.sessions.getCreateContext({
          merchantId: mA.id,
          mode: 'test',
          cardToken: later.cardToken,
          idempotency: { endpoint, key, now: T0 + 1000 },
        });
        assert.equal(got.idempotency?.requestHash, 'h2');
      });

      it('getSession is scoped by merchant and mode; getSessionById by id only', async () => {
        const s = await newSession();
        assert.equal(await store.sessions.get(mB.id, 'test', s.id), null, 'another merchant');
        assert.equal(await store.sessions.get(mA.id, 'live', s.id), null, 'the other mode');
        assert.equal(await store.sessions.get(mA.id, 'test', uid('cvo')), null);
        assert.equal(await store.sessions.getById(uid('cvo')), null);
        assert.equal((await store.sessions.getById(s.id))?.merchantId, mA.id);
      });

      it('commitOperation (the rotation): true once for the current jti; moves jti, increments seq and the attempt', async () => {
        const s = await newSession({ seq: 2, attempts: { collectCvv: 0, threeDS: 1, charge: 0 } });
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'j1', op: 'collectCvv', now: T0 + 5 }), true);
        const after1 = await mustSession(s.id);
        assert.equal(after1.jti, 'j1');
        assert.equal(after1.seq, 3);
        assert.deepEqual(after1.attempts, { collectCvv: 1, threeDS: 1, charge: 0 });
        assert.equal(after1.updatedAt, T0 + 5);
        assert.equal(after1.status, 'active');

        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'j2', op: 'collectCvv', now: T0 + 6 }), false, 'stale jti');
        assert.deepEqual(await mustSession(s.id), after1, 'a failed claim changes nothing');

        assert.equal(await claim({ id: s.id, jti: 'j1', newJti: 'j2', op: 'threeDS', now: T0 + 7 }), true);
        const after2 = await mustSession(s.id);
        assert.equal(after2.jti, 'j2');
        assert.equal(after2.seq, 4);
        assert.deepEqual(after2.attempts, { collectCvv: 1, threeDS: 2, charge: 0 }, 'only the claimed operation counts');
        assert.equal(await claim({ id: uid('cvo'), jti: 'j2', newJti: 'j3', op: 'charge', now: T0 }), false, 'unknown session');
      });

      it('commitOperation: a statement failing inside the unit undoes all of it, the rotation too, and the store goes on working', async () => {
        const s = await newSession();
        const before = await mustSession(s.id);
        const event: OutboxRecord = {
          id: uid('whd'),
          eventId: uid('evt'),
          endpointId: uid('we'),
          merchantId: s.merchantId,
          body: '{}',
          status: 'pending',
          attempts: 0,
          nextAttemptAt: T0,
          lockedUntil: 0,
          lastStatus: null,
          createdAt: T0,
          deliveredAt: null,
        };
        // The same outbox row twice: the second insert fails after the rotation and the first insert have run.
        await assert.rejects(
          store.sessions.commitOperation({
            id: s.id,
            jti: s.jti,
            newJti: 'never',
            op: 'collectCvv',
            countAttempt: true,
            now: T0 + 1,
            results: before.results,
            tokenHash: before.tokenHash,
            complete: false,
            replay: { jti: s.jti, hash: '', sealed: { keyVersion: 1, blob: Buffer.alloc(0) }, at: T0 + 1 },
            writes: [],
            events: [event, event],
          }),
        );
        assert.deepEqual(await mustSession(s.id), before, 'the token was not rotated');
        assert.deepEqual(
          (await store.webhooks.listOutbox(s.merchantId)).filter((o) => o.id === event.id),
          [],
          'no event kept',
        );
        for (let i = 0; i < 12; i++) assert.equal(await store.sessions.getById(s.id).then((x) => x?.jti), s.jti, 'the pooled connections still answer');
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'after-failure', op: 'collectCvv', now: T0 + 2 }), true);
      });

      it('commitOperation: false when the attempts are used up (per operation)', async () => {
        const s = await newSession({ maxAttempts: 2, attempts: { collectCvv: 1, threeDS: 0, charge: 0 } });
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'a1', op: 'collectCvv', now: T0 }), true, '1 < 2');
        const before2 = await mustSession(s.id);
        assert.equal(before2.attempts.collectCvv, 2);
        assert.equal(await claim({ id: s.id, jti: 'a1', newJti: 'a2', op: 'collectCvv', now: T0 }), false, '2 is not < 2');
        assert.deepEqual(await mustSession(s.id), before2);
        assert.equal(await claim({ id: s.id, jti: 'a1', newJti: 'a2', op: 'charge', now: T0 }), true, 'another operation still has attempts');
      });

      it('commitOperation: false for a completed, canceled or expired session', async () => {
        const completed = await newSession({ status: 'completed' });
        const canceled = await newSession({ status: 'canceled' });
        assert.equal(await claim({ id: completed.id, jti: completed.jti, newJti: 'x', op: 'charge', now: T0 }), false);
        assert.equal(await claim({ id: canceled.id, jti: canceled.jti, newJti: 'x', op: 'charge', now: T0 }), false);
        assert.equal((await mustSession(completed.id)).jti, completed.jti);

        const s = await newSession({ expiresAt: T0 + 1_000 });
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'x', op: 'charge', now: s.expiresAt }), false, 'at expiresAt');
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'x', op: 'charge', now: s.expiresAt + 1 }), false, 'after');
        assert.deepEqual(await mustSession(s.id), s);
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'x', op: 'charge', now: s.expiresAt - 1 }), true, 'a millisecond before');
      });

      it('20 simultaneous commitOperation calls with the same jti: exactly one wins', async () => {
        const s = await newSession({ maxAttempts: 100 });
        const newJtis = Array.from({ length: 20 }, (_, i) => `c${i}_${uid('j')}`);
        const results = await Promise.all(newJtis.map((newJti) => claim({ id: s.id, jti: s.jti, newJti, op: 'collectCvv', now: T0 + 1 })));
        assert.equal(results.filter(Boolean).length, 1, `winners: ${results.filter(Boolean).length}`);
        const winner = newJtis[results.indexOf(true)];
        const after1 = await mustSession(s.id);
        assert.equal(after1.jti, winner, "the winner's jti is current");
        assert.equal(after1.seq, s.seq + 1, 'seq moved once');
        assert.equal(after1.attempts.collectCvv, 1, 'one attempt counted');
      });

      it('20 simultaneous claims from a chain of rotations: each jti wins once', async () => {
        // Each round: 20 callers hold the current jti; exactly one moves it on.
        const s = await newSession({ maxAttempts: 100 });
        let current = s.jti;
        for (let round = 0; round < 3; round++) {
          const next = Array.from({ length: 20 }, (_, i) => `r${round}c${i}`);
          const results = await Promise.all(next.map((newJti) => claim({ id: s.id, jti: current, newJti, op: 'charge', now: T0 })));
          assert.equal(results.filter(Boolean).length, 1);
          current = next[results.indexOf(true)]!;
        }
        const end = await mustSession(s.id);
        assert.equal(end.jti, current);
        assert.equal(end.seq, 3);
        assert.equal(end.attempts.charge, 3);
      });

      it('finishOperation stores results and replay only under the produced jti; complete=true completes', async () => {
        const s = await newSession();
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'f1', op: 'collectCvv', now: T0 }), true);
        const replay = { jti: 'f1', hash: uid('rh'), sealed: { keyVersion: 1, blob: randomBytes(40) }, at: T0 + 1 };
        const results = { collectCvv: { cvcSession: 'cvc_1', at: 'x' } };
        assert.equal(
          await store.sessions.finishOperation({
            id: s.id,
            jti: s.jti,
            results,
            tokenHash: 'th-stale',
            now: T0 + 1,
            complete: true,
            replay,
          }),
          false,
          'not under the presented (now stale) jti',
        );
        const unchanged = await mustSession(s.id);
        assert.equal(unchanged.status, 'active');
        assert.equal(unchanged.replay, null);
        assert.deepEqual(unchanged.results, {});

        assert.equal(
          await store.sessions.finishOperation({
            id: s.id,
            jti: 'f1',
            results,
            tokenHash: 'th-1',
            now: T0 + 2,
            complete: false,
            replay,
          }),
          true,
        );
        const done1 = await mustSession(s.id);
        assert.equal(done1.status, 'active', 'complete=false keeps it active');
        assert.deepEqual(done1.results, results);
        assert.equal(done1.tokenHash, 'th-1');
        assert.equal(done1.updatedAt, T0 + 2);
        assert.equal(done1.jti, 'f1');
        assert.ok(done1.replay);
        assert.equal(done1.replay.jti, replay.jti);
        assert.equal(done1.replay.hash, replay.hash);
        assert.equal(done1.replay.at, replay.at);
        assertSealed(done1.replay.sealed, replay.sealed, 'replay');

        assert.equal(await claim({ id: s.id, jti: 'f1', newJti: 'f2', op: 'charge', now: T0 + 3 }), true);
        const results2 = { ...results, charge: { status: 'approved' } };
        const replay2 = { jti: 'f2', hash: uid('rh'), sealed: { keyVersion: 2, blob: randomBytes(40) }, at: T0 + 4 };
        assert.equal(
          await store.sessions.finishOperation({
            id: s.id,
            jti: 'f2',
            results: results2,
            tokenHash: 'th-2',
            now: T0 + 4,
            complete: true,
            replay: replay2,
          }),
          true,
        );
        const done2 = await mustSession(s.id);
        assert.equal(done2.status, 'completed');
        assert.deepEqual(done2.results, results2);
        assertSealed(done2.replay?.sealed, replay2.sealed, 'replay 2');
        assert.equal(await claim({ id: s.id, jti: 'f2', newJti: 'f3', op: 'charge', now: T0 + 5 }), false, 'completed sessions take no claims');
      });

      it('rotateToken is conditional on the jti and clears the replay', async () => {
        const s = await newSession();
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'r1', op: 'collectCvv', now: T0 }), true);
        const replay = { jti: 'r1', hash: 'h', sealed: sealed(), at: T0 };
        assert.equal(await store.sessions.finishOperation({ id: s.id, jti: 'r1', results: {}, tokenHash: 'th-r1', now: T0, complete: false, replay }), true);
        assert.ok((await mustSession(s.id)).replay);

        assert.equal(await store.sessions.rotateToken({ id: s.id, jti: s.jti, newJti: 'r2', tokenHash: 'th-r2', now: T0 + 1 }), false, 'stale jti');
        const before1 = await mustSession(s.id);
        assert.equal(before1.jti, 'r1');
        assert.ok(before1.replay, 'a failed rotation keeps the replay');

        assert.equal(await store.sessions.rotateToken({ id: s.id, jti: 'r1', newJti: 'r2', tokenHash: 'th-r2', now: T0 + 2 }), true);
        const rotated = await mustSession(s.id);
        assert.equal(rotated.jti, 'r2');
        assert.equal(rotated.seq, before1.seq + 1);
        assert.equal(rotated.tokenHash, 'th-r2');
        assert.equal(rotated.replay, null, 'the replay is cleared');
        assert.equal(rotated.updatedAt, T0 + 2);
        assert.deepEqual(rotated.attempts, before1.attempts, 'a reissue counts no attempt');
        assert.equal(await store.sessions.rotateToken({ id: s.id, jti: 'r1', newJti: 'r3', tokenHash: 'x', now: T0 + 3 }), false, 'the old jti is dead');
      });

      it('rotateToken refuses a canceled or expired session', async () => {
        const canceled = await newSession({ status: 'canceled' });
        assert.equal(await store.sessions.rotateToken({ id: canceled.id, jti: canceled.jti, newJti: 'n', tokenHash: 'h', now: T0 }), false);
        const s = await newSession({ expiresAt: T0 + 10 });
        assert.equal(await store.sessions.rotateToken({ id: s.id, jti: s.jti, newJti: 'n', tokenHash: 'h', now: s.expiresAt }), false);
        assert.deepEqual(await mustSession(s.id), s);
      });

      it('cancelSession: only from active and unexpired, scoped by merchant and mode', async () => {
        const s = await newSession();
        assert.equal(await store.sessions.cancel(mB.id, 'test', s.id, T0), false, 'another merchant');
        assert.equal(await store.sessions.cancel(mA.id, 'live', s.id, T0), false, 'the other mode');
        assert.equal((await mustSession(s.id)).status, 'active');
        assert.equal(await store.sessions.cancel(mA.id, 'test', s.id, T0 + 9), true);
        const c = await mustSession(s.id);
        assert.equal(c.status, 'canceled');
        assert.equal(c.updatedAt, T0 + 9);
        assert.equal(await store.sessions.cancel(mA.id, 'test', s.id, T0 + 10), false, 'already canceled');
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'z', op: 'charge', now: T0 + 11 }), false, 'a canceled session takes no claims');

        const completed = await newSession({ status: 'completed' });
        assert.equal(await store.sessions.cancel(mA.id, 'test', completed.id, T0), false);
        assert.equal((await mustSession(completed.id)).status, 'completed');

        const expiring = await newSession({ expiresAt: T0 + 100 });
        assert.equal(await store.sessions.cancel(mA.id, 'test', expiring.id, expiring.expiresAt), false, 'at expiresAt');
        assert.equal((await mustSession(expiring.id)).status, 'active');
        assert.equal(await store.sessions.cancel(mA.id, 'test', expiring.id, expiring.expiresAt - 1), true, 'a millisecond before');
        assert.equal(await store.sessions.cancel(mA.id, 'test', uid('cvo'), T0), false, 'unknown');
      });
    });

    describe('idempotency keys', () => {
      const idem = (over: Partial<{ merchantId: string; endpoint: string; key: string; requestHash: string; now: number; expiresAt: number }> = {}) => ({
        merchantId: mA.id,
        endpoint: 'POST /CvvOperations',
        key: uid('idem'),
        requestHash: 'hash-1',
        now: T0,
        expiresAt: T0 + 86_400_000,
        ...over,
      });

      it('reserve: null the first time, then the stored record; a different requestHash gets the stored one', async () => {
        const p = idem();
        assert.equal(await store.idempotency.reserve(p), null);
        assert.deepEqual(await store.idempotency.reserve(p), { requestHash: 'hash-1', status: null, responseSealed: null });
        assert.deepEqual(
          await store.idempotency.reserve({ ...p, requestHash: 'hash-2' }),
          { requestHash: 'hash-1', status: null, responseSealed: null },
          'the stored hash, for the caller to compare',
        );
      });

      it('keys are scoped by merchant and endpoint', async () => {
        const p = idem();
        assert.equal(await store.idempotency.reserve(p), null);
        assert.equal(await store.idempotency.reserve({ ...p, merchantId: mB.id }), null, 'another merchant');
        assert.equal(await store.idempotency.reserve({ ...p, endpoint: 'POST /Cards' }), null, 'another endpoint');
      });

      it('complete stores the status and the sealed response byte-exact', async () => {
        const p = idem();
        assert.equal(await store.idempotency.reserve(p), null);
        const response = { keyVersion: 1, blob: randomBytes(40) };
        await store.idempotency.complete({ merchantId: p.merchantId, endpoint: p.endpoint, key: p.key, status: 201, responseSealed: response });
        const got = await store.idempotency.reserve({ ...p, now: T0 + 1 });
        assert.ok(got);
        assert.equal(got.requestHash, 'hash-1');
        assert.equal(got.status, 201);
        assertSealed(got.responseSealed, response, 'response');
      });

      it('release frees a key only while it is in flight (status null)', async () => {
        const p = idem();
        const k = { merchantId: p.merchantId, endpoint: p.endpoint, key: p.key };
        assert.equal(await store.idempotency.reserve(p), null);
        await store.idempotency.release(k);
        assert.equal(await store.idempotency.reserve({ ...p, requestHash: 'hash-2' }), null, 'released: claimable again');
        await store.idempotency.complete({ ...k, status: 200, responseSealed: sealed() });
        await store.idempotency.release(k);
        const got = await store.idempotency.reserve(p);
        assert.ok(got, 'a completed key is not released');
        assert.equal(got.status, 200);
        assert.equal(got.requestHash, 'hash-2');
      });

      it('an expired key is replaced', async () => {
        const p = idem({ expiresAt: T0 + 1_000 });
        assert.equal(await store.idempotency.reserve(p), null);
        await store.idempotency.complete({ merchantId: p.merchantId, endpoint: p.endpoint, key: p.key, status: 201, responseSealed: sealed() });
        assert.equal((await store.idempotency.reserve({ ...p, now: p.expiresAt - 1 }))?.status, 201, 'a millisecond before: stored');
        assert.equal(
          await store.idempotency.reserve({ ...p, requestHash: 'hash-new', now: p.expiresAt, expiresAt: p.expiresAt + 1_000 }),
          null,
          'at expiresAt: replaced',
        );
        assert.deepEqual(await store.idempotency.reserve({ ...p, now: p.expiresAt + 1 }), { requestHash: 'hash-new', status: null, responseSealed: null });
      });

      it('20 simultaneous reservations of one key: exactly one gets null', async () => {
        const p = idem();
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => store.idempotency.reserve({ ...p, requestHash: `h${i}` })));
        const winners = got.filter((g) => g === null).length;
        assert.equal(winners, 1);
        const winnerHash = `h${got.indexOf(null)}`;
        for (const g of got) if (g) assert.equal(g.requestHash, winnerHash);
      });

      it('deleteExpiredIdempotencyKeys respects the limit and leaves live keys', async () => {
        // Times far below T0: only this test's keys are expired at SWEEP_NOW.
        const expired = Array.from({ length: 3 }, (_, i) => idem({ now: 100, expiresAt: 1_000 + i }));
        const atNow = idem({ now: 100, expiresAt: SWEEP_NOW });
        const live = idem({ now: 100, expiresAt: SWEEP_NOW + 1 });
        for (const x of [...expired, atNow, live]) assert.equal(await store.idempotency.reserve(x), null);
        assert.equal(await store.idempotency.deleteExpired(SWEEP_NOW, 2), 2);
        assert.equal(await store.idempotency.deleteExpired(SWEEP_NOW, 100), 2);
        assert.equal(await store.idempotency.deleteExpired(SWEEP_NOW, 100), 0);
        assert.deepEqual(
          await store.idempotency.reserve({ ...live, now: SWEEP_NOW }),
          { requestHash: 'hash-1', status: null, responseSealed: null },
          'the live key stays',
        );
      });
    });

    describe('CVC sessions: read-once, cache window, lookups', () => {
      let card: CardRecord;
      before(async () => {
        card = cardRec(mA.id);
        await store.cards.insert(card);
      });

      it('takeCvcSession returns the row and deletes it; a second take gets null', async () => {
        const c = cvcRec(mA.id, card.token, { sessionId: uid('cvo'), sealed: { keyVersion: 4, blob: randomBytes(48) }, firstUsedAt: T0 + 1 });
        const share = randomBytes(32);
        await store.cvc.putKeyShare(c.id, share, T0);
        await store.cvc.insert(c);
        const got = await store.cvc.take(c.id, T0 + 2);
        assert.deepEqual(got, { ...c, keyShare: share }, 'every field of the taken row, with the key share it took along');
        assert.equal(await store.cvc.getKeyShare(c.id), null, 'the key share is gone with the row');
        assertSealed(got.sealed, c.sealed, 'taken');
        assert.equal(await store.cvc.getLive(mA.id, 'test', c.id, T0 + 2), null, 'gone from storage');
        assert.equal(await store.cvc.getById(c.id, T0 + 2), null);
        assert.equal(await store.cvc.take(c.id, T0 + 3), null, 'read once');
        assert.equal(await store.cvc.take(uid('cvc'), T0), null, 'unknown');
      });

      it('takeCvcSession never returns an expired row: null at expiresAt, the row a millisecond before', async () => {
        const expired = cvcRec(mA.id, card.token, { expiresAt: T0 + 1_000 });
        const live = cvcRec(mA.id, card.token, { expiresAt: T0 + 1_000 });
        await store.cvc.insert(expired);
        await store.cvc.insert(live);
        assert.equal(await store.cvc.take(expired.id, expired.expiresAt), null, 'at expiresAt');
        assert.equal(await store.cvc.take(expired.id, expired.expiresAt + 1), null, 'after');
        assert.deepEqual(await store.cvc.take(live.id, live.expiresAt - 1), { ...live, keyShare: null });
      });

      it('key shares: stored apart, deleted with their CVC session by every deletion path', async () => {
        const mk = async (over: Partial<CvcSessionRecord> = {}) => {
          const c = cvcRec(mA.id, card.token, over);
          await store.cvc.putKeyShare(c.id, randomBytes(32), T0);
          await store.cvc.insert(c);
          assert.ok(await store.cvc.getKeyShare(c.id));
          return c;
        };
        const a = await mk();
        assert.equal(await store.cvc.delete(mA.id, 'test', a.id, T0), true);
        assert.equal(await store.cvc.getKeyShare(a.id), null, 'deleteCvcSession');
        const sid = uid('cvo');
        const b = await mk({ sessionId: sid });
        await store.cvc.deleteOfSession(sid);
        assert.equal(await store.cvc.getKeyShare(b.id), null, 'deleteCvcSessionsOfSession');
        const e = await mk({ expiresAt: 5_000 });
        await store.cvc.deleteExpired(5_000, 1000);
        assert.equal(await store.cvc.getKeyShare(e.id), null, 'deleteExpiredCvcSessions');
        const foreign = await mk();
        assert.equal(await store.cvc.delete(uid('mer'), 'test', foreign.id, T0), false);
        assert.ok(await store.cvc.getKeyShare(foreign.id), "another merchant's delete leaves the share alone");
      });

      it('deleteOrphanCvvKeyShares deletes shares one to two minutes old without a CVC session, and nothing else', async () => {
        const now = T0 + 10_000_000;
        const orphan = uid('cvc');
        const fresh = uid('cvc');
        const old = uid('cvc');
        await store.cvc.putKeyShare(orphan, randomBytes(32), now - 90_000);
        await store.cvc.putKeyShare(fresh, randomBytes(32), now - 30_000);
        await store.cvc.putKeyShare(old, randomBytes(32), now - 180_000);
        const kept = cvcRec(mA.id, card.token, { expiresAt: now + 60_000 });
        await store.cvc.putKeyShare(kept.id, randomBytes(32), now - 90_000);
        await store.cvc.insert(kept);
        assert.equal(await store.cvc.deleteOrphanKeyShares(now), 1);
        assert.equal(await store.cvc.getKeyShare(orphan), null, 'the orphan is gone');
        assert.ok(await store.cvc.getKeyShare(fresh), 'one being stored right now stays');
        assert.ok(await store.cvc.getKeyShare(old), 'outside the window (older ones were handled by earlier ticks)');
        assert.ok(await store.cvc.getKeyShare(kept.id), 'a share with its CVC session stays');
        assert.equal(await store.cvc.deleteOrphanKeyShares(now), 0);
      });

      it('20 simultaneous takes of one CVC session: exactly one gets it', async () => {
        const c = cvcRec(mA.id, card.token);
        await store.cvc.insert(c);
        const got = await Promise.all(Array.from({ length: 20 }, () => store.cvc.take(c.id, T0)));
        const winners = got.filter((g) => g !== null);
        assert.equal(winners.length, 1, `winners: ${winners.length}`);
        assert.deepEqual(winners[0], { ...c, keyShare: null });
        assert.equal(await store.cvc.getById(c.id, T0), null);
      });

      it('startCvcCacheWindow sets first_used_at once and pulls the expiry in to `until`', async () => {
        const c = cvcRec(mA.id, card.token, { retention: 'cache', expiresAt: T0 + 600_000 });
        await store.cvc.insert(c);
        await store.cvc.startCacheWindow(c.id, T0 + 5, T0 + 300_005);
        const started = await store.cvc.getById(c.id, T0 + 5);
        assert.ok(started);
        assert.equal(started.firstUsedAt, T0 + 5);
        assert.equal(started.expiresAt, T0 + 300_005, 'pulled in');
        assert.deepEqual({ ...started, firstUsedAt: null, expiresAt: c.expiresAt }, c, 'nothing else changes');

        await store.cvc.startCacheWindow(c.id, T0 + 10, T0 + 100);
        assert.deepEqual(await store.cvc.getById(c.id, T0 + 10), started, 'a second start changes nothing');
        await store.cvc.startCacheWindow(c.id, T0 + 20, T0 + 900_000);
        assert.deepEqual(await store.cvc.getById(c.id, T0 + 20), started, 'nor does a later, longer one');
        await store.cvc.startCacheWindow(uid('cvc'), T0, T0 + 1);
      });

      it('startCvcCacheWindow never extends the expiry', async () => {
        const c = cvcRec(mA.id, card.token, { retention: 'cache', expiresAt: T0 + 30_000 });
        await store.cvc.insert(c);
        await store.cvc.startCacheWindow(c.id, T0 + 1, T0 + 300_001);
        const got = await store.cvc.getById(c.id, T0 + 1);
        assert.equal(got?.firstUsedAt, T0 + 1, 'the window is started');
        assert.equal(got?.expiresAt, T0 + 30_000, 'the earlier expiry stays');
      });

      it('10 simultaneous starts of one cache window: one wins, whole', async () => {
        const c = cvcRec(mA.id, card.token, { retention: 'cache', expiresAt: T0 + 600_000 });
        await store.cvc.insert(c);
        await Promise.all(Array.from({ length: 10 }, (_, i) => store.cvc.startCacheWindow(c.id, T0 + i, T0 + 1_000 + i)));
        const got = await store.cvc.getById(c.id, T0);
        assert.ok(got && got.firstUsedAt !== null);
        const i = got.firstUsedAt - T0;
        assert.ok(i >= 0 && i < 10);
        assert.equal(got.expiresAt, T0 + 1_000 + i, 'first_used_at and the expiry come from the same call');
      });

      it('getCvcSessionById: by id only, live only', async () => {
        const c = cvcRec(mB.id, card.token, { mode: 'live', expiresAt: T0 + 1_000 });
        await store.cvc.insert(c);
        assert.deepEqual(await store.cvc.getById(c.id, T0), c);
        assert.deepEqual(await store.cvc.getById(c.id, c.expiresAt - 1), c);
        assert.equal(await store.cvc.getById(c.id, c.expiresAt), null, 'at expiresAt');
        assert.equal(await store.cvc.getById(uid('cvc'), T0), null, 'unknown');
      });

      it("findLiveCvcSessionOfCard: the card's newest live one, whichever session made it", async () => {
        const c = cardRec(mA.id);
        await store.cards.insert(c);
        assert.equal(await store.cvc.findLiveOfCard(mA.id, c.token, T0), null, 'none yet');
        const old = cvcRec(mA.id, c.token, { createdAt: T0, expiresAt: T0 + 10_000 });
        const ofSession = cvcRec(mA.id, c.token, { sessionId: uid('cvo'), createdAt: T0 + 10, expiresAt: T0 + 1_000 });
        const otherCard = cvcRec(mA.id, card.token, { createdAt: T0 + 20 });
        for (const x of [old, ofSession, otherCard]) await store.cvc.insert(x);
        assert.deepEqual(await store.cvc.findLiveOfCard(mA.id, c.token, T0 + 30), ofSession, 'the newest, made by a session');
        assert.deepEqual(await store.cvc.findLiveOfCard(mA.id, c.token, ofSession.expiresAt), old, 'the newest expired: the next one');
        assert.equal(await store.cvc.findLiveOfCard(mA.id, c.token, old.expiresAt), null, 'all expired');
        assert.equal(await store.cvc.findLiveOfCard(mB.id, c.token, T0 + 30), null, 'another merchant');
        assert.equal(await store.cvc.findLiveOfCard(mA.id, uid('tok'), T0 + 30), null, 'another card');
      });
    });

    describe('CVV status', () => {
      const fp = () => randomBytes(32).toString('hex');

      it('recordCvvFailure counts and blocks at the threshold; the status is returned', async () => {
        const f = fp();
        assert.equal(await store.cards.getCvvStatus(mA.id, f), null);
        assert.deepEqual(await store.cards.recordCvvFailure(mA.id, f, 3, T0 + 1), {
          merchantId: mA.id,
          fingerprint: f,
          failedAttempts: 1,
          blocked: false,
          updatedAt: T0 + 1,
        });
        assert.deepEqual(await store.cards.recordCvvFailure(mA.id, f, 3, T0 + 2), {
          merchantId: mA.id,
          fingerprint: f,
          failedAttempts: 2,
          blocked: false,
          updatedAt: T0 + 2,
        });
        const third = await store.cards.recordCvvFailure(mA.id, f, 3, T0 + 3);
        assert.deepEqual(third, { merchantId: mA.id, fingerprint: f, failedAttempts: 3, blocked: true, updatedAt: T0 + 3 }, 'blocked at the threshold');
        assert.deepEqual(await store.cards.getCvvStatus(mA.id, f), third);
        const fourth = await store.cards.recordCvvFailure(mA.id, f, 3, T0 + 4);
        assert.equal(fourth.failedAttempts, 4);
        assert.equal(fourth.blocked, true, 'stays blocked');
        assert.equal(await store.cards.getCvvStatus(mB.id, f), null, 'counted per merchant');
      });

      it('recordCvvFailure with threshold 1 blocks at the first failure; a lowered threshold blocks at once', async () => {
        const f = fp();
        assert.equal((await store.cards.recordCvvFailure(mA.id, f, 1, T0)).blocked, true);
        const g = fp();
        assert.equal((await store.cards.recordCvvFailure(mA.id, g, 5, T0)).blocked, false);
        assert.equal((await store.cards.recordCvvFailure(mA.id, g, 5, T0)).blocked, false);
        assert.equal((await store.cards.recordCvvFailure(mA.id, g, 2, T0)).blocked, true, '3 >= 2');
      });

      it('10 simultaneous failures count 10, and each caller gets its own count', async () => {
        const f = fp();
        const got = await Promise.all(Array.from({ length: 10 }, (_, i) => store.cards.recordCvvFailure(mA.id, f, 3, T0 + i)));
        const st = await store.cards.getCvvStatus(mA.id, f);
        assert.equal(st?.failedAttempts, 10);
        assert.equal(st?.blocked, true);
        assert.deepEqual(
          got.map((g) => g.failedAttempts).sort((a, b) => a - b),
          [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
          'the returned status is the one this failure produced (exactly one caller sees the threshold reached)',
        );
        for (const g of got) assert.equal(g.blocked, g.failedAttempts >= 3, `blocked matches the count ${g.failedAttempts}`);
      });

      it('resetCvvStatus: the count back to zero, unblocked; only that merchant and card number', async () => {
        const f = fp();
        for (let i = 0; i < 3; i++) await store.cards.recordCvvFailure(mA.id, f, 3, T0);
        await store.cards.recordCvvFailure(mB.id, f, 3, T0);
        const other = fp();
        await store.cards.recordCvvFailure(mA.id, other, 3, T0);
        await store.cards.resetCvvStatus(mA.id, f, T0 + 50);
        assert.deepEqual(await store.cards.getCvvStatus(mA.id, f), {
          merchantId: mA.id,
          fingerprint: f,
          failedAttempts: 0,
          blocked: false,
          updatedAt: T0 + 50,
        });
        assert.equal((await store.cards.getCvvStatus(mB.id, f))?.failedAttempts, 1, 'another merchant keeps its count');
        assert.equal((await store.cards.getCvvStatus(mA.id, other))?.failedAttempts, 1, 'another card number keeps its count');
        assert.equal((await store.cards.recordCvvFailure(mA.id, f, 3, T0 + 51)).failedAttempts, 1, 'counting starts over');

        const unknown = fp();
        await store.cards.resetCvvStatus(mA.id, unknown, T0);
        const st = await store.cards.getCvvStatus(mA.id, unknown);
        assert.ok(st === null || (st.failedAttempts === 0 && !st.blocked), 'resetting an unknown card number leaves it unblocked');
      });
    });

    describe('merchant settings', () => {
      it('updateMerchant changes the given fields only, sets updatedAt and returns the merchant', async () => {
        const m = merchantRec();
        await store.merchants.insert(m);
        const processor = { type: 'http', url: 'https://psp.example/v1/charges', sealed: randomBytes(30).toString('base64') };
        const a = await store.merchants.update(m.id, 'test', { processor, cvvBlockThreshold: 5 }, T0 + 10);
        const want1 = { ...m, processor, cvvBlockThreshold: 5, updatedAt: T0 + 10 };
        assert.deepEqual(a, want1);
        assert.deepEqual(await store.merchants.get(m.id, 'test'), want1);

        const b = await store.merchants.update(
          m.id,
          'test',
          {
            allowedOrigins: ['https://new.example', 'http://localhost:4000'],
            allowedProxyTargets: ['https://psp.example/v1/'],
            cvcSessionTtlSeconds: 3600,
          },
          T0 + 20,
        );
        const want2 = {
          ...want1,
          allowedOrigins: ['https://new.example', 'http://localhost:4000'],
          allowedProxyTargets: ['https://psp.example/v1/'],
          cvcSessionTtlSeconds: 3600,
          updatedAt: T0 + 20,
        };
        assert.deepEqual(b, want2);
        assert.ok((await store.merchants.listAllAllowedOrigins()).includes('http://localhost:4000'));

        assert.deepEqual(
          await store.merchants.update(m.id, 'test', { allowedOrigins: [] }, T0 + 30),
          { ...want2, allowedOrigins: [], updatedAt: T0 + 30 },
          'an empty list is a value',
        );
        assert.deepEqual(
          await store.merchants.update(m.id, 'test', {}, T0 + 40),
          { ...want2, allowedOrigins: [], updatedAt: T0 + 40 },
          'an empty patch only touches updatedAt',
        );
        assert.deepEqual(await store.merchants.get(mA.id, 'test'), mA, 'other merchants are untouched');
      });

      it('settings are per mode: a new merchant has the same in both; changing one mode never touches the other', async () => {
        const m = merchantRec({ allowedOrigins: ['https://both.example'], allowedProxyTargets: ['https://psp.example/'] });
        await store.merchants.insert(m);
        assert.deepEqual(await store.merchants.get(m.id, 'live'), { ...m, mode: 'live' });
        const processor = { type: 'http', url: 'https://evil.example/steal', sealed: 'x' };
        await store.merchants.update(
          m.id,
          'test',
          {
            processor,
            allowedOrigins: ['https://test-only.example'],
            allowedProxyTargets: ['https://evil.example/'],
            cvvBlockThreshold: 20,
            cvcSessionTtlSeconds: 3600,
          },
          T0 + 10,
        );
        assert.deepEqual(await store.merchants.get(m.id, 'live'), { ...m, mode: 'live' }, 'live settings untouched by a test-mode change');
        const t = await store.merchants.get(m.id, 'test');
        assert.deepEqual(t?.processor, processor);
        assert.deepEqual(t?.allowedOrigins, ['https://test-only.example']);
        assert.ok((await store.merchants.listAllAllowedOrigins()).includes('https://both.example'), "the live mode's origins still count for preflights");
        await store.merchants.update(m.id, 'live', { allowedOrigins: [] }, T0 + 20);
        assert.deepEqual((await store.merchants.get(m.id, 'test'))?.allowedOrigins, ['https://test-only.example'], 'and the other way round');
      });

      it('updateMerchant of an unknown merchant is null and creates nothing', async () => {
        const id = uid('mer');
        assert.equal(await store.merchants.update(id, 'test', { cvvBlockThreshold: 4 }, T0), null);
        assert.equal(await store.merchants.get(id, 'test'), null);
      });
    });

    describe('operation claims without an attempt', () => {
      it('commitOperation with countAttempt false moves the token without counting, even with the attempts used up', async () => {
        const s = await newSession({ maxAttempts: 2, seq: 3, attempts: { collectCvv: 0, threeDS: 2, charge: 0 } });
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'n1', op: 'threeDS', now: T0 }), false, 'a counted claim is refused: 2 is not < 2');
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'n1', op: 'threeDS', now: T0 + 1, countAttempt: false }), true);
        const claimed = await mustSession(s.id);
        assert.equal(claimed.jti, 'n1');
        assert.equal(claimed.seq, 4);
        assert.deepEqual(claimed.attempts, s.attempts, 'no attempt counted');
        assert.equal(claimed.updatedAt, T0 + 1);
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'n2', op: 'threeDS', now: T0 + 2, countAttempt: false }), false, 'still only the current jti');
      });

      it('commitOperation with countAttempt false still refuses a completed, canceled or expired session', async () => {
        for (const over of [{ status: 'completed' as const }, { status: 'canceled' as const }, { status: 'expired' as const }]) {
          const s = await newSession(over);
          assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'x', op: 'threeDS', now: T0, countAttempt: false }), false, over.status);
        }
        const s = await newSession({ expiresAt: T0 + 10 });
        assert.equal(await claim({ id: s.id, jti: s.jti, newJti: 'x', op: 'threeDS', now: s.expiresAt, countAttempt: false }), false, 'at expiresAt');
        assert.deepEqual(await mustSession(s.id), s);
      });
    });

    describe('session expiry', () => {
      // The only test calling sessions.listExpired: it acts on every session. Its sessions expire far below T0.
      it('listExpiredSessions and expireSession: only active, unowned sessions past expiry, each expired once even by concurrent sweepers', async () => {
        const due = await Promise.all(
          Array.from({ length: 31 }, (_, i) =>
            newSession({
              mode: i % 2 ? 'live' : 'test',
              createdAt: 100,
              updatedAt: 100,
              expiresAt: i === 30 ? SWEEP_NOW : 1_000 + i,
            }),
          ),
        );
        const dueIds = new Set(due.map((s) => s.id));
        // One with a replay, to see it cleared; one with a CVV, to see it deleted.
        assert.equal(await claim({ id: due[0]!.id, jti: due[0]!.jti, newJti: 'e1', op: 'collectCvv', now: 500 }), true);
        assert.equal(
          await store.sessions.finishOperation({
            id: due[0]!.id,
            jti: 'e1',
            results: {},
            tokenHash: 'th',
            now: 500,
            complete: false,
            replay: { jti: 'e1', hash: 'h', sealed: sealed(), at: 500 },
          }),
          true,
        );
        const cvc = cvcRec(mA.id, due[1]!.cardToken, { sessionId: due[1]!.id, mode: due[1]!.mode, expiresAt: T0 });
        await store.cvc.putKeyShare(cvc.id, randomBytes(32), T0);
        await store.cvc.insert(cvc);
        const live = await newSession({ createdAt: 100, expiresAt: SWEEP_NOW + 1 });
        const completed = await newSession({ status: 'completed', createdAt: 100, expiresAt: 1_000 });
        const canceled = await newSession({ status: 'canceled', createdAt: 100, expiresAt: 1_000 });

        const listed = await store.sessions.listExpired(SWEEP_NOW, 100);
        assert.deepEqual(new Set(listed.map((r) => r.id)), dueIds, 'exactly the active sessions past expiry');
        assert.equal((await store.sessions.listExpired(SWEEP_NOW, 10)).length, 10, 'the limit holds');
        const byId = new Map(due.map((s) => [s.id, s]));
        for (const r of listed) assert.deepEqual(r, { id: r.id, merchantId: byId.get(r.id)!.merchantId, mode: byId.get(r.id)!.mode });
        const endpointId = uid('whe');
        const event = (sid: string): OutboxRecord => ({
          id: `${uid('evt')}.${endpointId}`,
          eventId: uid('evt'),
          endpointId,
          merchantId: mA.id,
          body: JSON.stringify({ data: { session: sid } }),
          status: 'pending',
          // Due far in the future: the outbox tests' claims never see these rows.
          attempts: 0,
          nextAttemptAt: T0 * 2,
          lockedUntil: 0,
          lastStatus: null,
          createdAt: SWEEP_NOW,
          deliveredAt: null,
        });
        // Five sweepers at once, each preparing its own event: each session expires once, with one event.
        const won = await Promise.all(listed.flatMap((r) => Array.from({ length: 5 }, () => store.sessions.expire(r.id, SWEEP_NOW, [event(r.id)]))));
        assert.equal(won.filter(Boolean).length, listed.length, 'one win per session');
        const outbox = (await store.webhooks.listOutbox(mA.id)).filter((o) => o.endpointId === endpointId);
        assert.equal(outbox.length, listed.length, 'one event per expired session, none from the losers');
        for (const s of due) {
          const got = await mustSession(s.id);
          assert.equal(got.status, 'expired');
          assert.equal(got.updatedAt, SWEEP_NOW);
          assert.equal(got.replay, null, 'the replay is cleared');
        }
        assert.equal(await store.cvc.getById(cvc.id, 0), null, "the session's CVV is deleted with it");
        assert.equal(await store.cvc.getKeyShare(cvc.id), null);
        assert.equal((await mustSession(live.id)).status, 'active', 'one expiring after now stays active');
        assert.deepEqual(await mustSession(completed.id), completed, 'a completed one is not touched');
        assert.deepEqual(await mustSession(canceled.id), canceled, 'a canceled one is not touched');
        assert.deepEqual(await store.sessions.listExpired(SWEEP_NOW, 100), [], 'nothing is expired twice');
      });
    });

    describe('session history', () => {
      const entry = (s: SessionRecord, over: Partial<HistoryRecord> = {}): HistoryRecord => ({
        kind: 'history',
        id: uid('hst'),
        sessionId: s.id,
        merchantId: s.merchantId,
        mode: s.mode,
        type: 'operation',
        operation: 'collectCvv',
        outcome: 'collected',
        code: null,
        requestId: uid('req'),
        createdAt: T0,
        ...over,
      });

      it('is written with the session and with operations, oldest first, only for its merchant and mode, in pages', async () => {
        const s = sessionRec(mA.id);
        const created = entry(s, { type: 'created', operation: null, outcome: null, requestId: null, createdAt: T0 });
        assert.equal(await store.sessions.insert(s, undefined, [created]), true);
        const op = entry(s, { createdAt: T0 + 10 });
        assert.equal(await claimWith(s, [op]), true);
        const refused = entry(s, { type: 'refused', operation: 'POST /CvvOperations/threeDS', outcome: null, code: 'token_superseded', createdAt: T0 + 20 });
        await store.sessions.appendHistory([refused]);
        const all = await store.sessions.history(mA.id, 'test', s.id, { limit: 10 });
        assert.deepEqual(all, [created, op, refused]);
        assert.deepEqual(await store.sessions.history(mA.id, 'test', s.id, { limit: 2 }), [created, op]);
        assert.deepEqual(await store.sessions.history(mA.id, 'test', s.id, { limit: 2, after: op.id }), [refused]);
        assert.deepEqual(await store.sessions.history(mA.id, 'test', s.id, { limit: 2, after: uid('hst') }), [], 'an unknown cursor: an empty page');
        assert.deepEqual(await store.sessions.history(mB.id, 'test', s.id, { limit: 10 }), [], "another merchant's view");
        assert.deepEqual(await store.sessions.history(mA.id, 'live', s.id, { limit: 10 }), [], "the other mode's view");
      });

      it('an operation that loses its token writes no history', async () => {
        const s = sessionRec(mA.id);
        await store.sessions.insert(s);
        assert.equal(await claimWith({ ...s, jti: 'not-current' }, [entry(s)]), false);
        assert.deepEqual(await store.sessions.history(mA.id, 'test', s.id, { limit: 10 }), []);
      });

      it('goes with its session when the session is deleted after its retention', async () => {
        const s = sessionRec(mA.id, { status: 'completed', expiresAt: SWEEP_NOW - 1 });
        await store.sessions.insert(s, undefined, [entry(s, { type: 'created' })]);
        let n = 0;
        while ((await store.sessions.deleteEnded(SWEEP_NOW, 100)) > 0 && n++ < 100);
        assert.equal(await store.sessions.getById(s.id), null);
        assert.deepEqual(await store.sessions.history(mA.id, 'test', s.id, { limit: 10 }), []);
      });
    });

    describe('3-D Secure transactions', () => {
      const tdsRec = (over: Partial<TdsRecord> = {}): TdsRecord => ({
        id: uid('tds'),
        merchantId: mA.id,
        sessionId: uid('cvo'),
        mode: 'test',
        status: 'challenge',
        dsTransactionId: randomUUID(),
        version: '2.2.0',
        result: null,
        createdAt: T0,
        expiresAt: T0 + 600_000,
        completedAt: null,
        ...over,
      });

      it('inserts and gets a transaction with every field; unknown is null', async () => {
        const open = tdsRec();
        const done = tdsRec({
          mode: 'live',
          status: 'completed',
          result: { status: 'Y', eci: '05', cavvSealed: { keyVersion: 2, blob: randomBytes(44) } },
          completedAt: T0 + 9,
        });
        const noCavv = tdsRec({ status: 'completed', result: { status: 'N', eci: null, cavvSealed: null }, completedAt: T0 + 1 });
        for (const t of [open, done, noCavv]) await store.sessions.insertTds(t);
        assert.deepEqual(await store.sessions.getTds(open.id), open);
        const got = await store.sessions.getTds(done.id);
        assert.deepEqual(got, done);
        assertSealed(got.result!.cavvSealed, done.result!.cavvSealed!, 'cavv');
        assert.deepEqual(await store.sessions.getTds(noCavv.id), noCavv);
        assert.equal(await store.sessions.getTds(uid('tds')), null);
      });

      it('completeTds: challenge → completed once; a second completion changes nothing', async () => {
        const t = tdsRec();
        await store.sessions.insertTds(t);
        const result = { status: 'Y', eci: '05', cavvSealed: sealed(3) };
        assert.equal(await store.sessions.completeTds(t.id, result, T0 + 7), true);
        const got = await store.sessions.getTds(t.id);
        assert.deepEqual(got, { ...t, status: 'completed', result, completedAt: T0 + 7 });
        assert.equal(await store.sessions.completeTds(t.id, { status: 'N', eci: null, cavvSealed: null }, T0 + 8), false);
        assert.deepEqual(await store.sessions.getTds(t.id), got);
        assert.equal(await store.sessions.completeTds(uid('tds'), result, T0), false, 'unknown');
      });

      it('completeTds writes its events with the outcome, and only when it completes the challenge', async () => {
        const t = tdsRec();
        await store.sessions.insertTds(t);
        const event = (): EventWrite => {
          const id = uid('evt');
          return { kind: 'event', id, merchantId: mA.id, mode: 'test', type: 'threeds.completed', body: JSON.stringify({ id }), createdAt: T0 };
        };
        const first = event();
        assert.equal(await store.sessions.completeTds(t.id, { status: 'Y', eci: '05', cavvSealed: null }, T0 + 1, [first]), true);
        assert.ok(await store.webhooks.getEvent(mA.id, 'test', first.id), 'the event is written with the outcome');
        const late = event();
        assert.equal(await store.sessions.completeTds(t.id, { status: 'N', eci: null, cavvSealed: null }, T0 + 2, [late]), false);
        assert.equal(await store.webhooks.getEvent(mA.id, 'test', late.id), null, 'a completion that changed nothing writes no event');
      });

      it('10 simultaneous completions: exactly one wins, and its result is stored', async () => {
        const t = tdsRec();
        await store.sessions.insertTds(t);
        const results = Array.from({ length: 10 }, (_, i) => ({ status: i % 2 ? 'Y' : 'N', eci: `0${i}`, cavvSealed: null }));
        const won = await Promise.all(results.map((r, i) => store.sessions.completeTds(t.id, r, T0 + i)));
        assert.equal(won.filter(Boolean).length, 1);
        const i = won.indexOf(true);
        assert.deepEqual(await store.sessions.getTds(t.id), { ...t, status: 'completed', result: results[i], completedAt: T0 + i });
      });
    });

    /** A pending charge record of merchant A in test mode, keyed, before any outcome. */
    const chargeRec = (over: Partial<ChargeRecord> = {}): ChargeRecord => ({
      id: uid('ch'),
      merchantId: mA.id,
      sessionId: uid('cvo'),
      mode: 'test',
      idempotencyKey: uid('idem'),
      requestHash: uid('rh'),
      providerKey: `cvvops_${randomBytes(20).toString('hex')}`,
      processor: 'http',
      amount: { value: 1999, currency: 'EUR' },
      ...NO_OUTCOME,
      createdAt: T0,
      updatedAt: T0,
      ...over,
    });

    describe('charge ownership and CVV reservations', () => {
      /** A charge intent of a session (no Idempotency-Key), as the charge use case writes it. */
      const intent = (sessionId: string, over: Partial<ChargeRecord> = {}): ChargeRecord => {
        const id = uid('ch');
        return chargeRec({ id, sessionId, idempotencyKey: null, providerKey: id, processor: 'simulator', ...over });
      };
      const wrongCvv = {
        status: 'declined' as const,
        authorizationCode: null,
        declineCode: 'incorrect_cvc',
        cvvResult: 'N',
        avsResult: 'U',
        networkTransactionId: null,
      };
      const begin = (s: SessionRecord, c: ChargeRecord, cvv: { fingerprint: string; threshold: number } | null, newJti = uid('jti')) =>
        store.charges.begin({ claim: { id: s.id, jti: s.jti, newJti, now: T0 }, charge: c, cvv }).then((r) => r.status);

      it('deleteStaleCvvStatus: statuses untouched since before go; a blocked one and one a pending charge counts on stay', async () => {
        // Times far below every other test's (10, 20), so only these rows are old enough.
        const [fpA, fpB, fpC] = [0, 1, 2].map(() => randomBytes(32).toString('hex'));
        await store.cards.recordCvvFailure(mA.id, fpA!, 3, 10);
        await store.cards.recordCvvFailure(mA.id, fpB!, 1, 10); // blocked at the first failure
        await store.cards.recordCvvFailure(mA.id, fpC!, 3, 10);
        const s = await newSession();
        assert.equal(await begin(s, intent(s.id), { fingerprint: fpC!, threshold: 3 }), 'ok', 'a charge of fpC is pending');
        for (let i = 0; i < 1000 && (await store.cards.deleteStaleCvvStatus(20, 100)) === 100; i++);
        assert.equal(await store.cards.getCvvStatus(mA.id, fpA!), null, 'the stale one is gone');
        assert.equal((await store.cards.getCvvStatus(mA.id, fpB!))?.blocked, true, 'a block stays until it is lifted');
        assert.equal((await store.cards.getCvvStatus(mA.id, fpC!))?.failedAttempts, 1, 'the pending charge still counts on it');
      });

      it('beginCharge wins the token, counts the attempt, owns the session and stores the intent, in one unit', async () => {
        const s = await newSession();
        const c = intent(s.id);
        assert.equal(await begin(s, c, null, 'jti_charging'), 'ok');
        const got = await mustSession(s.id);
        assert.equal(got.jti, 'jti_charging');
        assert.equal(got.attempts.charge, 1);
        assert.deepEqual(got.chargeInFlight, { chargeId: c.id, since: T0 });
        assert.equal((await store.charges.get(c.id))?.status, 'pending');
        // While it owns the session nothing else changes it.
        assert.equal(await claim({ id: s.id, jti: 'jti_charging', newJti: uid('jti'), op: 'collectCvv', now: T0 }), false);
        assert.equal(await store.sessions.rotateToken({ id: s.id, jti: 'jti_charging', newJti: uid('jti'), tokenHash: 'x', now: T0 }), false);
        assert.equal(await store.sessions.cancel(mA.id, 'test', s.id, T0), false);
        assert.equal(await store.cvc.deleteOfSessionUnlessCharging(s.id), null);
        assert.equal(await begin({ ...got, jti: 'jti_charging' }, intent(s.id), null), 'lost', 'a second charge cannot own it');
        // The outcome recorded and the session freed by sessions.finishOperation.
        assert.deepEqual(await store.charges.recordOutcome(c.id, { ...wrongCvv, status: 'approved', declineCode: null, cvvResult: 'M' }, T0, 3), {
          recorded: true,
          cvvBlocked: false,
        });
        assert.equal(
          await store.sessions.finishOperation({
            id: s.id,
            jti: 'jti_charging',
            results: {},
            tokenHash: 'th',
            now: T0,
            complete: true,
            replay: { jti: s.jti, hash: 'h', sealed: sealed(), at: T0 },
          }),
          true,
        );
        assert.equal((await mustSession(s.id)).chargeInFlight, null);
      });

      it('nothing is written when the token is lost or the idempotency key is taken', async () => {
        const s = await newSession();
        assert.equal(await begin({ ...s, jti: 'not-current' }, intent(s.id), null), 'lost');
        const taken = intent(s.id, { idempotencyKey: uid('idem') });
        const other = await newSession();
        assert.equal(await begin(other, taken, null), 'ok');
        const c = intent(s.id, { idempotencyKey: taken.idempotencyKey });
        assert.equal(await begin(s, c, null), 'key_reused');
        const after = await mustSession(s.id);
        assert.equal(after.jti, s.jti, 'the token is untouched');
        assert.equal(after.attempts.charge, 0);
        assert.equal(after.chargeInFlight, null);
        assert.equal(await store.charges.get(c.id), null);
      });

      it('abortCharge undoes beginCharge: token, attempt, ownership, intent', async () => {
        const s = await newSession();
        const c = intent(s.id);
        assert.equal(await begin(s, c, { fingerprint: uid('fp'), threshold: 3 }, 'jti_won'), 'ok');
        assert.equal(await store.charges.abort({ id: s.id, jti: 'jti_won', oldJti: s.jti, chargeId: c.id, now: T0 }), true);
        const got = await mustSession(s.id);
        assert.equal(got.jti, s.jti);
        assert.equal(got.seq, s.seq);
        assert.equal(got.attempts.charge, 0);
        assert.equal(got.chargeInFlight, null);
        assert.equal(await store.charges.get(c.id), null);
        assert.equal(await store.charges.abort({ id: s.id, jti: 'jti_won', oldJti: s.jti, chargeId: c.id, now: T0 }), false, 'once');
      });

      it('20 simultaneous charges of one card number with CVVs, threshold 3: exactly 3 reserve, the rest are cvv_busy; 3 wrong CVVs block once', async () => {
        const fingerprint = uid('fp');
        const sessions = await Promise.all(Array.from({ length: 20 }, () => newSession()));
        const intents = sessions.map((s) => intent(s.id));
        const got = await Promise.all(sessions.map((s, i) => begin(s, intents[i]!, { fingerprint, threshold: 3 })));
        assert.equal(got.filter((r) => r === 'ok').length, 3, got.join(','));
        assert.equal(got.filter((r) => r === 'cvv_busy').length, 17);
        const won = intents.filter((_c, i) => got[i] === 'ok');
        const blocked = await Promise.all(won.map((c) => store.charges.recordOutcome(c.id, wrongCvv, T0, 3)));
        assert.deepEqual(
          blocked.map((b) => b.recorded),
          [true, true, true],
        );
        assert.equal(blocked.filter((b) => b.cvvBlocked).length, 1, 'exactly one outcome blocked the number');
        const st = await store.cards.getCvvStatus(mA.id, fingerprint);
        assert.equal(st?.failedAttempts, 3);
        assert.equal(st?.blocked, true);
        const late = sessions.find((_s, i) => got[i] !== 'ok')!;
        assert.equal(await begin(late, intent(late.id), { fingerprint, threshold: 3 }), 'cvv_blocked');
        assert.deepEqual(await store.charges.recordOutcome(won[0]!.id, wrongCvv, T0, 3), { recorded: false, cvvBlocked: false }, 'an outcome is recorded once');
      });

      it('recordOutcome writes its events with the outcome, ifBlocked ones only when it blocked, and none when it records nothing', async () => {
        const fingerprint = uid('fp');
        const sessions = await Promise.all(Array.from({ length: 2 }, () => newSession()));
        const intents = sessions.map((s) => intent(s.id));
        for (const [i, s] of sessions.entries()) assert.equal(await begin(s, intents[i]!, { fingerprint, threshold: 2 }), 'ok');
        const ev = (type: string): EventWrite => {
          const id = uid('evt');
          return { kind: 'event', id, merchantId: mA.id, mode: 'test', type, body: JSON.stringify({ id }), createdAt: T0 };
        };
        const written = async (e: EventWrite) => (await store.webhooks.getEvent(mA.id, 'test', (e as { id: string }).id)) !== null;
        const first = { events: [ev('charge.failed')], ifBlocked: [ev('cvv.blocked')] };
        assert.deepEqual(await store.charges.recordOutcome(intents[0]!.id, wrongCvv, T0, 2, first), { recorded: true, cvvBlocked: false });
        assert.equal(await written(first.events[0]!), true, "the outcome's event");
        assert.equal(await written(first.ifBlocked[0]!), false, 'no cvv.blocked: this outcome did not block');
        const second = { events: [ev('charge.failed')], ifBlocked: [ev('cvv.blocked')] };
        assert.deepEqual(await store.charges.recordOutcome(intents[1]!.id, wrongCvv, T0, 2, second), { recorded: true, cvvBlocked: true });
        assert.equal(await written(second.events[0]!), true);
        assert.equal(await written(second.ifBlocked[0]!), true, 'cvv.blocked with the outcome that blocked');
        const again = { events: [ev('charge.failed')], ifBlocked: [] };
        assert.deepEqual(await store.charges.recordOutcome(intents[1]!.id, wrongCvv, T0, 2, again), { recorded: false, cvvBlocked: false });
        assert.equal(await written(again.events[0]!), false, 'an outcome recorded already writes no event');
      });

      it('a match resets the count; an error outcome frees the reservation without counting; charges without a CVV reserve nothing', async () => {
        const fingerprint = uid('fp');
        const cvv = { fingerprint, threshold: 2 };
        const [a, b, c, d] = await Promise.all([newSession(), newSession(), newSession(), newSession()]);
        const ca = intent(a.id);
        assert.equal(await begin(a, ca, cvv), 'ok');
        await store.charges.recordOutcome(ca.id, wrongCvv, T0, 2);
        const cb = intent(b.id);
        assert.equal(await begin(b, cb, cvv), 'ok');
        assert.equal(await begin(c, intent(c.id), cvv), 'cvv_busy', 'one failure + one in flight = the threshold');
        assert.equal(await begin(d, intent(d.id), null, 'jti_no_cvv'), 'ok', 'a charge without a CVV tests none');
        await store.charges.recordOutcome(
          cb.id,
          { status: 'error', authorizationCode: null, declineCode: null, cvvResult: 'U', avsResult: 'U', networkTransactionId: null },
          T0,
          2,
        );
        assert.equal((await store.cards.getCvvStatus(mA.id, fingerprint))?.failedAttempts, 1, 'an error counts nothing');
        const cc = intent(c.id);
        assert.equal(await begin(c, cc, cvv), 'ok', 'the reservation was freed');
        await store.charges.recordOutcome(
          cc.id,
          { status: 'approved', authorizationCode: '1', declineCode: null, cvvResult: 'M', avsResult: 'U', networkTransactionId: null },
          T0,
          2,
        );
        assert.equal((await store.cards.getCvvStatus(mA.id, fingerprint))?.failedAttempts, 0, 'a match resets');
      });

      it('settleChargeLock frees the session with the outcome, only for the charge that owns it; deleteCvcSessionUnlessCharging respects ownership', async () => {
        const s = await newSession();
        const c = intent(s.id);
        await store.cvc.insert(cvcRec(mA.id, s.cardToken, { sessionId: s.id }));
        const cardLevel = cvcRec(mA.id, s.cardToken);
        await store.cvc.insert(cardLevel);
        assert.equal(await begin(s, c, null), 'ok');
        assert.equal(await store.cvc.deleteUnlessCharging(mA.id, 'test', cardLevel.id, T0), 'charging', 'a card-level CVV of a card being charged stays');
        const p = { id: s.id, newJti: 'jti_settled', tokenHash: 'th2', results: { charge: { status: 'approved' } }, complete: true, now: T0 + 5 };
        assert.equal(await store.charges.settleLock({ ...p, chargeId: uid('ch') }), false, 'another charge id');
        assert.equal(await store.charges.settleLock({ ...p, chargeId: c.id }), true);
        const got = await mustSession(s.id);
        assert.equal(got.status, 'completed');
        assert.equal(got.jti, 'jti_settled');
        assert.deepEqual(got.results, { charge: { status: 'approved' } });
        assert.equal(got.chargeInFlight, null);
        assert.equal(await store.charges.settleLock({ ...p, chargeId: c.id }), false, 'once');
        assert.equal(await store.cvc.deleteUnlessCharging(mA.id, 'test', cardLevel.id, T0), 'deleted');
        assert.equal(await store.cvc.deleteUnlessCharging(mA.id, 'test', cardLevel.id, T0), 'gone');
        assert.equal(await store.cvc.deleteOfSessionUnlessCharging(s.id), 1);
      });

      it("getOperationContext with a charge key: the id of the charge holding that key in the session's merchant and mode, in the same read", async () => {
        const s = await newSession({ expiresAt: T0 + 900_000 });
        const key = uid('idem');
        assert.equal((await store.sessions.getOperationContext(s.id, T0, key))?.keyedChargeId, null, 'unused key');
        const other = await newSession({ expiresAt: T0 + 900_000 });
        const c = intent(other.id, { idempotencyKey: key });
        assert.equal((await store.charges.begin({ claim: { id: other.id, jti: other.jti, newJti: uid('jti'), now: T0 }, charge: c, cvv: null })).status, 'ok');
        const got = await store.sessions.getOperationContext(s.id, T0, key);
        assert.equal(got?.keyedChargeId, c.id, "a key is the merchant's, whichever session used it");
        assert.deepEqual(got?.session, await store.sessions.getById(s.id));
        assert.equal((await store.sessions.getOperationContext(s.id, T0))?.keyedChargeId, null, 'no key asked');
        assert.equal((await store.sessions.getOperationContext(s.id, T0, uid('idem')))?.keyedChargeId, null);
      });

      // The only test calling charges.listLocks: it acts on every session. Its locks are taken far below T0.
      it('listChargeLocks: sessions owned by a charge since before a time, oldest first, up to the limit', async () => {
        const mine = [];
        for (const at of [1_500, 1_000, 1_200]) {
          const s = await newSession({ expiresAt: T0 + 900_000 });
          const c = intent(s.id);
          assert.equal((await store.charges.begin({ claim: { id: s.id, jti: s.jti, newJti: uid('jti'), now: at }, charge: c, cvv: null })).status, 'ok');
          mine.push({ sessionId: s.id, chargeId: c.id, since: at, merchantId: mA.id, mode: 'test' as const });
        }
        const sorted = [...mine].sort((x, y) => x.since - y.since);
        assert.deepEqual(await store.charges.listLocks(SWEEP_NOW, 100), sorted);
        assert.deepEqual(await store.charges.listLocks(SWEEP_NOW, 2), sorted.slice(0, 2));
        assert.deepEqual(await store.charges.listLocks(1_200, 100), sorted.slice(0, 1), 'strictly before');
      });
    });

    describe('charges', () => {
      const outcome = {
        status: 'approved' as const,
        authorizationCode: '831000',
        declineCode: null,
        cvvResult: 'M',
        avsResult: 'U',
        networkTransactionId: 'nt_1',
      };
      /** A charge's intent, stored the only way there is: by a charge winning a session of its own (charges.begin). */
      const intentFor = async (c: ChargeRecord): Promise<boolean> => {
        const sess = await newSession({ merchantId: c.merchantId, mode: c.mode });
        return (await store.charges.begin({ claim: { id: sess.id, jti: sess.jti, newJti: uid('jti'), now: T0 }, charge: c, cvv: null })).status === 'ok';
      };
      const finish = async (id: string, o: Parameters<Store['charges']['recordOutcome']>[1], now: number): Promise<boolean> =>
        (await store.charges.recordOutcome(id, o, now, 3)).recorded;

      it('beginCharge stores the intent with every field; getCharge of an unknown one is null', async () => {
        const c = chargeRec({ amount: { value: 5_000_000_000, currency: 'JPY' }, mode: 'live', createdAt: T0 + 1, updatedAt: T0 + 2 });
        assert.equal(await intentFor(c), true);
        assert.deepEqual(await store.charges.get(c.id), c);
        const noKey = chargeRec({ idempotencyKey: null });
        assert.equal(await intentFor(noKey), true);
        assert.deepEqual(await store.charges.get(noKey.id), noKey);
        assert.equal(await store.charges.get(uid('ch')), null);
      });

      it('beginCharge: key_reused for a second intent with the same merchant, mode and key; keys are scoped', async () => {
        const c = chargeRec();
        assert.equal(await intentFor(c), true);
        const dup = chargeRec({ idempotencyKey: c.idempotencyKey, sessionId: c.sessionId });
        assert.equal(await intentFor(dup), false);
        assert.equal(await store.charges.get(dup.id), null, 'the second intent is not stored');
        assert.deepEqual(await store.charges.get(c.id), c, 'the first is untouched');
        assert.equal(await intentFor(chargeRec({ idempotencyKey: c.idempotencyKey, mode: 'live' })), true, 'the other mode');
        assert.equal(await intentFor(chargeRec({ idempotencyKey: c.idempotencyKey, merchantId: mB.id })), true, 'another merchant');
        const sid = uid('cvo');
        assert.equal(await intentFor(chargeRec({ idempotencyKey: null, sessionId: sid })), true);
        assert.equal(await intentFor(chargeRec({ idempotencyKey: null, sessionId: sid })), true, 'intents without a key never collide');
      });

      it('10 simultaneous intents with one key: exactly one is stored', async () => {
        const key = uid('idem');
        const intents = Array.from({ length: 10 }, () => chargeRec({ idempotencyKey: key }));
        const ok = await Promise.all(intents.map((c) => intentFor(c)));
        assert.equal(ok.filter(Boolean).length, 1);
        const winner = intents[ok.indexOf(true)]!;
        assert.deepEqual(await store.charges.findByIdempotencyKey(mA.id, 'test', key), winner);
      });

      it('findChargeByIdempotencyKey is scoped by merchant and mode', async () => {
        const c = chargeRec();
        await intentFor(c);
        assert.deepEqual(await store.charges.findByIdempotencyKey(mA.id, 'test', c.idempotencyKey!), c);
        assert.equal(await store.charges.findByIdempotencyKey(mB.id, 'test', c.idempotencyKey!), null, 'another merchant');
        assert.equal(await store.charges.findByIdempotencyKey(mA.id, 'live', c.idempotencyKey!), null, 'the other mode');
        assert.equal(await store.charges.findByIdempotencyKey(mA.id, 'test', uid('idem')), null, 'unknown');
      });

      it('recordChargeOutcome: only from pending, once', async () => {
        const c = chargeRec();
        await intentFor(c);
        assert.equal(await finish(c.id, outcome, T0 + 5), true);
        const done = await store.charges.get(c.id);
        assert.deepEqual(done, { ...c, ...outcome, updatedAt: T0 + 5 });
        assert.equal(await finish(c.id, { ...outcome, status: 'declined', authorizationCode: null, declineCode: 'do_not_honor' }, T0 + 6), false);
        assert.deepEqual(await store.charges.get(c.id), done, 'a finished charge keeps its outcome');
        assert.equal(await finish(uid('ch'), outcome, T0), false, 'unknown');

        const declined = chargeRec();
        await intentFor(declined);
        const d = {
          status: 'declined' as const,
          authorizationCode: null,
          declineCode: 'incorrect_cvc',
          cvvResult: 'N',
          avsResult: null,
          networkTransactionId: null,
        };
        assert.equal(await finish(declined.id, d, T0 + 1), true);
        assert.deepEqual(await store.charges.get(declined.id), { ...declined, ...d, updatedAt: T0 + 1 });
      });

      it('10 simultaneous finishes: exactly one outcome is stored', async () => {
        const c = chargeRec();
        await intentFor(c);
        const outcomes = Array.from({ length: 10 }, (_, i) => ({ ...outcome, authorizationCode: `a${i}` }));
        const ok = await Promise.all(outcomes.map((o, i) => finish(c.id, o, T0 + i)));
        assert.equal(ok.filter(Boolean).length, 1);
        const i = ok.indexOf(true);
        assert.deepEqual(await store.charges.get(c.id), { ...c, ...outcomes[i], updatedAt: T0 + i });
      });

      it('setChargeResponse stores the sealed response byte-exact', async () => {
        const c = chargeRec();
        await intentFor(c);
        await finish(c.id, outcome, T0 + 1);
        const s1 = { keyVersion: 7, blob: Buffer.concat([Buffer.alloc(3), randomBytes(60)]) };
        await store.charges.setResponse(c.id, s1);
        const got = await store.charges.get(c.id);
        assertSealed(got!.responseSealed, s1, 'response');
        assert.deepEqual(got, { ...c, ...outcome, updatedAt: T0 + 1, responseSealed: s1 });
        assertSealed((await store.charges.findByIdempotencyKey(mA.id, 'test', c.idempotencyKey!))!.responseSealed, s1, 'by key');
      });
    });

    describe('webhook endpoints', () => {
      const endpointRec = (over: Partial<WebhookEndpointRecord> = {}): WebhookEndpointRecord => ({
        id: uid('whe'),
        merchantId: mA.id,
        mode: 'test',
        url: 'https://hooks.example/cvvops',
        events: ['charge.succeeded', 'charge.failed'],
        secretSealed: sealed(),
        createdAt: T0,
        ...over,
      });

      it('inserts, gets (by id) and lists (by merchant and mode, oldest first) endpoints with every field', async () => {
        const merchantId = uid('mer');
        const a = endpointRec({ merchantId, createdAt: T0 + 2, secretSealed: { keyVersion: 3, blob: Buffer.concat([Buffer.alloc(2), randomBytes(30)]) } });
        const b = endpointRec({ merchantId, createdAt: T0 + 1, events: [], url: 'https://other.example/h?x=1' });
        const live = endpointRec({ merchantId, mode: 'live' });
        const other = endpointRec();
        for (const e of [a, b, live, other]) await store.webhooks.insertEndpoint(e);
        const got = await store.webhooks.getEndpoint(a.id);
        assert.deepEqual(got, a);
        assertSealed(got.secretSealed, a.secretSealed, 'secret');
        assert.deepEqual(await store.webhooks.listEndpoints(merchantId, 'test'), [b, a]);
        assert.deepEqual(await store.webhooks.listEndpoints(merchantId, 'live'), [live]);
        assert.deepEqual(await store.webhooks.listEndpoints(uid('mer'), 'test'), []);
        assert.equal(await store.webhooks.getEndpoint(uid('whe')), null);
        await assert.rejects(store.webhooks.insertEndpoint({ ...a, url: 'https://dup.example' }), 'an id is unique');
      });

      it('deleteWebhookEndpoint is scoped by merchant and mode', async () => {
        const e = endpointRec();
        await store.webhooks.insertEndpoint(e);
        assert.equal(await store.webhooks.deleteEndpoint(mB.id, 'test', e.id), false, 'another merchant');
        assert.equal(await store.webhooks.deleteEndpoint(mA.id, 'live', e.id), false, 'the other mode');
        assert.deepEqual(await store.webhooks.getEndpoint(e.id), e);
        assert.equal(await store.webhooks.deleteEndpoint(mA.id, 'test', e.id), true);
        assert.equal(await store.webhooks.getEndpoint(e.id), null);
        assert.ok(!(await store.webhooks.listEndpoints(mA.id, 'test')).some((x) => x.id === e.id));
        assert.equal(await store.webhooks.deleteEndpoint(mA.id, 'test', e.id), false, 'twice');
      });
    });

    describe('webhook outbox', () => {
      /*
       * webhooks.claimDue acts on every row. Each claiming test works in its
       * own window of times far below T0, windows descending in test order,
       * so rows an earlier test left behind are never due in a later one;
       * every other outbox row is due only at T0 * 2.
       */
      const FAR = T0 * 2;
      const outboxRec = (over: Partial<OutboxRecord> = {}): OutboxRecord => ({
        id: uid('out'),
        eventId: uid('evt'),
        endpointId: uid('whe'),
        merchantId: mA.id,
        body: JSON.stringify({ id: 'evt', type: 'charge.succeeded' }),
        status: 'pending',
        attempts: 0,
        nextAttemptAt: FAR,
        lockedUntil: 0,
        lastStatus: null,
        createdAt: T0,
        deliveredAt: null,
        ...over,
      });
      const settleAll = async (rows: OutboxRecord[], now: number) => {
        for (const r of rows) await store.webhooks.settle(r.id, { status: 'delivered', attempts: 1, nextAttemptAt: now, lastStatus: 200, now });
      };
      const ids = (rows: OutboxRecord[]) => rows.map((r) => r.id).sort();

      it('enqueueWebhooks and listOutbox: every field, by merchant, oldest first', async () => {
        const merchantId = uid('mer');
        const a = outboxRec({ merchantId, createdAt: T0 + 2, body: '{"é":"✓","n":1}' });
        const b = outboxRec({
          merchantId,
          createdAt: T0 + 1,
          status: 'delivered',
          attempts: 3,
          lockedUntil: 0,
          lastStatus: 204,
          deliveredAt: T0 + 50,
          nextAttemptAt: T0 + 40,
        });
        const other = outboxRec();
        await store.webhooks.enqueue([]);
        await store.webhooks.enqueue([a, b, other]);
        assert.deepEqual(await store.webhooks.listOutbox(merchantId), [b, a]);
        assert.deepEqual(await store.webhooks.listOutbox(uid('mer')), []);
      });

      it('claimDueWebhooks claims only due, unlocked, pending rows, and locks them', async () => {
        const W = 900_000;
        const merchantId = uid('mer');
        const rec = (over: Partial<OutboxRecord>) => outboxRec({ merchantId, createdAt: W - 1_000, ...over });
        const due1 = rec({ nextAttemptAt: W - 100 });
        const dueNow = rec({ nextAttemptAt: W, attempts: 2, lastStatus: 503 });
        const lockExpired = rec({ nextAttemptAt: W - 100, lockedUntil: W });
        const notYet = rec({ nextAttemptAt: W + 1 });
        const locked = rec({ nextAttemptAt: W - 100, lockedUntil: W + 5 });
        const delivered = rec({ nextAttemptAt: W - 100, status: 'delivered', deliveredAt: W - 500 });
        const failed = rec({ nextAttemptAt: W - 100, status: 'failed', attempts: 20 });
        const all = [due1, dueNow, lockExpired, notYet, locked, delivered, failed];
        await store.webhooks.enqueue(all);
        try {
          const first = await store.webhooks.claimDue(W, 30_000, 100);
          assert.deepEqual(ids(first), ids([due1, dueNow, lockExpired]));
          for (const r of first) {
            const orig = all.find((x) => x.id === r.id)!;
            assert.deepEqual(r, { ...orig, lockedUntil: W + 30_000 }, 'the claimed row, with its lock');
          }
          assert.deepEqual(await store.webhooks.claimDue(W, 30_000, 100), [], 'claimed rows are locked');
          assert.deepEqual(ids(await store.webhooks.claimDue(W + 10, 30_000, 100)), ids([notYet, locked]), 'rows become due, locks run out');
          assert.deepEqual(await store.webhooks.claimDue(W + 29_999, 30_000, 100), [], 'a millisecond before the locks run out');
          assert.deepEqual(
            ids(await store.webhooks.claimDue(W + 30_000, 30_000, 100)),
            ids([due1, dueNow, lockExpired]),
            'a lock that ran out: claimable again',
          );
          const byList = new Map((await store.webhooks.listOutbox(merchantId)).map((r) => [r.id, r]));
          assert.deepEqual(byList.get(delivered.id), delivered, 'a delivered row is never claimed');
          assert.deepEqual(byList.get(failed.id), failed, 'a failed row is never claimed');
          assert.equal(byList.get(due1.id)!.lockedUntil, W + 60_000);
        } finally {
          await settleAll(
            all.filter((r) => r.status === 'pending'),
            W + 40_000,
          );
        }
      });

      it('claimDueWebhooks respects the limit', async () => {
        const W = 800_000;
        const rows = Array.from({ length: 5 }, (_, i) => outboxRec({ nextAttemptAt: W - 10 + i }));
        await store.webhooks.enqueue(rows);
        try {
          const a = await store.webhooks.claimDue(W, 10_000, 2);
          assert.equal(a.length, 2);
          const b = await store.webhooks.claimDue(W, 10_000, 2);
          assert.equal(b.length, 2);
          const c = await store.webhooks.claimDue(W, 10_000, 2);
          assert.equal(c.length, 1);
          assert.deepEqual([...ids(a), ...ids(b), ...ids(c)].sort(), ids(rows));
        } finally {
          await settleAll(rows, W + 20_000);
        }
      });

      it('settleWebhook records the outcome and unlocks; pending rows come back when due, settled ones never', async () => {
        const W = 700_000;
        const r = outboxRec({ nextAttemptAt: W });
        await store.webhooks.enqueue([r]);
        try {
          assert.deepEqual(ids(await store.webhooks.claimDue(W, 1_000, 10)), [r.id]);
          await store.webhooks.settle(r.id, { status: 'pending', attempts: 1, nextAttemptAt: W + 5_000, lastStatus: 500, now: W + 1 });
          const retry = (await store.webhooks.listOutbox(r.merchantId)).find((x) => x.id === r.id);
          assert.deepEqual(retry, { ...r, attempts: 1, nextAttemptAt: W + 5_000, lastStatus: 500, lockedUntil: 0 }, 'unlocked, with the retry time');
          assert.deepEqual(await store.webhooks.claimDue(W + 4_999, 1_000, 10), [], 'not before its retry time');
          const again = await store.webhooks.claimDue(W + 5_000, 1_000, 10);
          assert.deepEqual(again, [{ ...retry, lockedUntil: W + 6_000 }]);

          await store.webhooks.settle(r.id, { status: 'pending', attempts: 2, nextAttemptAt: W + 6_000, lastStatus: null, now: W + 5_001 });
          assert.equal((await store.webhooks.listOutbox(r.merchantId)).find((x) => x.id === r.id)?.lastStatus, null, 'a transport failure has no status');

          await store.webhooks.claimDue(W + 6_000, 1_000, 10);
          await store.webhooks.settle(r.id, { status: 'delivered', attempts: 3, nextAttemptAt: W + 6_000, lastStatus: 200, now: W + 6_010 });
          const delivered = (await store.webhooks.listOutbox(r.merchantId)).find((x) => x.id === r.id);
          assert.deepEqual(delivered, {
            ...r,
            status: 'delivered',
            attempts: 3,
            nextAttemptAt: W + 6_000,
            lastStatus: 200,
            lockedUntil: 0,
            deliveredAt: W + 6_010,
          });
          assert.deepEqual(await store.webhooks.claimDue(W + 50_000, 1_000, 10), [], 'a delivered row is never claimed again');

          const f = outboxRec({ nextAttemptAt: W + 100 });
          await store.webhooks.enqueue([f]);
          await store.webhooks.settle(f.id, { status: 'failed', attempts: 20, nextAttemptAt: W + 100, lastStatus: 410, now: W + 100 });
          const failed = (await store.webhooks.listOutbox(f.merchantId)).find((x) => x.id === f.id);
          assert.deepEqual(failed, { ...f, status: 'failed', attempts: 20, lastStatus: 410, lockedUntil: 0, deliveredAt: null });
          assert.deepEqual(await store.webhooks.claimDue(W + 50_000, 1_000, 10), [], 'a failed row is never claimed');
        } finally {
          await settleAll([r], W + 60_000);
        }
      });

      it('5 concurrent claimers over 50 due rows never get the same row', async () => {
        const W = 600_000;
        const rows = Array.from({ length: 50 }, (_, i) => outboxRec({ nextAttemptAt: W - 50 + i, createdAt: W - 100 }));
        await store.webhooks.enqueue(rows);
        try {
          const claims = await Promise.all(Array.from({ length: 5 }, () => store.webhooks.claimDue(W, 60_000, 10)));
          const got = claims.flat().map((r) => r.id);
          assert.equal(new Set(got).size, got.length, `a row was claimed twice (${got.length} claims, ${new Set(got).size} rows)`);
          for (const c of claims) assert.ok(c.length <= 10, `the limit holds (${c.length} claimed)`);
          const rest = await store.webhooks.claimDue(W, 60_000, 100);
          const all = [...got, ...rest.map((r) => r.id)];
          assert.equal(new Set(all).size, all.length, 'nor by a later claimer');
          assert.deepEqual(all.sort(), ids(rows), 'every due row claimed once');
          assert.deepEqual(await store.webhooks.claimDue(W + 59_999, 60_000, 100), []);
        } finally {
          await settleAll(rows, W + 70_000);
        }
      });
    });
  });
}

/** Opens a store and applies the migrations, closing it again if they fail. */
export async function openMigrated(url: string): Promise<KyselyStore> {
  const store = await KyselyStore.open(url);
  try {
    await store.migrate();
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
}
