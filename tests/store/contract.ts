import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Sealed } from '../../server/domain/keyring.js';
import type {
  ApiKeyRecord, CardRecord, CvcSessionRecord, MerchantRecord, SessionRecord, SigningKeyRecord, Store,
} from '../../server/store/store.js';

/**
 * The storage contract: what every Store implementation must do, tested
 * through the Store interface only. A runner calls `storeContract` with a
 * factory returning a fresh, migrated store.
 *
 * Tests share one store and keep apart by unique ids. The few operations that
 * act on every row (sweeps of expired rows, signing-key retirement) use times
 * far below every other test's (T0), so they only ever see their own rows.
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
    id: uid('mer'), name: 'Shop', allowedOrigins: ['https://shop.example'], allowedProxyTargets: [],
    processor: { type: 'simulator' }, cvvBlockThreshold: 3, cvcSessionTtlSeconds: 90, createdAt: T0, updatedAt: T0, ...over,
  };
}

function cardRec(merchantId: string, over: Partial<CardRecord> = {}): CardRecord {
  return {
    token: uid('tok'), merchantId, mode: 'test', brand: 'visa', last4: '1018', bin: '400000', expMonth: 12, expYear: 2030,
    fingerprint: randomBytes(32).toString('hex'), numberSealed: sealed(), holderSealed: null, createdAt: T0, ...over,
  };
}

function cvcRec(merchantId: string, cardToken: string, over: Partial<CvcSessionRecord> = {}): CvcSessionRecord {
  return {
    id: uid('cvc'), merchantId, mode: 'test', cardToken, sessionId: null, sealed: sealed(), retention: 'single_use',
    expiresAt: T0 + 90_000, firstUsedAt: null, createdAt: T0, ...over,
  };
}

function sessionRec(merchantId: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: uid('cvo'), merchantId, mode: 'test', cardToken: uid('tok'), operations: ['collectCvv', 'threeDS', 'charge'],
    amount: { value: 1999, currency: 'EUR' }, reference: 'order-1234', require3DS: true, requireCvv: false, maxAttempts: 3,
    cvvRetention: 'single_use', form: 'hosted', returnUrl: 'https://shop.example/return', metadata: { cart: 'c_77' },
    status: 'active', jti: uid('jti'), seq: 0, tokenHash: uid('th'), attempts: { collectCvv: 0, threeDS: 0, charge: 0 },
    results: {}, replay: null, expiresAt: T0 + 900_000, createdAt: T0, updatedAt: T0, ...over,
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
      await store.insertMerchant(mA);
      await store.insertMerchant(mB);
    });
    after(async () => {
      await store?.close();
    });

    async function newSession(over: Partial<SessionRecord> = {}): Promise<SessionRecord> {
      const s = sessionRec(mA.id, over);
      await store.insertSession(s);
      return s;
    }
    const mustSession = async (id: string): Promise<SessionRecord> => {
      const s = await store.getSessionById(id);
      assert.ok(s, `session ${id} exists`);
      return s;
    };

    describe('lifecycle and meta', () => {
      it('migrate is idempotent and keeps the data', async () => {
        const n = uid('meta');
        await store.putMetaIfAbsent(n, 'kept');
        await store.migrate();
        await store.migrate();
        await store.ping();
        assert.equal(await store.getMeta(n), 'kept');
        assert.deepEqual(await store.getMerchant(mA.id), mA);
      });

      it('reports its engine', () => {
        assert.ok(store.engine === 'sqlite' || store.engine === 'postgres');
      });

      it('getMeta is null for an unknown name; putMetaIfAbsent keeps the first value', async () => {
        const n = uid('meta');
        assert.equal(await store.getMeta(n), null);
        assert.equal(await store.putMetaIfAbsent(n, 'first'), 'first');
        assert.equal(await store.putMetaIfAbsent(n, 'second'), 'first', 'the second put returns the stored value');
        assert.equal(await store.getMeta(n), 'first');
      });

      it('concurrent putMetaIfAbsent calls agree on one value', async () => {
        const n = uid('meta');
        const got = await Promise.all(Array.from({ length: 10 }, (_, i) => store.putMetaIfAbsent(n, `v${i}`)));
        const stored = await store.getMeta(n);
        assert.ok(stored !== null && /^v\d$/.test(stored));
        for (const g of got) assert.equal(g, stored);
      });
    });

    describe('merchants and API keys', () => {
      it('inserts and gets a merchant with every field; unknown is null', async () => {
        const m = merchantRec({
          allowedOrigins: ['https://a.example', 'http://localhost:3000'], allowedProxyTargets: ['https://psp.example'],
          processor: { type: 'http', url: 'https://psp.example/charge', nested: { n: 1, ok: true } },
          cvvBlockThreshold: 5, cvcSessionTtlSeconds: 300, createdAt: T0 - 5, updatedAt: T0 + 5,
        });
        await store.insertMerchant(m);
        assert.deepEqual(await store.getMerchant(m.id), m);
        assert.equal(await store.getMerchant(uid('mer')), null);
      });

      it('refuses a second merchant with the same id', async () => {
        const m = merchantRec();
        await store.insertMerchant(m);
        await assert.rejects(store.insertMerchant({ ...m, name: 'Other' }));
        assert.equal((await store.getMerchant(m.id))?.name, 'Shop');
      });

      it('listAllAllowedOrigins has every merchant\'s origins, each once', async () => {
        const shared = `https://${uid('shared').toLowerCase().replace(/_/g, '-')}.example`;
        const only1 = `https://${uid('one').toLowerCase().replace(/_/g, '-')}.example`;
        const only2 = `http://localhost:${3000 + Math.floor(Math.random() * 1000)}`;
        await store.insertMerchant(merchantRec({ allowedOrigins: [shared, only1] }));
        await store.insertMerchant(merchantRec({ allowedOrigins: [only2, shared] }));
        await store.insertMerchant(merchantRec({ allowedOrigins: [] }));
        const all = await store.listAllAllowedOrigins();
        assert.ok(all.includes(only1) && all.includes(only2) && all.includes(mB.allowedOrigins[0]!));
        assert.equal(all.filter((o) => o === shared).length, 1, 'an origin two merchants allow is listed once');
        assert.equal(new Set(all).size, all.length, 'no duplicates');
      });

      it('inserts an API key and finds it by its hash only', async () => {
        const live: ApiKeyRecord = {
          id: uid('key'), merchantId: mA.id, mode: 'live', hash: randomBytes(32).toString('hex'), suffix: 'aB_9',
          createdAt: T0, revokedAt: null,
        };
        const revoked: ApiKeyRecord = {
          id: uid('key'), merchantId: mB.id, mode: 'test', hash: randomBytes(32).toString('hex'), suffix: 'zz-1',
          createdAt: T0 - 10, revokedAt: T0 + 10,
        };
        await store.insertApiKey(live);
        await store.insertApiKey(revoked);
        assert.deepEqual(await store.findApiKeyByHash(live.hash), live);
        assert.deepEqual(await store.findApiKeyByHash(revoked.hash), revoked);
        assert.equal(await store.findApiKeyByHash(randomBytes(32).toString('hex')), null);
        assert.equal(await store.findApiKeyByHash(live.hash.toUpperCase()), null, 'the hash is compared exactly');
      });

      it('refuses a second API key with the same hash', async () => {
        const k: ApiKeyRecord = {
          id: uid('key'), merchantId: mA.id, mode: 'test', hash: randomBytes(32).toString('hex'), suffix: 'abcd', createdAt: T0, revokedAt: null,
        };
        await store.insertApiKey(k);
        await assert.rejects(store.insertApiKey({ ...k, id: uid('key'), merchantId: mB.id }));
        assert.equal((await store.findApiKeyByHash(k.hash))?.merchantId, mA.id);
      });
    });

    describe('signing keys', () => {
      // The only test touching signing keys: retirement acts on every key.
      it('lists newest activated first, retires all but one, deletes only those retired before a time', async () => {
        const key = (activatedAt: number, retiredAt: number | null = null): SigningKeyRecord => ({
          kid: uid('kid'), alg: 'EdDSA', publicJwk: JSON.stringify({ kty: 'OKP', crv: 'Ed25519', x: randomBytes(32).toString('base64url') }),
          privateSealed: sealed(1), createdAt: activatedAt - 1, activatedAt, retiredAt,
        });
        const old = key(T0 - 10_000, T0 - 5_000);
        const k1 = key(T0 - 3_000);
        const k2 = key(T0 - 2_000);
        const k3 = key(T0 - 1_000);
        k3.privateSealed = sealed(2);
        // Inserted out of order: the order comes from activatedAt.
        for (const k of [k2, old, k3, k1]) await store.insertSigningKey(k);
        await assert.rejects(store.insertSigningKey({ ...k1, alg: 'ES256' }), 'a kid is unique');

        const mine = new Set([old.kid, k1.kid, k2.kid, k3.kid]);
        const listed = (await store.listSigningKeys()).filter((k) => mine.has(k.kid));
        assert.deepEqual(listed, [k3, k2, k1, old]);
        assertSealed(listed[0]!.privateSealed, k3.privateSealed, 'private key');

        await store.retireSigningKeysExcept(k3.kid, T0);
        const byKid = new Map((await store.listSigningKeys()).map((k) => [k.kid, k]));
        assert.equal(byKid.get(k3.kid)!.retiredAt, null, 'the kept key stays active');
        assert.equal(byKid.get(k1.kid)!.retiredAt, T0);
        assert.equal(byKid.get(k2.kid)!.retiredAt, T0);
        assert.equal(byKid.get(old.kid)!.retiredAt, T0 - 5_000, 'an already retired key keeps its retirement time');

        assert.equal(await store.deleteSigningKeysRetiredBefore(T0 - 5_000), 0, 'retired exactly at t is not before t');
        assert.equal(await store.deleteSigningKeysRetiredBefore(T0), 1);
        assert.deepEqual((await store.listSigningKeys()).map((k) => k.kid).filter((k) => mine.has(k)), [k3.kid, k2.kid, k1.kid]);
        assert.equal(await store.deleteSigningKeysRetiredBefore(T0 + 1), 2);
        assert.equal(await store.deleteSigningKeysRetiredBefore(Number.MAX_SAFE_INTEGER), 0, 'the active key is never deleted');
        assert.deepEqual((await store.listSigningKeys()).map((k) => k.kid).filter((k) => mine.has(k)), [k3.kid]);
      });
    });

    describe('cards', () => {
      it('inserts and gets a card with every field, sealed blobs byte-exact', async () => {
        const plain = cardRec(mA.id);
        const full = cardRec(mA.id, {
          mode: 'live', brand: 'amex', last4: '0005', bin: '378282', expMonth: 1, expYear: 2099,
          numberSealed: { keyVersion: 3, blob: Buffer.concat([Buffer.from([0, 0, 255]), randomBytes(37)]) },
          holderSealed: sealed(1), createdAt: T0 + 123,
        });
        await store.insertCard(plain);
        await store.insertCard(full);
        assert.deepEqual(await store.getCard(mA.id, 'test', plain.token), plain);
        const got = await store.getCard(mA.id, 'live', full.token);
        assert.deepEqual(got, full);
        assertSealed(got!.numberSealed, full.numberSealed, 'number');
        assertSealed(got!.holderSealed, full.holderSealed!, 'holder');
      });

      it('gets a card only for its merchant and mode', async () => {
        const c = cardRec(mA.id);
        await store.insertCard(c);
        assert.equal(await store.getCard(mB.id, 'test', c.token), null, 'another merchant');
        assert.equal(await store.getCard(mA.id, 'live', c.token), null, 'the other mode');
        assert.equal(await store.getCard(mA.id, 'test', uid('tok')), null, 'unknown');
      });

      it('deleteCard deletes the card and its CVC sessions, only for its merchant and mode', async () => {
        const c = cardRec(mA.id);
        const other = cardRec(mA.id);
        await store.insertCard(c);
        await store.insertCard(other);
        const cvc1 = cvcRec(mA.id, c.token);
        const cvc2 = cvcRec(mA.id, c.token, { sessionId: uid('cvo') });
        const otherCvc = cvcRec(mA.id, other.token);
        for (const x of [cvc1, cvc2, otherCvc]) await store.insertCvcSession(x);

        assert.equal(await store.deleteCard(mB.id, 'test', c.token), false, 'another merchant cannot delete it');
        assert.equal(await store.deleteCard(mA.id, 'live', c.token), false, 'nor the other mode');
        assert.ok(await store.getCard(mA.id, 'test', c.token));
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', cvc1.id, T0));

        assert.equal(await store.deleteCard(mA.id, 'test', c.token), true);
        assert.equal(await store.getCard(mA.id, 'test', c.token), null);
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', cvc1.id, T0), null, "the card's CVC session is gone");
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', cvc2.id, T0), null, "the card's session CVC is gone");
        assert.equal(await store.findUsableCvcSession(mA.id, c.token, cvc2.sessionId!, T0), null);
        assert.ok(await store.getCard(mA.id, 'test', other.token), 'another card stays');
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', otherCvc.id, T0), "another card's CVC session stays");

        assert.equal(await store.deleteCard(mA.id, 'test', c.token), false, 'a second delete finds nothing');
        assert.equal(await store.deleteCard(mA.id, 'test', uid('tok')), false, 'unknown');
      });
    });

    describe('CVC sessions', () => {
      let card: CardRecord;
      before(async () => {
        card = cardRec(mA.id);
        await store.insertCard(card);
      });

      it('round-trips every field; getLiveCvcSession is scoped by merchant and mode', async () => {
        const c = cvcRec(mA.id, card.token, {
          sessionId: uid('cvo'), retention: 'cache', sealed: { keyVersion: 2, blob: Buffer.concat([Buffer.alloc(4), randomBytes(36)]) },
          firstUsedAt: T0 + 7, createdAt: T0 + 3, expiresAt: T0 + 300_000,
        });
        const live = cvcRec(mA.id, card.token, { mode: 'live', retention: 'reusable' });
        await store.insertCvcSession(c);
        await store.insertCvcSession(live);
        const got = await store.getLiveCvcSession(mA.id, 'test', c.id, T0);
        assert.deepEqual(got, c);
        assertSealed(got!.sealed, c.sealed, 'cvc');
        assert.deepEqual(await store.getLiveCvcSession(mA.id, 'live', live.id, T0), live);
        assert.equal(await store.getLiveCvcSession(mB.id, 'test', c.id, T0), null, 'another merchant');
        assert.equal(await store.getLiveCvcSession(mA.id, 'live', c.id, T0), null, 'the other mode');
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', uid('cvc'), T0), null, 'unknown');
      });

      it('getLiveCvcSession never returns an expired one: gone at expiresAt, there a millisecond before', async () => {
        const c = cvcRec(mA.id, card.token, { expiresAt: T0 + 90_000 });
        await store.insertCvcSession(c);
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', c.id, c.expiresAt - 1));
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', c.id, c.expiresAt), null);
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', c.id, c.expiresAt + 1), null);
      });

      it("inserting with a sessionId replaces that session's earlier CVC session, and only that", async () => {
        const sid = uid('cvo');
        const first = cvcRec(mA.id, card.token, { sessionId: sid });
        const otherSession = cvcRec(mA.id, card.token, { sessionId: uid('cvo') });
        const cardLevel = cvcRec(mA.id, card.token);
        for (const x of [first, otherSession, cardLevel]) await store.insertCvcSession(x);
        const second = cvcRec(mA.id, card.token, { sessionId: sid, createdAt: T0 + 1 });
        await store.insertCvcSession(second);
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', first.id, T0), null, 'the earlier one is gone');
        assert.deepEqual(await store.getLiveCvcSession(mA.id, 'test', second.id, T0), second);
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', otherSession.id, T0), "another session's stays");
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', cardLevel.id, T0), 'a card-level one stays');

        // Card-level ones (sessionId null) do not replace each other.
        const cardLevel2 = cvcRec(mA.id, card.token);
        await store.insertCvcSession(cardLevel2);
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', cardLevel.id, T0));
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', cardLevel2.id, T0));
      });

      it("findUsableCvcSession prefers the session's own over a card-level one, even a newer one", async () => {
        const c = cardRec(mA.id);
        await store.insertCard(c);
        const sid = uid('cvo');
        const own = cvcRec(mA.id, c.token, { sessionId: sid, createdAt: T0 });
        const cardLevel = cvcRec(mA.id, c.token, { createdAt: T0 + 10 });
        const foreign = cvcRec(mA.id, c.token, { sessionId: uid('cvo'), createdAt: T0 + 20 });
        await store.insertCvcSession(cardLevel);
        await store.insertCvcSession(own);
        await store.insertCvcSession(foreign);
        assert.deepEqual(await store.findUsableCvcSession(mA.id, c.token, sid, T0 + 30), own);
        // Another session never gets this session's CVC; it falls back to the card-level one.
        assert.deepEqual(await store.findUsableCvcSession(mA.id, c.token, uid('cvo'), T0 + 30), cardLevel);
        assert.equal(await store.findUsableCvcSession(mB.id, c.token, sid, T0 + 30), null, 'another merchant');
        assert.equal(await store.findUsableCvcSession(mA.id, uid('tok'), sid, T0 + 30), null, 'another card');
      });

      it('findUsableCvcSession never returns an expired one (checked in the query)', async () => {
        const c = cardRec(mA.id);
        await store.insertCard(c);
        const sid = uid('cvo');
        const own = cvcRec(mA.id, c.token, { sessionId: sid, expiresAt: T0 + 1_000 });
        const cardLevel = cvcRec(mA.id, c.token, { expiresAt: T0 + 2_000 });
        await store.insertCvcSession(own);
        await store.insertCvcSession(cardLevel);
        assert.equal((await store.findUsableCvcSession(mA.id, c.token, sid, own.expiresAt - 1))?.id, own.id, 'a millisecond before: there');
        assert.equal((await store.findUsableCvcSession(mA.id, c.token, sid, own.expiresAt))?.id, cardLevel.id, 'at expiresAt: the own one is gone');
        assert.equal((await store.findUsableCvcSession(mA.id, c.token, sid, cardLevel.expiresAt - 1))?.id, cardLevel.id);
        assert.equal(await store.findUsableCvcSession(mA.id, c.token, sid, cardLevel.expiresAt), null, 'both expired');
      });

      it('deleteCvcSession: true for a live one, false for an expired, unknown or foreign one', async () => {
        const live = cvcRec(mA.id, card.token);
        const expired = cvcRec(mA.id, card.token, { expiresAt: T0 });
        const other = cvcRec(mA.id, card.token);
        for (const x of [live, expired, other]) await store.insertCvcSession(x);

        assert.equal(await store.deleteCvcSession(mB.id, 'test', other.id, T0), false, 'another merchant');
        assert.equal(await store.deleteCvcSession(mA.id, 'live', other.id, T0), false, 'the other mode');
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', other.id, T0), 'a foreign delete leaves it');

        assert.equal(await store.deleteCvcSession(mA.id, 'test', live.id, T0), true);
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', live.id, T0), null);
        assert.equal(await store.deleteCvcSession(mA.id, 'test', live.id, T0), false, 'already deleted');
        assert.equal(await store.deleteCvcSession(mA.id, 'test', expired.id, T0), false, 'expired');
        assert.equal(await store.deleteCvcSession(mA.id, 'test', uid('cvc'), T0), false, 'unknown');
      });

      it("deleteCvcSessionsOfSession removes that session's CVC sessions only", async () => {
        const sid = uid('cvo');
        const mine = cvcRec(mA.id, card.token, { sessionId: sid });
        const theirs = cvcRec(mA.id, card.token, { sessionId: uid('cvo') });
        const cardLevel = cvcRec(mA.id, card.token);
        for (const x of [mine, theirs, cardLevel]) await store.insertCvcSession(x);
        assert.equal(await store.deleteCvcSessionsOfSession(sid), 1);
        assert.equal(await store.getLiveCvcSession(mA.id, 'test', mine.id, T0), null);
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', theirs.id, T0));
        assert.ok(await store.getLiveCvcSession(mA.id, 'test', cardLevel.id, T0));
        assert.equal(await store.deleteCvcSessionsOfSession(sid), 0);
      });

      it('deleteExpiredCvcSessions respects the limit and leaves live ones', async () => {
        // Times far below T0: only this test's rows are expired at SWEEP_NOW.
        const expired = Array.from({ length: 5 }, (_, i) => cvcRec(mA.id, card.token, { createdAt: 500, expiresAt: 1_000 + i }));
        const atNow = cvcRec(mA.id, card.token, { createdAt: 500, expiresAt: SWEEP_NOW });
        const live = cvcRec(mA.id, card.token, { createdAt: 500, expiresAt: SWEEP_NOW + 1 });
        for (const x of [...expired, atNow, live]) await store.insertCvcSession(x);
        assert.equal(await store.deleteExpiredCvcSessions(SWEEP_NOW, 2), 2);
        assert.equal(await store.deleteExpiredCvcSessions(SWEEP_NOW, 3), 3);
        assert.equal(await store.deleteExpiredCvcSessions(SWEEP_NOW, 100), 1, 'one expiring exactly at now is expired');
        assert.equal(await store.deleteExpiredCvcSessions(SWEEP_NOW, 100), 0);
        assert.deepEqual(await store.getLiveCvcSession(mA.id, 'test', live.id, SWEEP_NOW), live, 'the live one stays');
      });
    });

    describe('sessions', () => {
      it('round-trips every field (amount, metadata, reference, returnUrl set; booleans true)', async () => {
        const s = sessionRec(mA.id, {
          mode: 'live', operations: ['charge', 'collectCvv'], amount: { value: 5_000_000_000, currency: 'JPY' },
          reference: 'ref-é-✓', require3DS: true, requireCvv: true, maxAttempts: 7, cvvRetention: 'cache', form: 'custom',
          returnUrl: 'https://shop.example/r?x=1', metadata: { a: '1', b: 'two words', 'k-é': '✓' }, seq: 4,
          attempts: { collectCvv: 1, threeDS: 2, charge: 3 }, results: { collectCvv: { cvcSession: 'cvc_x', ok: true } },
          expiresAt: T0 + 3_600_000, createdAt: T0 - 1, updatedAt: T0 + 2,
        });
        await store.insertSession(s);
        assert.deepEqual(await store.getSession(mA.id, 'live', s.id), s);
        assert.deepEqual(await store.getSessionById(s.id), s);
      });

      it('round-trips every field (amount, metadata, reference, returnUrl null; booleans false)', async () => {
        const s = sessionRec(mB.id, {
          amount: null, reference: null, require3DS: false, requireCvv: false, returnUrl: null, metadata: null,
          operations: ['collectCvv'], maxAttempts: 1, status: 'completed',
        });
        await store.insertSession(s);
        assert.deepEqual(await store.getSession(mB.id, 'test', s.id), s);
        assert.deepEqual(await store.getSessionById(s.id), s);
      });

      it('getSession is scoped by merchant and mode; getSessionById by id only', async () => {
        const s = await newSession();
        assert.equal(await store.getSession(mB.id, 'test', s.id), null, 'another merchant');
        assert.equal(await store.getSession(mA.id, 'live', s.id), null, 'the other mode');
        assert.equal(await store.getSession(mA.id, 'test', uid('cvo')), null);
        assert.equal(await store.getSessionById(uid('cvo')), null);
        assert.equal((await store.getSessionById(s.id))?.merchantId, mA.id);
      });

      it('claimOperation: true once for the current jti; moves jti, increments seq and the attempt', async () => {
        const s = await newSession({ seq: 2, attempts: { collectCvv: 0, threeDS: 1, charge: 0 } });
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'j1', op: 'collectCvv', now: T0 + 5 }), true);
        const after1 = await mustSession(s.id);
        assert.equal(after1.jti, 'j1');
        assert.equal(after1.seq, 3);
        assert.deepEqual(after1.attempts, { collectCvv: 1, threeDS: 1, charge: 0 });
        assert.equal(after1.updatedAt, T0 + 5);
        assert.equal(after1.status, 'active');

        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'j2', op: 'collectCvv', now: T0 + 6 }), false, 'stale jti');
        assert.deepEqual(await mustSession(s.id), after1, 'a failed claim changes nothing');

        assert.equal(await store.claimOperation({ id: s.id, jti: 'j1', newJti: 'j2', op: 'threeDS', now: T0 + 7 }), true);
        const after2 = await mustSession(s.id);
        assert.equal(after2.jti, 'j2');
        assert.equal(after2.seq, 4);
        assert.deepEqual(after2.attempts, { collectCvv: 1, threeDS: 2, charge: 0 }, 'only the claimed operation counts');
        assert.equal(await store.claimOperation({ id: uid('cvo'), jti: 'j2', newJti: 'j3', op: 'charge', now: T0 }), false, 'unknown session');
      });

      it('claimOperation: false when the attempts are used up (per operation)', async () => {
        const s = await newSession({ maxAttempts: 2, attempts: { collectCvv: 1, threeDS: 0, charge: 0 } });
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'a1', op: 'collectCvv', now: T0 }), true, '1 < 2');
        const before2 = await mustSession(s.id);
        assert.equal(before2.attempts.collectCvv, 2);
        assert.equal(await store.claimOperation({ id: s.id, jti: 'a1', newJti: 'a2', op: 'collectCvv', now: T0 }), false, '2 is not < 2');
        assert.deepEqual(await mustSession(s.id), before2);
        assert.equal(await store.claimOperation({ id: s.id, jti: 'a1', newJti: 'a2', op: 'charge', now: T0 }), true, 'another operation still has attempts');
      });

      it('claimOperation: false for a completed, canceled or expired session', async () => {
        const completed = await newSession({ status: 'completed' });
        const canceled = await newSession({ status: 'canceled' });
        assert.equal(await store.claimOperation({ id: completed.id, jti: completed.jti, newJti: 'x', op: 'charge', now: T0 }), false);
        assert.equal(await store.claimOperation({ id: canceled.id, jti: canceled.jti, newJti: 'x', op: 'charge', now: T0 }), false);
        assert.equal((await mustSession(completed.id)).jti, completed.jti);

        const s = await newSession({ expiresAt: T0 + 1_000 });
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'x', op: 'charge', now: s.expiresAt }), false, 'at expiresAt');
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'x', op: 'charge', now: s.expiresAt + 1 }), false, 'after');
        assert.deepEqual(await mustSession(s.id), s);
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'x', op: 'charge', now: s.expiresAt - 1 }), true, 'a millisecond before');
      });

      it('20 simultaneous claimOperation calls with the same jti: exactly one wins', async () => {
        const s = await newSession({ maxAttempts: 100 });
        const newJtis = Array.from({ length: 20 }, (_, i) => `c${i}_${uid('j')}`);
        const results = await Promise.all(newJtis.map((newJti) =>
          store.claimOperation({ id: s.id, jti: s.jti, newJti, op: 'collectCvv', now: T0 + 1 })));
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
          const results = await Promise.all(next.map((newJti) =>
            store.claimOperation({ id: s.id, jti: current, newJti, op: 'charge', now: T0 })));
          assert.equal(results.filter(Boolean).length, 1);
          current = next[results.indexOf(true)]!;
        }
        const end = await mustSession(s.id);
        assert.equal(end.jti, current);
        assert.equal(end.seq, 3);
        assert.equal(end.attempts.charge, 3);
      });

      it('unclaimOperation restores the jti, seq and attempt; only under the claimed jti', async () => {
        const s = await newSession({ seq: 1, attempts: { collectCvv: 0, threeDS: 0, charge: 1 } });
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'u1', op: 'charge', now: T0 + 10 }), true);
        const claimed = await mustSession(s.id);
        assert.equal(await store.unclaimOperation({ id: s.id, jti: 'not-current', oldJti: s.jti, op: 'charge', now: T0 + 11 }), false);
        assert.deepEqual(await mustSession(s.id), claimed);
        assert.equal(await store.unclaimOperation({ id: s.id, jti: 'u1', oldJti: s.jti, op: 'charge', now: T0 + 12 }), true);
        const restored = await mustSession(s.id);
        assert.equal(restored.jti, s.jti);
        assert.equal(restored.seq, 1);
        assert.deepEqual(restored.attempts, { collectCvv: 0, threeDS: 0, charge: 1 });
        assert.equal(await store.unclaimOperation({ id: s.id, jti: 'u1', oldJti: s.jti, op: 'charge', now: T0 + 13 }), false, 'twice');
        // The presented token works again.
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'u2', op: 'charge', now: T0 + 14 }), true);
      });

      it('finishOperation stores results and replay only under the produced jti; complete=true completes', async () => {
        const s = await newSession();
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'f1', op: 'collectCvv', now: T0 }), true);
        const replay = { jti: 'f1', hash: uid('rh'), sealed: { keyVersion: 1, blob: randomBytes(40) }, at: T0 + 1 };
        const results = { collectCvv: { cvcSession: 'cvc_1', at: 'x' } };
        assert.equal(await store.finishOperation({
          id: s.id, jti: s.jti, results, tokenHash: 'th-stale', now: T0 + 1, complete: true, replay,
        }), false, 'not under the presented (now stale) jti');
        const unchanged = await mustSession(s.id);
        assert.equal(unchanged.status, 'active');
        assert.equal(unchanged.replay, null);
        assert.deepEqual(unchanged.results, {});

        assert.equal(await store.finishOperation({
          id: s.id, jti: 'f1', results, tokenHash: 'th-1', now: T0 + 2, complete: false, replay,
        }), true);
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

        assert.equal(await store.claimOperation({ id: s.id, jti: 'f1', newJti: 'f2', op: 'charge', now: T0 + 3 }), true);
        const results2 = { ...results, charge: { status: 'approved' } };
        const replay2 = { jti: 'f2', hash: uid('rh'), sealed: { keyVersion: 2, blob: randomBytes(40) }, at: T0 + 4 };
        assert.equal(await store.finishOperation({
          id: s.id, jti: 'f2', results: results2, tokenHash: 'th-2', now: T0 + 4, complete: true, replay: replay2,
        }), true);
        const done2 = await mustSession(s.id);
        assert.equal(done2.status, 'completed');
        assert.deepEqual(done2.results, results2);
        assertSealed(done2.replay?.sealed, replay2.sealed, 'replay 2');
        assert.equal(await store.claimOperation({ id: s.id, jti: 'f2', newJti: 'f3', op: 'charge', now: T0 + 5 }), false, 'completed sessions take no claims');
      });

      it('rotateToken is conditional on the jti and clears the replay', async () => {
        const s = await newSession();
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'r1', op: 'collectCvv', now: T0 }), true);
        const replay = { jti: 'r1', hash: 'h', sealed: sealed(), at: T0 };
        assert.equal(await store.finishOperation({ id: s.id, jti: 'r1', results: {}, tokenHash: 'th-r1', now: T0, complete: false, replay }), true);
        assert.ok((await mustSession(s.id)).replay);

        assert.equal(await store.rotateToken({ id: s.id, jti: s.jti, newJti: 'r2', tokenHash: 'th-r2', now: T0 + 1 }), false, 'stale jti');
        const before1 = await mustSession(s.id);
        assert.equal(before1.jti, 'r1');
        assert.ok(before1.replay, 'a failed rotation keeps the replay');

        assert.equal(await store.rotateToken({ id: s.id, jti: 'r1', newJti: 'r2', tokenHash: 'th-r2', now: T0 + 2 }), true);
        const rotated = await mustSession(s.id);
        assert.equal(rotated.jti, 'r2');
        assert.equal(rotated.seq, before1.seq + 1);
        assert.equal(rotated.tokenHash, 'th-r2');
        assert.equal(rotated.replay, null, 'the replay is cleared');
        assert.equal(rotated.updatedAt, T0 + 2);
        assert.deepEqual(rotated.attempts, before1.attempts, 'a reissue counts no attempt');
        assert.equal(await store.rotateToken({ id: s.id, jti: 'r1', newJti: 'r3', tokenHash: 'x', now: T0 + 3 }), false, 'the old jti is dead');
      });

      it('rotateToken refuses a canceled or expired session', async () => {
        const canceled = await newSession({ status: 'canceled' });
        assert.equal(await store.rotateToken({ id: canceled.id, jti: canceled.jti, newJti: 'n', tokenHash: 'h', now: T0 }), false);
        const s = await newSession({ expiresAt: T0 + 10 });
        assert.equal(await store.rotateToken({ id: s.id, jti: s.jti, newJti: 'n', tokenHash: 'h', now: s.expiresAt }), false);
        assert.deepEqual(await mustSession(s.id), s);
      });

      it('cancelSession: only from active and unexpired, scoped by merchant and mode', async () => {
        const s = await newSession();
        assert.equal(await store.cancelSession(mB.id, 'test', s.id, T0), false, 'another merchant');
        assert.equal(await store.cancelSession(mA.id, 'live', s.id, T0), false, 'the other mode');
        assert.equal((await mustSession(s.id)).status, 'active');
        assert.equal(await store.cancelSession(mA.id, 'test', s.id, T0 + 9), true);
        const c = await mustSession(s.id);
        assert.equal(c.status, 'canceled');
        assert.equal(c.updatedAt, T0 + 9);
        assert.equal(await store.cancelSession(mA.id, 'test', s.id, T0 + 10), false, 'already canceled');
        assert.equal(await store.claimOperation({ id: s.id, jti: s.jti, newJti: 'z', op: 'charge', now: T0 + 11 }), false, 'a canceled session takes no claims');

        const completed = await newSession({ status: 'completed' });
        assert.equal(await store.cancelSession(mA.id, 'test', completed.id, T0), false);
        assert.equal((await mustSession(completed.id)).status, 'completed');

        const expiring = await newSession({ expiresAt: T0 + 100 });
        assert.equal(await store.cancelSession(mA.id, 'test', expiring.id, expiring.expiresAt), false, 'at expiresAt');
        assert.equal((await mustSession(expiring.id)).status, 'active');
        assert.equal(await store.cancelSession(mA.id, 'test', expiring.id, expiring.expiresAt - 1), true, 'a millisecond before');
        assert.equal(await store.cancelSession(mA.id, 'test', uid('cvo'), T0), false, 'unknown');
      });
    });

    describe('idempotency keys', () => {
      const idem = (over: Partial<{ merchantId: string; endpoint: string; key: string; requestHash: string; now: number; expiresAt: number }> = {}) => ({
        merchantId: mA.id, endpoint: 'POST /CvvOperations', key: uid('idem'), requestHash: 'hash-1', now: T0, expiresAt: T0 + 86_400_000, ...over,
      });

      it('reserve: null the first time, then the stored record; a different requestHash gets the stored one', async () => {
        const p = idem();
        assert.equal(await store.reserveIdempotencyKey(p), null);
        assert.deepEqual(await store.reserveIdempotencyKey(p), { requestHash: 'hash-1', status: null, responseSealed: null });
        assert.deepEqual(await store.reserveIdempotencyKey({ ...p, requestHash: 'hash-2' }),
          { requestHash: 'hash-1', status: null, responseSealed: null }, 'the stored hash, for the caller to compare');
      });

      it('keys are scoped by merchant and endpoint', async () => {
        const p = idem();
        assert.equal(await store.reserveIdempotencyKey(p), null);
        assert.equal(await store.reserveIdempotencyKey({ ...p, merchantId: mB.id }), null, 'another merchant');
        assert.equal(await store.reserveIdempotencyKey({ ...p, endpoint: 'POST /Cards' }), null, 'another endpoint');
      });

      it('complete stores the status and the sealed response byte-exact', async () => {
        const p = idem();
        assert.equal(await store.reserveIdempotencyKey(p), null);
        const response = { keyVersion: 1, blob: randomBytes(40) };
        await store.completeIdempotencyKey({ merchantId: p.merchantId, endpoint: p.endpoint, key: p.key, status: 201, responseSealed: response });
        const got = await store.reserveIdempotencyKey({ ...p, now: T0 + 1 });
        assert.ok(got);
        assert.equal(got.requestHash, 'hash-1');
        assert.equal(got.status, 201);
        assertSealed(got.responseSealed, response, 'response');
      });

      it('release frees a key only while it is in flight (status null)', async () => {
        const p = idem();
        const k = { merchantId: p.merchantId, endpoint: p.endpoint, key: p.key };
        assert.equal(await store.reserveIdempotencyKey(p), null);
        await store.releaseIdempotencyKey(k);
        assert.equal(await store.reserveIdempotencyKey({ ...p, requestHash: 'hash-2' }), null, 'released: claimable again');
        await store.completeIdempotencyKey({ ...k, status: 200, responseSealed: sealed() });
        await store.releaseIdempotencyKey(k);
        const got = await store.reserveIdempotencyKey(p);
        assert.ok(got, 'a completed key is not released');
        assert.equal(got.status, 200);
        assert.equal(got.requestHash, 'hash-2');
      });

      it('an expired key is replaced', async () => {
        const p = idem({ expiresAt: T0 + 1_000 });
        assert.equal(await store.reserveIdempotencyKey(p), null);
        await store.completeIdempotencyKey({ merchantId: p.merchantId, endpoint: p.endpoint, key: p.key, status: 201, responseSealed: sealed() });
        assert.equal((await store.reserveIdempotencyKey({ ...p, now: p.expiresAt - 1 }))?.status, 201, 'a millisecond before: stored');
        assert.equal(await store.reserveIdempotencyKey({ ...p, requestHash: 'hash-new', now: p.expiresAt, expiresAt: p.expiresAt + 1_000 }), null, 'at expiresAt: replaced');
        assert.deepEqual(await store.reserveIdempotencyKey({ ...p, now: p.expiresAt + 1 }), { requestHash: 'hash-new', status: null, responseSealed: null });
      });

      it('20 simultaneous reservations of one key: exactly one gets null', async () => {
        const p = idem();
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => store.reserveIdempotencyKey({ ...p, requestHash: `h${i}` })));
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
        for (const x of [...expired, atNow, live]) assert.equal(await store.reserveIdempotencyKey(x), null);
        assert.equal(await store.deleteExpiredIdempotencyKeys(SWEEP_NOW, 2), 2);
        assert.equal(await store.deleteExpiredIdempotencyKeys(SWEEP_NOW, 100), 2);
        assert.equal(await store.deleteExpiredIdempotencyKeys(SWEEP_NOW, 100), 0);
        assert.deepEqual(await store.reserveIdempotencyKey({ ...live, now: SWEEP_NOW }), { requestHash: 'hash-1', status: null, responseSealed: null }, 'the live key stays');
      });
    });
  });
}
