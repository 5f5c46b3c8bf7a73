import { randomBytes } from 'node:crypto';
import type { MetaStore } from '../store/store.js';
import { CURRENT_VERSION, type DataKeyEntry, dataKeyAad, KEY_PURPOSES, type KeyPurpose, type Keyring, type RotatablePurpose } from './keyring.js';
import type { KeyProvider } from './key-provider.js';

const PREFIX = 'data_key/';
const entryName = (purpose: string, version: number) => `${PREFIX}${purpose}/${String(version).padStart(6, '0')}`;
/** How long a new data key waits before new writes use it: longer than every instance's reload interval. */
export const DATA_KEY_ACTIVATION_MS = 60_000;
/** How often a running instance looks for new data keys. */
export const DATA_KEY_RELOAD_MS = 10_000;
/** The purposes whose version 1 also makes keyed digests (lookups by digest): that version is never retired. */
const DIGEST_PURPOSES: readonly KeyPurpose[] = ['api-key', 'fingerprint', 'idempotency'];

type Meta = Pick<MetaStore, 'list' | 'putIfAbsent' | 'replace'>;

/** The data keys stored (wrapped, or retired), oldest version first per purpose, each with its row's raw value. */
export async function listDataKeys(meta: Pick<MetaStore, 'list'>): Promise<Array<DataKeyEntry & { raw: string; name: string }>> {
  const rows = await meta.list(PREFIX);
  return rows
    .map((r) => ({ ...(JSON.parse(r.value) as DataKeyEntry), raw: r.value, name: r.name }))
    .sort((a, b) => a.purpose.localeCompare(b.purpose) || a.version - b.version);
}

const unwrapEntry = (provider: KeyProvider, e: DataKeyEntry) =>
  provider.unwrap(e.kekVersion, Buffer.from(e.wrapped, 'base64'), dataKeyAad(e.purpose, e.version));

/**
 * Loads what is new into the keyring (at start, then every DATA_KEY_RELOAD_MS): running instances pick new
 * versions, and retirements, up without a restart. Returns how many entries were news.
 */
export async function loadDataKeys(meta: Pick<MetaStore, 'list'>, keyring: Keyring, provider: KeyProvider): Promise<number> {
  let n = 0;
  for (const e of await listDataKeys(meta)) {
    if (!keyring.needs(e)) continue;
    if (e.retiredAt) keyring.retire(e.purpose, e.version);
    else keyring.addDataKey(e, await unwrapEntry(provider, e));
    n++;
  }
  return n;
}

/**
 * A new data key for `purpose`: 32 random bytes, wrapped by the provider's KEK and stored; new writes use it
 * from `now + activateInMs` (every instance has loaded it by then), and every older version still opens what
 * it sealed. Two rotations at once get two versions, never one version twice.
 */
export async function rotateDataKey(
  meta: Meta,
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
    const { kekVersion, wrapped } = await provider.wrap(dek, dataKeyAad(purpose, version));
    dek.fill(0);
    const entry: DataKeyEntry = { purpose, version, kekVersion, wrapped: wrapped.toString('base64'), createdAt: now, activeFrom: now + activateInMs };
    const value = JSON.stringify(entry);
    if ((await meta.putIfAbsent(entryName(purpose, version), value)) === value) return entry;
  }
  throw new Error(`could not store a new ${purpose} data key`);
}

/**
 * Stores version 1 of every purpose that has none stored as a wrapped data key: the key derived from the
 * master key where there is one (`cvvops keys replace-root`: the keys must outlive the root they came from),
 * else a random key (a database started on an HSM, with no master key). Returns the purposes stored.
 */
export async function storeFirstVersions(meta: Meta, keyring: Keyring, provider: KeyProvider, now: number): Promise<KeyPurpose[]> {
  const stored = new Set((await listDataKeys(meta)).filter((e) => e.version === CURRENT_VERSION).map((e) => e.purpose));
  const done: KeyPurpose[] = [];
  for (const purpose of KEY_PURPOSES) {
    if (stored.has(purpose)) continue;
    const dek = keyring.derived(purpose) ? keyring.exportForWrap(purpose, CURRENT_VERSION) : randomBytes(32);
    const { kekVersion, wrapped } = await provider.wrap(dek, dataKeyAad(purpose, CURRENT_VERSION));
    dek.fill(0);
    const entry: DataKeyEntry = { purpose, version: CURRENT_VERSION, kekVersion, wrapped: wrapped.toString('base64'), createdAt: now, activeFrom: now };
    const value = JSON.stringify(entry);
    if ((await meta.putIfAbsent(entryName(purpose, CURRENT_VERSION), value)) === value) done.push(purpose);
  }
  await loadDataKeys(meta, keyring, provider);
  return done;
}

/**
 * Re-wraps up to `limit` data keys that are under an older KEK than the provider's newest (after
 * `keys rotate-master`), each only if its row is unchanged meanwhile. Returns how many.
 */
export async function rewrapDataKeys(meta: Meta, provider: KeyProvider, limit: number): Promise<number> {
  const newest = Math.max(0, ...provider.versions().map((v) => v.version));
  let done = 0;
  for (const e of await listDataKeys(meta)) {
    if (done === limit) break;
    if (e.retiredAt || e.kekVersion >= newest) continue;
    const dek = await unwrapEntry(provider, e);
    const { kekVersion, wrapped } = await provider.wrap(dek, dataKeyAad(e.purpose, e.version));
    dek.fill(0);
    const { raw: _raw, name: _name, ...rest } = e;
    if (await meta.replace(e.name, e.raw, JSON.stringify({ ...rest, kekVersion, wrapped: wrapped.toString('base64') }))) done++;
  }
  return done;
}

/**
 * Retires every KEK older than the newest that no data key is wrapped under any more. Run after a pass of
 * {@link rewrapDataKeys} that found nothing left to do, so no key is wrapped under it meanwhile.
 */
export async function retireUnusedKeks(meta: Pick<MetaStore, 'list'>, provider: KeyProvider): Promise<number[]> {
  const versions = provider.versions().map((v) => v.version);
  const newest = Math.max(0, ...versions);
  const used = new Set((await listDataKeys(meta)).filter((e) => !e.retiredAt).map((e) => e.kekVersion));
  const retired: number[] = [];
  for (const v of versions) {
    if (v >= newest || used.has(v)) continue;
    await provider.retire(v);
    retired.push(v);
  }
  return retired;
}

/**
 * Retires the data-key versions nothing is sealed with any more: older than the version new writes use, which
 * has been in use for DATA_KEY_ACTIVATION_MS (no instance writes with an older one). `countSealed` is read
 * only when some version could go, for those purposes only (null: not now). The stored key is erased; a version 1 derived from the master key is
 * marked retired, and refused from then on. Version 1 of a purpose that also makes keyed digests is kept.
 * `blocked` names purposes not to retire now.
 */
export async function retireUnusedDataKeys(
  meta: Meta,
  keyring: Keyring,
  countSealed: (purposes: string[]) => Promise<Array<{ purpose: string; version: number; count: number }> | null>,
  now: number,
  blocked: ReadonlySet<string> = new Set(),
): Promise<Array<{ purpose: KeyPurpose; version: number }>> {
  const candidates = KEY_PURPOSES.flatMap((purpose) => {
    const writing = keyring.writeVersion(purpose);
    const since = keyring.versions(purpose).find((v) => v.version === writing)?.activeFrom ?? null;
    if (blocked.has(purpose) || writing === CURRENT_VERSION || since === null || now < since + DATA_KEY_ACTIVATION_MS) return [];
    return keyring
      .versions(purpose)
      .filter(({ version }) => version < writing && !(version === CURRENT_VERSION && DIGEST_PURPOSES.includes(purpose)))
      .map(({ version }) => ({ purpose, version }));
  });
  // Counting reads every sealed column: only when some version could go.
  if (candidates.length === 0) return [];
  const counts = await countSealed([...new Set(candidates.map((c) => c.purpose))]);
  if (counts === null) return [];
  const stored = await listDataKeys(meta);
  const retired: Array<{ purpose: KeyPurpose; version: number }> = [];
  for (const { purpose, version } of candidates) {
    if (counts.some((c) => c.purpose === purpose && c.version === version && c.count > 0)) continue;
    const existing = stored.find((e) => e.purpose === purpose && e.version === version);
    const entry: DataKeyEntry = {
      purpose,
      version,
      kekVersion: existing?.kekVersion ?? 0,
      wrapped: '',
      createdAt: existing?.createdAt ?? 0,
      activeFrom: existing?.activeFrom ?? 0,
      retiredAt: now,
    };
    const value = JSON.stringify(entry);
    const ok = existing ? await meta.replace(existing.name, existing.raw, value) : (await meta.putIfAbsent(entryName(purpose, version), value)) === value;
    if (!ok) continue;
    keyring.retire(purpose, version);
    retired.push({ purpose, version });
  }
  return retired;
}
