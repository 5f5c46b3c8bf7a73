import { randomBytes } from 'node:crypto';
import type { MetaStore } from '../store/store.js';
import { type DataKeyEntry, dataKeyAad, type Keyring, type RotatablePurpose } from './keyring.js';
import type { KeyProvider } from './key-provider.js';

const PREFIX = 'data_key/';
/** How long a new data key waits before new writes use it: longer than every instance's reload interval. */
export const DATA_KEY_ACTIVATION_MS = 60_000;
/** How often a running instance looks for new data keys. */
export const DATA_KEY_RELOAD_MS = 10_000;

/** The data keys stored (wrapped), oldest version first per purpose. */
export async function listDataKeys(meta: Pick<MetaStore, 'list'>): Promise<DataKeyEntry[]> {
  const rows = await meta.list(PREFIX);
  return rows.map((r) => JSON.parse(r.value) as DataKeyEntry).sort((a, b) => a.purpose.localeCompare(b.purpose) || a.version - b.version);
}

/** Loads what is new into the keyring (at start, then every DATA_KEY_RELOAD_MS): running instances pick new versions up without a restart. */
export async function loadDataKeys(meta: Pick<MetaStore, 'list'>, keyring: Keyring, provider: KeyProvider): Promise<number> {
  return keyring.loadDataKeys(await listDataKeys(meta), (e) =>
    provider.unwrap(e.kekVersion, Buffer.from(e.wrapped, 'base64'), dataKeyAad(e.purpose, e.version)),
  );
}

/**
 * A new data key for `purpose`: 32 random bytes, wrapped by the provider's KEK and stored; new writes use it
 * from `now + activateInMs` (every instance has loaded it by then), and every older version still opens what
 * it sealed. Two rotations at once get two versions, never one version twice.
 */
export async function rotateDataKey(
  meta: Pick<MetaStore, 'list' | 'putIfAbsent'>,
  provider: KeyProvider,
  purpose: RotatablePurpose,
  now: number,
  activateInMs = DATA_KEY_ACTIVATION_MS,
): Promise<DataKeyEntry> {
  let version = 1;
  for (let attempt = 0; attempt < 10; attempt++) {
    const newest = Math.max(1, ...(await listDataKeys(meta)).filter((e) => e.purpose === purpose).map((e) => e.version));
    // The next free version: after the newest stored, and after the one this call lost to another rotation.
    version = Math.max(newest, version) + 1;
    const dek = randomBytes(32);
    const { kekVersion, wrapped } = provider.wrap(dek, dataKeyAad(purpose, version));
    dek.fill(0);
    const entry: DataKeyEntry = { purpose, version, kekVersion, wrapped: wrapped.toString('base64'), createdAt: now, activeFrom: now + activateInMs };
    const value = JSON.stringify(entry);
    if ((await meta.putIfAbsent(`${PREFIX}${purpose}/${String(version).padStart(6, '0')}`, value)) === value) return entry;
  }
  throw new Error(`could not store a new ${purpose} data key`);
}
