import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChargeRecord } from '../../server/store/store.js';
import { openMigrated, storeContract } from './contract.js';

/** The store contract on SQLite: a fresh temporary database file per run. */
const dirs: string[] = [];

storeContract('KyselyStore on SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvvops-store-'));
  dirs.push(dir);
  return openMigrated(`sqlite:${join(dir, 'store.db')}`);
});

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Money writes on SQLite: each charge intent and outcome resolves only after
 * an fdatasync of the WAL that began after its commit (synchronous=FULL's
 * guarantee), and concurrent ones share flushes (group commit).
 */
describe('SQLite money writes are flushed to disk before they resolve', () => {
  let store: Awaited<ReturnType<typeof openMigrated>>;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cvvops-store-'));
    dirs.push(dir);
    store = await openMigrated(`sqlite:${join(dir, 'store.db')}`);
  });
  after(() => store.close());

  const intent = (i: number): ChargeRecord => ({
    id: `ch_durable${i}`, merchantId: 'mer_x', sessionId: `cvo_${i}`, mode: 'test', idempotencyKey: null, requestHash: 'h', providerKey: `ch_durable${i}`,
    processor: 'simulator', amount: { value: 100, currency: 'EUR' }, status: 'pending', authorizationCode: null, declineCode: null, cvvResult: null,
    avsResult: null, networkTransactionId: null, responseSealed: null, createdAt: 1, updatedAt: 1,
  });
  const outcome = { status: 'approved' as const, authorizationCode: '1', declineCode: null, cvvResult: 'M', avsResult: 'U', networkTransactionId: null };

  it('an intent and an outcome each wait for a WAL flush; ordinary writes do not', async () => {
    const before = store.walSyncs;
    assert.equal(await store.insertChargeIntent(intent(0)), true);
    assert.equal(store.walSyncs, before + 1);
    assert.equal(await store.finishCharge('ch_durable0', outcome, 2), true);
    assert.equal(store.walSyncs, before + 2);
    await store.setChargeResponse('ch_durable0', { keyVersion: 1, blob: Buffer.alloc(40) });
    assert.equal(store.walSyncs, before + 2);
  });

  it('40 concurrent intents: every one resolves after a flush that started after it, and they share flushes', async () => {
    const before = store.walSyncs;
    const seen: number[] = [];
    await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const started = store.walSyncs;
      assert.equal(await store.insertChargeIntent(intent(100 + i)), true);
      seen.push(store.walSyncs - started);
    }));
    assert.ok(seen.every((n) => n >= 1), 'each waited for at least one completed flush');
    const flushes = store.walSyncs - before;
    assert.ok(flushes >= 1 && flushes <= 2, `flushes shared: ${flushes} for 40 intents`);
    for (let i = 0; i < 40; i++) assert.equal((await store.getCharge(`ch_durable${100 + i}`))?.status, 'pending');
  });
});
