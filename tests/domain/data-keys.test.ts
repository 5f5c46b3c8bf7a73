import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DATA_KEY_ACTIVATION_MS, listDataKeys, loadDataKeys, rotateDataKey } from '../../server/domain/data-keys.js';
import { LocalKeyProvider } from '../../server/domain/key-provider.js';
import { dataKeyAad, Keyring } from '../../server/domain/keyring.js';
import { Secret } from '../../server/secret.js';
import { Sweeper } from '../../server/domain/sweeper.js';
import { type World, world } from './world.js';

/**
 * Data keys of their own per purpose and version, wrapped by the provider's KEK: a rotation while flows run
 * fails no flow (the new version is loaded everywhere before it is written with), and every older version
 * still opens what it sealed.
 */
describe('domain: data keys (envelope encryption, local provider)', () => {
  let w: World;
  before(async () => {
    w = await world();
  });
  after(() => w.close());

  /** A whole flow, collect to approved charge: the CVV, the card, the CAVV, the replay record are sealed and opened on the way. */
  async function flow(): Promise<string> {
    const s = await w.session();
    const c = await w.collect(s.token);
    const t = await w.threeDS(c.token);
    const ch = await w.charge(t.token);
    assert.equal(ch.result.status, 'approved');
    return s.id;
  }

  it('rotating the card, cvv and replay keys while flows run: every flow succeeds, new writes use the new versions once active, old values still open', async () => {
    const cardBefore = await w.card();
    const sealedBefore = (await w.store.cards.get(w.m.merchant.id, 'test', cardBefore))!;
    assert.equal(sealedBefore.numberSealed.keyVersion, 1);
    await flow();
    for (const purpose of ['card', 'cvv', 'replay'] as const) await rotateDataKey(w.store.meta, w.deps.keyProvider, purpose, w.clock.now());
    assert.equal(await loadDataKeys(w.store.meta, w.deps.keyring, w.deps.keyProvider), 3);
    // Staged: loaded, not yet written with; flows go on.
    assert.equal(w.deps.keyring.writeVersion('card'), 1);
    await flow();
    w.clock.advance(DATA_KEY_ACTIVATION_MS);
    assert.equal(w.deps.keyring.writeVersion('card'), 2);
    assert.equal(w.deps.keyring.writeVersion('cvv'), 2);
    assert.equal(w.deps.keyring.writeVersion('api-key'), 1, 'a purpose not rotated stays');
    const cardAfter = await w.card();
    assert.equal((await w.store.cards.get(w.m.merchant.id, 'test', cardAfter))!.numberSealed.keyVersion, 2);
    await flow();
    // The card sealed before the rotation still opens and charges.
    const s = await w.deps.sessions.create(w.m, { card: cardBefore, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 500, currency: 'EUR' } });
    const c = await w.collect(s.body.token as string);
    const ch = await w.charge((await w.threeDS(c.token)).token);
    assert.equal(ch.result.status, 'approved', 'a card sealed with v1, charged after the rotation');
  });

  it("cards sealed with the older card key are re-sealed in slices by the sweeper's retention pass, and charge as before", async () => {
    // The card key was rotated (and activated) by the first test: every card made before is on version 1.
    const before = await w.store.cards.listSealedBelow(2, 1000);
    assert.ok(before.length >= 3, `${before.length} cards on version 1`);
    const sweeper = new Sweeper(w.deps.store, w.deps.tokens, w.clock, w.deps.log, w.deps.webhooks, w.deps.charges, {
      retentionDays: 90,
      holder: 'reencrypt-test',
      keys: (limit) => w.deps.keyMaintenance.slice(limit),
    });
    await sweeper.tick();
    assert.deepEqual(await w.store.cards.listSealedBelow(2, 1000), [], 'none left on version 1');
    assert.equal(await w.deps.cards.reencrypt(100), 0, 'nothing to do the second time');
    const c = before[0]!;
    const now = (await w.store.cards.get(c.merchantId, c.mode, c.token))!;
    assert.equal(now.numberSealed.keyVersion, 2);
    assert.notDeepEqual(now.numberSealed.blob, c.numberSealed.blob);
    assert.equal(w.deps.cards.open(now).number.expose(), w.deps.cards.open(c).number.expose(), 'the same number, sealed anew');
    const s = await w.deps.sessions.create(w.m, { card: c.token, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 700, currency: 'EUR' } });
    const col = await w.collect(s.body.token as string);
    assert.equal((await w.charge((await w.threeDS(col.token)).token)).result.status, 'approved', 'a re-encrypted card charges');
  });

  it('another instance (its own keyring, the same master key) loads the new version and opens what it sealed; a wrong master key cannot unwrap it', async () => {
    const e = await rotateDataKey(w.store.meta, w.deps.keyProvider, 'settings', w.clock.now(), 20_000);
    await loadDataKeys(w.store.meta, w.deps.keyring, w.deps.keyProvider);
    w.clock.advance(20_000);
    const sealed = w.deps.keyring.seal('settings', 'processor config', 'aad');
    assert.equal(sealed.keyVersion, e.version);
    // The other instance has not loaded it yet: it cannot open it (which is why writes wait for the activation).
    const master = (w.deps.config.masterKey as Secret<Buffer>).expose();
    const other = new Keyring(new Secret(master), { now: () => w.clock.now() });
    assert.throws(() => other.open('settings', sealed, 'aad'));
    await loadDataKeys(w.store.meta, other, new LocalKeyProvider(new Secret(master), w.store.meta));
    assert.equal(other.open('settings', sealed, 'aad').toString('utf8'), 'processor config');
    const wrong = new Keyring(new Secret(randomBytes(32)));
    await assert.rejects(loadDataKeys(w.store.meta, wrong, new LocalKeyProvider(new Secret(randomBytes(32)), w.store.meta)), 'another KEK does not unwrap it');
  });

  it('two rotations at once get two versions; the stored keys are wrapped (never the key itself); a data key moved to another slot does not unwrap', async () => {
    const [a, b] = await Promise.all([
      rotateDataKey(w.store.meta, w.deps.keyProvider, 'cavv', w.clock.now()),
      rotateDataKey(w.store.meta, w.deps.keyProvider, 'cavv', w.clock.now()),
    ]);
    assert.deepEqual([a.version, b.version].sort(), [2, 3]);
    const stored = (await listDataKeys(w.store.meta)).filter((x) => x.purpose === 'cavv');
    assert.deepEqual(
      stored.map((x) => x.version),
      [2, 3],
    );
    for (const x of stored) assert.equal(Buffer.from(x.wrapped, 'base64').length, 60, 'IV, the wrapped 32 bytes, tag');
    // The version-2 key presented as the cvv purpose's: its wrapping is bound to (cavv, 2).
    const moved = { ...stored[0]!, purpose: 'cvv' as const, version: 9 };
    await assert.rejects(w.deps.keyProvider.unwrap(moved.kekVersion, Buffer.from(moved.wrapped, 'base64'), dataKeyAad(moved.purpose, moved.version)));
    const right = await w.deps.keyProvider.unwrap(stored[0]!.kekVersion, Buffer.from(stored[0]!.wrapped, 'base64'), dataKeyAad('cavv', 2));
    assert.equal(right.length, 32, 'in its own slot it unwraps');
  });
});
