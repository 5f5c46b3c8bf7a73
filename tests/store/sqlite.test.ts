import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChargeRecord } from '../../server/store/store.js';
import { NO_OUTCOME } from '../../server/store/store.js';
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
    id: `ch_durable${i}`,
    merchantId: 'mer_x',
    sessionId: `cvo_${i}`,
    mode: 'test',
    idempotencyKey: null,
    requestHash: 'h',
    providerKey: `ch_durable${i}`,
    processor: 'simulator',
    amount: { value: 100, currency: 'EUR' },
    ...NO_OUTCOME,
    createdAt: 1,
    updatedAt: 1,
  });
  const outcome = { status: 'approved' as const, authorizationCode: '1', declineCode: null, cvvResult: 'M', avsResult: 'U', networkTransactionId: null };
  /** A charge's intent, as a charge stores it: one transaction with the claim of its session. */
  async function begin(c: ChargeRecord): Promise<boolean> {
    const jti = `jti_${c.id}`;
    await store.sessions.insert({
      id: c.sessionId,
      merchantId: c.merchantId,
      mode: 'test',
      cardToken: 'tok_x',
      operations: ['charge'],
      amount: c.amount,
      reference: null,
      require3DS: false,
      requireCvv: false,
      maxAttempts: 3,
      cvvRetention: 'single_use',
      form: 'hosted',
      returnUrl: null,
      metadata: null,
      status: 'active',
      jti,
      seq: 0,
      tokenHash: 'th',
      attempts: { collectCvv: 0, threeDS: 0, charge: 0 },
      results: {},
      replay: null,
      chargeInFlight: null,
      expiresAt: 10_000_000,
      createdAt: 1,
      updatedAt: 1,
    });
    return (await store.charges.begin({ claim: { id: c.sessionId, jti, newJti: `${jti}_won`, now: 1 }, charge: c, cvv: null })).status === 'ok';
  }

  it('an intent and an outcome each wait for a WAL flush; ordinary writes do not', async () => {
    const before = store.walSyncs;
    assert.equal(await begin(intent(0)), true);
    assert.equal(store.walSyncs, before + 1);
    assert.equal((await store.charges.recordOutcome('ch_durable0', outcome, 2, 3)).recorded, true);
    assert.equal(store.walSyncs, before + 2);
    await store.charges.setResponse('ch_durable0', { keyVersion: 1, blob: Buffer.alloc(40) });
    assert.equal(store.walSyncs, before + 2);
  });

  it('40 concurrent intents: every one resolves after a flush that started after it, and they share flushes', async () => {
    const before = store.walSyncs;
    const seen: number[] = [];
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const started = store.walSyncs;
        assert.equal(await begin(intent(100 + i)), true);
        seen.push(store.walSyncs - started);
      }),
    );
    assert.ok(
      seen.every((n) => n >= 1),
      'each waited for at least one completed flush',
    );
    const flushes = store.walSyncs - before;
    assert.ok(flushes >= 1 && flushes <= 2, `flushes shared: ${flushes} for 40 intents`);
    for (let i = 0; i < 40; i++) assert.equal((await store.charges.get(`ch_durable${100 + i}`))?.status, 'pending');
  });
});

/** The database holds card data: its files are the owner's alone (0600), the WAL and shared-memory files too. */
describe('SQLite files are created 0600', () => {
  it('a new database, its -wal and -shm files: mode 0600; an existing one made 0644 is tightened at open', async () => {
    const { statSync, chmodSync } = await import('node:fs');
    const dir = mkdtempSync(join(tmpdir(), 'cvvops-perm-'));
    dirs.push(dir);
    const file = join(dir, 'store.db');
    const old = process.umask(0o022);
    try {
      const store = await openMigrated(`sqlite:${file}`);
      for (const f of [file, `${file}-wal`, `${file}-shm`]) {
        assert.equal(statSync(f).mode & 0o777, 0o600, `${f}: ${(statSync(f).mode & 0o777).toString(8)}`);
      }
      await store.close();
      chmodSync(file, 0o644);
      const again = await openMigrated(`sqlite:${file}`);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      await again.close();
    } finally {
      process.umask(old);
    }
  });
});
