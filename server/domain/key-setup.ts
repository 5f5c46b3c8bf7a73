import type { Logger } from '../log.js';
import type { Secret } from '../secret.js';
import type { MetaStore, SigningKeyStore } from '../store/store.js';
import { listDataKeys, loadDataKeys, storeFirstVersions } from './data-keys.js';
import { checkMasterKey, MasterKeyMismatch } from './key-check.js';
import { type KeyProvider, type KeyProviderConfig, KeyProviderError, LocalKeyProvider } from './key-provider.js';
import { dataKeyAad, Keyring } from './keyring.js';

/** Which provider this database's keys are under (recorded at its first start, changed by `keys replace-root`). */
export const PROVIDER_RECORD = 'key_provider';
export interface ProviderRecord {
  name: string;
  /** local: the root key's public id; pkcs11: the token and key labels. */
  rootId?: string;
  tokenLabel?: string;
  keyLabel?: string;
  since: number;
}

/** The provider a configuration names. The PKCS#11 module (a native addon) is loaded only when asked for. */
export async function makeProvider(cfg: KeyProviderConfig, master: Secret<Buffer> | null, meta: MetaStore): Promise<KeyProvider> {
  if (cfg.name === 'pkcs11') {
    const { Pkcs11KeyProvider } = await import('./pkcs11-provider.js');
    return new Pkcs11KeyProvider({ library: cfg.library, tokenLabel: cfg.tokenLabel, pin: cfg.pin, keyLabel: cfg.keyLabel });
  }
  if (!master) throw new KeyProviderError('the local key provider needs CVVOPS_MASTER_KEY');
  return new LocalKeyProvider(master, meta);
}

export function providerRecord(provider: KeyProvider, cfg: KeyProviderConfig, now: number): ProviderRecord {
  if (provider instanceof LocalKeyProvider) return { name: 'local', rootId: provider.rootId, since: now };
  return cfg.name === 'pkcs11' ? { name: 'pkcs11', tokenLabel: cfg.tokenLabel, keyLabel: cfg.keyLabel, since: now } : { name: provider.name, since: now };
}

/**
 * The key check at start, for any provider: the database's keys must be under the configured provider (else
 * one message naming the fix), the provider must open (its root key right, its HSM objects there), and the
 * keys it unwraps must open what the database holds. A first start on an HSM makes the first KEK and stores
 * a random version 1 of every purpose's key. Throws {@link KeyProviderError} (MasterKeyMismatch for a wrong
 * master key); the caller closes what it opened.
 */
export async function openKeys(
  store: { meta: MetaStore; signingKeys: SigningKeyStore },
  cfg: KeyProviderConfig,
  master: Secret<Buffer> | null,
  now: () => number,
  log?: Logger,
): Promise<{ keyring: Keyring; provider: KeyProvider }> {
  const fail = (e: KeyProviderError, what: string): never => {
    log?.error({ audit: true, event: 'key.unwrap_failed', what, provider: cfg.name }, e.message);
    throw e;
  };
  const stored = await store.meta.get(PROVIDER_RECORD);
  const fresh = stored === null && (await store.meta.get('key_check')) === null && (await store.signingKeys.list()).length === 0;
  const recorded = stored ? (JSON.parse(stored) as ProviderRecord) : null;
  const recordedName = recorded?.name ?? (fresh ? null : 'local');
  if (recordedName !== null && recordedName !== cfg.name)
    fail(
      new KeyProviderError(
        `this database's keys are under the ${recordedName} key provider, and CVVOPS_KEY_PROVIDER is ${cfg.name}: ` +
          `move them with \`cvvops keys replace-root\` (docs/operations.md, "Replacing the root key"), or start with CVVOPS_KEY_PROVIDER=${recordedName}. Nothing was changed.`,
      ),
      'provider',
    );
  const provider = await makeProvider(cfg, cfg.name === 'local' ? master : null, store.meta);
  const keyring = new Keyring(cfg.name === 'local' ? master : null, { now });
  try {
    try {
      await provider.open();
    } catch (e) {
      if (e instanceof KeyProviderError && cfg.name === 'local') throw new MasterKeyMismatch();
      throw e;
    }
    if (provider.versions().length === 0) {
      // Local: every KEK of this root is retired, so its keys were moved under another root (keys replace-root).
      if (cfg.name === 'local') throw new MasterKeyMismatch();
      if (!fresh && (await listDataKeys(store.meta)).length > 0)
        throw new KeyProviderError(
          `the HSM token "${cfg.tokenLabel}" holds no key labelled ${cfg.keyLabel}-v…, which this database's keys are wrapped under: ` +
            'wrong token or label, or the key objects were deleted (restore the token from its backup). Nothing was changed.',
        );
      const kekVersion = await provider.rotate(now());
      log?.warn({ audit: true, event: 'key.created', kind: 'kek', provider: provider.name, kekVersion }, 'key-encryption key created (first start)');
    }
    if (recorded === null) await store.meta.putIfAbsent(PROVIDER_RECORD, JSON.stringify(providerRecord(provider, cfg, now())));
    // With no master key (an HSM), every purpose's version 1 is a stored data key: made at the first start.
    if (cfg.name !== 'local') {
      const made = await storeFirstVersions(store.meta, keyring, provider, now());
      if (made.length) log?.warn({ audit: true, event: 'key.created', kind: 'data', version: 1, purposes: made }, 'data keys created (first start)');
    }
    try {
      await loadDataKeys(store.meta, keyring, provider);
    } catch (e) {
      if (cfg.name === 'local') throw new MasterKeyMismatch();
      throw e instanceof KeyProviderError
        ? e
        : new KeyProviderError(`the HSM does not unwrap this database's keys: ${e instanceof Error ? e.message : String(e)}`);
    }
    await checkMasterKey(store, keyring);
  } catch (e) {
    await provider.close();
    if (e instanceof KeyProviderError) fail(e, e instanceof MasterKeyMismatch ? 'master key' : 'provider');
    throw e;
  }
  return { keyring, provider };
}

/**
 * `cvvops keys replace-root`: moves every key of this database from the root it is under (`from`: the old
 * master key, or the old HSM) to another (`to`: a new master key, or an HSM). Each stored data key is
 * re-wrapped under the new root's KEK; every version 1 still derived from the old master key is stored,
 * wrapped, so it outlives that key; the record of the provider changes; the old root's own KEKs are erased
 * (local). Safe to run again after a stop: a key already moved is left as it is. Running instances keep the
 * keys they hold; restart them with the new root's settings.
 */
export async function replaceRoot(
  store: { meta: MetaStore; signingKeys: SigningKeyStore },
  from: { cfg: KeyProviderConfig; master: Secret<Buffer> | null },
  to: { cfg: KeyProviderConfig; master: Secret<Buffer> | null },
  now: () => number,
  log?: Logger,
): Promise<{ dataKeys: number; firstVersions: string[]; provider: ProviderRecord }> {
  const current = await openKeys(store, from.cfg, from.master, now, log);
  const target = await makeProvider(to.cfg, to.cfg.name === 'local' ? to.master : null, store.meta);
  try {
    if (current.provider instanceof LocalKeyProvider && target instanceof LocalKeyProvider && current.provider.rootId === target.rootId)
      throw new KeyProviderError('the new root key is the one the database is under already: nothing to do');
    await target.open();
    if (target.versions().length === 0) {
      const kekVersion = await target.rotate(now());
      log?.warn({ audit: true, event: 'key.created', kind: 'kek', provider: target.name, kekVersion }, 'key-encryption key created (new root)');
    }
    let moved = 0;
    for (const e of await listDataKeys(store.meta)) {
      if (e.retiredAt) continue;
      const aad = dataKeyAad(e.purpose, e.version);
      const wrapped = Buffer.from(e.wrapped, 'base64');
      // Moved already (a run that stopped half-way): the new root opens it.
      if (
        await target.unwrap(e.kekVersion, wrapped, aad).then(
          (k) => (k.fill(0), true),
          () => false,
        )
      )
        continue;
      const dek = await current.provider.unwrap(e.kekVersion, wrapped, aad);
      const next = await target.wrap(dek, aad);
      dek.fill(0);
      const { raw, name, ...rest } = e;
      if (!(await store.meta.replace(name, raw, JSON.stringify({ ...rest, kekVersion: next.kekVersion, wrapped: next.wrapped.toString('base64') }))))
        throw new KeyProviderError(`the ${e.purpose} data key v${e.version} changed while it was moved: run the command again`);
      moved++;
    }
    const firstVersions = await storeFirstVersions(store.meta, current.keyring, target, now());
    const record = providerRecord(target, to.cfg, now());
    const old = await store.meta.get(PROVIDER_RECORD);
    const recorded =
      old === null
        ? (await store.meta.putIfAbsent(PROVIDER_RECORD, JSON.stringify(record))) === JSON.stringify(record)
        : await store.meta.replace(PROVIDER_RECORD, old, JSON.stringify(record));
    if (!recorded) throw new KeyProviderError('the key provider record changed meanwhile: run the command again');
    if (current.provider instanceof LocalKeyProvider) await current.provider.retireAll();
    log?.warn(
      { audit: true, event: 'key.root_replaced', from: from.cfg.name, to: to.cfg.name, dataKeys: moved, firstVersions: firstVersions.length },
      'the root key was replaced',
    );
    return { dataKeys: moved, firstVersions, provider: record };
  } finally {
    await target.close();
    await current.provider.close();
  }
}
