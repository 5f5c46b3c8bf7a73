import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TEST_CVC_LIFETIME_MS } from '../../server/domain/vault.js';
import { codeOf, world, type World } from './world.js';

/**
 * The CVV's lifetimes without HTTP or a database (MemoryStore, manual clock):
 * live CVVs live exactly the merchant's TTL, `single_use` opens once, `cache`
 * opens for five minutes from its first use and never longer, test-mode CVVs
 * of test cards are reusable for a year; the sweeper removes expired ones with
 * their key shares.
 */
describe('domain: vault lifetimes', () => {
  let w: World;
  before(async () => {
    w = await world();
  });
  after(() => w.close());

  /** A live session with its CVV collected: the CVC session's row as stored. */
  async function collected(input: Parameters<World['session']>[0] = {}) {
    const s = await w.session({ as: w.live, ...input });
    const r = await w.collect(s.token);
    const row = await w.store.cvc.findUsable(w.live.merchant.id, (await w.store.sessions.getById(s.id))!.cardToken, s.id, w.clock.now());
    assert.ok(row, 'the CVV is stored');
    return { s, r, row };
  }

  it('a live CVV lives exactly cvcSessionTtlSeconds (90 s by default), then the sweeper destroys it with its key share', async () => {
    const { s, row } = await collected();
    assert.equal(row.expiresAt - w.clock.now(), 90_000);
    assert.equal(row.retention, 'single_use');
    w.clock.advance(89_999);
    assert.deepEqual(Object.keys(await w.deps.vault.cvvState(w.live.merchant.id, row.cardToken, s.id)), ['available', 'id', 'expiresAt']);
    w.clock.advance(1);
    assert.deepEqual(await w.deps.vault.cvvState(w.live.merchant.id, row.cardToken, s.id), { available: false });
    await assert.rejects(w.deps.vault.useCvv(row, 'test'), (e) => codeOf(e) === 'cvc_session_not_found', 'expired: never served, even before the sweep');
    assert.ok(await w.store.cvc.getKeyShare(row.id), 'the share is still there until the sweep');
    await w.sweeper.tick();
    assert.equal(await w.store.cvc.getKeyShare(row.id), null, 'the sweep destroyed the key share');
    assert.equal(await w.store.cvc.getById(row.id, 0), null, 'and the row');
  });

  it('single_use: the first use opens it and destroys it; a second use finds nothing', async () => {
    const { row } = await collected();
    assert.equal((await w.deps.vault.useCvv(row, 'test')).expose(), '123');
    assert.equal(await w.store.cvc.getKeyShare(row.id), null);
    await assert.rejects(w.deps.vault.useCvv(row, 'test'), (e) => codeOf(e) === 'cvc_session_not_found');
  });

  it('cache: five minutes from the first use, never past the CVV lifetime, never extended by later uses', async () => {
    await w.deps.merchants.updateSettings(w.live, { cvcSessionTtlSeconds: 3600 });
    try {
      const { row } = await collected({ cvvRetention: 'cache' });
      assert.equal(row.expiresAt - w.clock.now(), 3_600_000);
      w.clock.advance(10 * 60_000); // first use ten minutes after collection
      assert.equal((await w.deps.vault.useCvv(row, 'test')).expose(), '123');
      const first = (await w.store.cvc.getById(row.id, w.clock.now()))!;
      assert.equal(first.expiresAt - w.clock.now(), 5 * 60_000, 'the window starts now and ends five minutes later');
      w.clock.advance(4 * 60_000);
      assert.equal((await w.deps.vault.useCvv(first, 'test')).expose(), '123', 'used again inside the window');
      assert.equal((await w.store.cvc.getById(row.id, w.clock.now()))!.expiresAt, first.expiresAt, 'a later use does not extend it');
      w.clock.advance(60_000);
      await assert.rejects(w.deps.vault.useCvv(first, 'test'), (e) => codeOf(e) === 'cvc_session_not_found');
    } finally {
      await w.deps.merchants.updateSettings(w.live, { cvcSessionTtlSeconds: 90 });
    }
  });

  it('a cache window never reaches past the CVV lifetime', async () => {
    const { row } = await collected({ cvvRetention: 'cache' });
    w.clock.advance(80_000); // 10 s of the 90 left
    await w.deps.vault.useCvv(row, 'test');
    assert.equal((await w.store.cvc.getById(row.id, w.clock.now()))!.expiresAt, row.expiresAt);
  });

  it("test mode: a test card's CVV is reusable for a year", async () => {
    const s = await w.session();
    await w.collect(s.token);
    const rec = (await w.store.sessions.getById(s.id))!;
    const row = (await w.store.cvc.findUsable(w.m.merchant.id, rec.cardToken, s.id, w.clock.now()))!;
    assert.equal(row.retention, 'reusable');
    assert.equal(row.expiresAt - w.clock.now(), TEST_CVC_LIFETIME_MS);
    for (let i = 0; i < 3; i++) assert.equal((await w.deps.vault.useCvv(row, 'test')).expose(), '123');
  });

  it('a second collect in the same session replaces the first CVV (destroyed, not orphaned)', async () => {
    const { s, r, row } = await collected();
    await w.collect(r.token, '456');
    assert.equal(await w.store.cvc.getKeyShare(row.id), null, 'the first CVV is unrecoverable');
    const rec = (await w.store.sessions.getById(s.id))!;
    const now = (await w.store.cvc.findUsable(w.live.merchant.id, rec.cardToken, s.id, w.clock.now()))!;
    assert.notEqual(now.id, row.id);
    assert.equal((await w.deps.vault.useCvv(now, 'test')).expose(), '456');
  });
});
