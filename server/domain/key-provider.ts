import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { Secret } from '../secret.js';
import { secureRandom } from './random.js';

/** Which provider holds the KEKs, as configured (CVVOPS_KEY_PROVIDER, CVVOPS_PKCS11_*). */
export type KeyProviderConfig =
  | { readonly name: 'local' }
  | { readonly name: 'pkcs11'; readonly library: string; readonly tokenLabel: string; readonly pin: Secret<string>; readonly keyLabel: string };

/** A KEK version inside the provider's boundary. */
export interface KekVersion {
  version: number;
  /** When it was made (ms), where the provider knows it. */
  createdAt: number | null;
}

/**
 * The provider's keys cannot be used: its root key does not open its KEKs, an HSM object is missing, the
 * token cannot be reached. The server refuses to start with it (one message, exit code 78).
 */
export class KeyProviderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyProviderError';
  }
}

/**
 * Where the key-encryption keys (KEKs) live, and the only code that uses them: data keys are wrapped and
 * unwrapped here, and nothing else ever sees a KEK.
 *
 * - `local` ({@link LocalKeyProvider}): the root is CVVOPS_MASTER_KEY (environment or file); KEK version 1 is
 *   derived from it, later versions are random and kept wrapped under it in the database.
 * - `pkcs11` (`Pkcs11KeyProvider`): an HSM; each KEK version is a non-extractable AES key object in the token,
 *   and wrapping happens inside the token.
 * - A cloud KMS (AWS KMS, Vault Transit) implements the same members with calls: `wrap`/`unwrap` are
 *   Encrypt/Decrypt with the AAD as encryption context, `rotate` makes a new key version, `retire` schedules
 *   the old version's deletion.
 *
 * All members are async: an HSM or a KMS answers over a connection.
 */
export interface KeyProvider {
  readonly name: string;
  /** Finds the KEKs. Throws {@link KeyProviderError} if the provider cannot be used. */
  open(): Promise<void>;
  /** The KEK versions the provider holds, oldest first; new wraps use the newest. Empty before the first `rotate`. */
  versions(): KekVersion[];
  /** Wraps a data key with the newest KEK. `aad` binds it to its slot: a wrapped key moved to another slot does not open. */
  wrap(dek: Buffer, aad: string): Promise<{ kekVersion: number; wrapped: Buffer }>;
  /** Unwraps with KEK `kekVersion` (looking again for versions made meanwhile by another process). Throws if it does not open. */
  unwrap(kekVersion: number, wrapped: Buffer, aad: string): Promise<Buffer>;
  /** Makes a new KEK version inside the boundary, which new wraps use from now on. Returns its version. */
  rotate(now: number): Promise<number>;
  /** Destroys KEK `kekVersion`: nothing wrapped under it opens afterwards. Never the newest. */
  retire(kekVersion: number): Promise<void>;
  close(): Promise<void>;
}

/** AES-256-GCM with a random 96-bit IV: iv ‖ ciphertext ‖ tag. */
export function gcmSeal(key: Buffer, plaintext: Buffer, aad: string): Buffer {
  const iv = secureRandom(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return Buffer.concat([iv, body, c.getAuthTag()]);
}

export function gcmOpen(key: Buffer, sealed: Buffer, aad: string): Buffer {
  if (sealed.length < 28) throw new Error('sealed value too short');
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAAD(Buffer.from(aad, 'utf8'));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
}

/** Where the local provider keeps its KEKs of version 2 and later (wrapped under the root key). */
export interface KekStore {
  list(prefix: string): Promise<Array<{ name: string; value: string }>>;
  putIfAbsent(name: string, value: string): Promise<string>;
  /** Replaces `name` only if it still holds `expected`. */
  replace(name: string, expected: string, value: string): Promise<boolean>;
}

const kekAad = (v: number) => `cvvops/kek/v${v}`;
interface StoredKek {
  version: number;
  /** base64, wrapped under the root key; '' once retired. */
  wrapped: string;
  createdAt: number;
  retiredAt: number | null;
}

/**
 * The local provider. The root is CVVOPS_MASTER_KEY. KEK version 1 is derived from it (HKDF-SHA256, its own
 * label); `rotate` makes a random KEK, wrapped under a root-wrapping key (also derived from the root) and kept
 * in the database, so rotation needs no environment change and no restart. `retire` erases a KEK: a random one
 * is overwritten; version 1, derived, is marked retired and refused from then on.
 */
export class LocalKeyProvider implements KeyProvider {
  readonly name = 'local';
  readonly #root: Buffer;
  readonly #rootWrap: Buffer;
  /** A public name of the root key (an HMAC of a label, 64 bits): each root keeps its KEKs apart. */
  readonly rootId: string;
  readonly #prefix: string;
  readonly #store: KekStore;
  readonly #keks = new Map<number, { key: Buffer; createdAt: number | null }>();
  #retired = new Set<number>();

  constructor(master: Secret<Buffer>, store: KekStore) {
    this.#root = master.expose();
    this.#rootWrap = Buffer.from(hkdfSync('sha256', this.#root, 'cvvops', 'cvvops/root-wrap/v1', 32));
    this.rootId = createHmac('sha256', this.#root).update('cvvops/root-id').digest('hex').slice(0, 16);
    this.#prefix = `kek/${this.rootId}/`;
    this.#store = store;
  }

  async open(): Promise<void> {
    await this.#load();
  }

  async #load(): Promise<void> {
    const rows = (await this.#store.list(this.#prefix)).map((r) => JSON.parse(r.value) as StoredKek);
    const retired = new Set(rows.filter((r) => r.retiredAt !== null).map((r) => r.version));
    if (!retired.has(1) && !this.#keks.has(1)) {
      this.#keks.set(1, { key: Buffer.from(hkdfSync('sha256', this.#root, 'cvvops', 'cvvops/kek/v1', 32)), createdAt: null });
    }
    for (const r of rows) {
      if (r.retiredAt !== null || this.#keks.has(r.version)) continue;
      let key: Buffer;
      try {
        key = gcmOpen(this.#rootWrap, Buffer.from(r.wrapped, 'base64'), kekAad(r.version));
      } catch {
        throw new KeyProviderError(`CVVOPS_MASTER_KEY does not open KEK version ${r.version}: it is not the root key this database's keys are under`);
      }
      this.#keks.set(r.version, { key, createdAt: r.createdAt });
    }
    for (const v of retired) this.#forget(v);
    this.#retired = retired;
  }

  #forget(v: number): void {
    const k = this.#keks.get(v);
    k?.key.fill(0);
    this.#keks.delete(v);
  }

  versions(): KekVersion[] {
    return [...this.#keks].map(([version, k]) => ({ version, createdAt: k.createdAt })).sort((a, b) => a.version - b.version);
  }

  #newest(): number {
    const v = Math.max(...this.#keks.keys());
    if (!Number.isFinite(v)) throw new KeyProviderError('the local provider has no KEK that is not retired');
    return v;
  }

  async wrap(dek: Buffer, aad: string): Promise<{ kekVersion: number; wrapped: Buffer }> {
    const v = this.#newest();
    return { kekVersion: v, wrapped: gcmSeal(this.#keks.get(v)!.key, dek, aad) };
  }

  async unwrap(kekVersion: number, wrapped: Buffer, aad: string): Promise<Buffer> {
    if (!this.#keks.has(kekVersion) && !this.#retired.has(kekVersion)) await this.#load();
    const k = this.#keks.get(kekVersion);
    if (!k) throw new KeyProviderError(`no KEK of version ${kekVersion} in the local provider${this.#retired.has(kekVersion) ? ' (retired)' : ''}`);
    return gcmOpen(k.key, wrapped, aad);
  }

  async rotate(now: number): Promise<number> {
    await this.#load();
    for (let attempt = 0; attempt < 10; attempt++) {
      const rows = await this.#store.list(this.#prefix);
      const version = Math.max(1, ...rows.map((r) => (JSON.parse(r.value) as StoredKek).version)) + 1;
      const key = randomBytes(32);
      const entry: StoredKek = { version, wrapped: gcmSeal(this.#rootWrap, key, kekAad(version)).toString('base64'), createdAt: now, retiredAt: null };
      const value = JSON.stringify(entry);
      if ((await this.#store.putIfAbsent(this.#name(version), value)) === value) {
        this.#keks.set(version, { key, createdAt: now });
        return version;
      }
      key.fill(0);
    }
    throw new KeyProviderError('could not store a new KEK');
  }

  async retire(kekVersion: number): Promise<void> {
    await this.#load();
    if (kekVersion === this.#newest()) throw new KeyProviderError('the newest KEK cannot be retired: rotate first');
    await this.#erase(kekVersion);
  }

  async #erase(kekVersion: number): Promise<void> {
    const now = Date.now();
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = (await this.#store.list(this.#name(kekVersion))).find((r) => r.name === this.#name(kekVersion));
      if (current && (JSON.parse(current.value) as StoredKek).retiredAt !== null) break;
      const retiredEntry = JSON.stringify({
        version: kekVersion,
        wrapped: '',
        createdAt: current ? (JSON.parse(current.value) as StoredKek).createdAt : 0,
        retiredAt: now,
      });
      const done = current
        ? await this.#store.replace(current.name, current.value, retiredEntry)
        : (await this.#store.putIfAbsent(this.#name(kekVersion), retiredEntry)) === retiredEntry;
      if (done) break;
    }
    this.#forget(kekVersion);
    this.#retired.add(kekVersion);
  }

  #name(v: number): string {
    return `${this.#prefix}${String(v).padStart(6, '0')}`;
  }

  /** Retires every KEK of this root, the newest too: after its keys moved under another root (`keys replace-root`). */
  async retireAll(): Promise<void> {
    await this.#load();
    const versions = [...this.#keks.keys()].sort((a, b) => a - b);
    for (const v of versions) await this.#erase(v);
  }

  async close(): Promise<void> {
    for (const v of [...this.#keks.keys()]) this.#forget(v);
  }
}
