import { realpathSync } from 'node:fs';
import type { AesGCM, Handle, Mechanism, PKCS11 } from 'pkcs11js';
import type { Secret } from '../secret.js';
import { type KekVersion, type KeyProvider, KeyProviderError } from './key-provider.js';
import { secureRandom } from './random.js';

/** The pkcs11js module (a native addon), loaded on first use so that a server using the local provider never needs it. */
type Pkcs11Module = typeof import('pkcs11js');

export interface Pkcs11Options {
  /** Path to the vendor's PKCS#11 library (.so). */
  library: string;
  /** The token's label (without its space padding). */
  tokenLabel: string;
  /** The user PIN. */
  pin: Secret<string>;
  /** Label prefix of the KEK objects: version n is labelled `${keyLabel}-v${n}`. */
  keyLabel: string;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * One loaded library, shared by every provider instance of this process that names it. C_Initialize and
 * C_Finalize act on the whole process, and a login is shared by all sessions the process has with a token
 * (C_Logout on one logs all out), so both are reference-counted here.
 */
interface Library {
  mod: Pkcs11Module;
  p11: PKCS11;
  users: number;
  /** False when something else in the process had already called C_Initialize: that code finalizes, not us. */
  ownsInit: boolean;
  /** Per slot (hex of its id): how many of our sessions rely on the user login. */
  logins: Map<string, number>;
}
const libraries = new Map<string, Library>();

/** The first line of an error's message: for pkcs11js's errors, the PKCS#11 return value name (CKR_…). */
function reason(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

function ignore(f: () => void): void {
  try {
    f();
  } catch {
    // deliberately ignored (see the caller)
  }
}

function codeOf(e: unknown): number | undefined {
  const code = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
  return typeof code === 'number' ? code : undefined;
}

async function acquireLibrary(path: string): Promise<{ key: string; lib: Library }> {
  // The same library reached by two paths (a symlink) is one library for the dynamic loader: key it by its real path.
  let key: string;
  try {
    key = realpathSync(path);
  } catch {
    throw new KeyProviderError(`the PKCS#11 library ${path} does not exist`);
  }
  let lib = libraries.get(key);
  if (!lib) {
    let mod: Pkcs11Module;
    try {
      mod = (await import('pkcs11js')).default;
    } catch (e) {
      throw new KeyProviderError(`the pkcs11js module cannot be loaded (is its native addon built?): ${reason(e)}`);
    }
    const p11 = new mod.PKCS11();
    try {
      p11.load(key);
    } catch (e) {
      throw new KeyProviderError(`the PKCS#11 library ${path} cannot be loaded: ${reason(e)}`);
    }
    let ownsInit = true;
    try {
      p11.C_Initialize();
    } catch (e) {
      if (codeOf(e) !== mod.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        p11.close();
        throw new KeyProviderError(`the PKCS#11 library ${path} does not initialize: ${reason(e)}`);
      }
      ownsInit = false;
    }
    lib = { mod, p11, users: 0, ownsInit, logins: new Map() };
    libraries.set(key, lib);
  }
  lib.users++;
  return { key, lib };
}

function releaseLibrary(key: string, lib: Library): void {
  if (--lib.users > 0) return;
  libraries.delete(key);
  try {
    if (lib.ownsInit) lib.p11.C_Finalize();
  } finally {
    lib.p11.close();
  }
}

/** A KEK object found in the token. */
interface Kek {
  handle: Handle;
  createdAt: number | null;
}

/**
 * KEKs in an HSM, reached through its PKCS#11 library. Each KEK version is a non-extractable, sensitive AES-256
 * key object labelled `${keyLabel}-v${n}`; data keys are wrapped and unwrapped with AES-256-GCM inside the token,
 * so no KEK ever leaves it (CKA_VALUE is never read).
 *
 * The CKA_ID of a KEK made here is its creation time (ms, 8 bytes big-endian) followed by 8 random bytes: it
 * gives `createdAt` (null for an id of another length, e.g. a KEK imported with other tools).
 *
 * Two processes rotating at the same moment can both make version n: PKCS#11 has no create-if-absent, and a
 * token need not show one process's new object to another at once (SoftHSM2 does not). So a version may have
 * several objects; `unwrap` tries each (only the right one verifies the GCM tag), and `retire` destroys all.
 *
 * Calls into the library are synchronous: a wrap is C_EncryptInit then C_Encrypt on one serial session, and
 * nothing else may run on that session in between.
 */
export class Pkcs11KeyProvider implements KeyProvider {
  readonly name = 'pkcs11';
  readonly #opts: Pkcs11Options;
  #lib: { key: string; lib: Library } | null = null;
  #slot: Handle | null = null;
  #session: Handle | null = null;
  /** By version: its objects (one, unless rotations raced). */
  #keks = new Map<number, Kek[]>();

  constructor(opts: Pkcs11Options) {
    this.#opts = opts;
  }

  async open(): Promise<void> {
    if (this.#session) {
      this.#scan();
      return;
    }
    const acquired = await acquireLibrary(this.#opts.library);
    this.#lib = acquired;
    try {
      const { mod, p11 } = acquired.lib;
      const slot = this.#findSlot();
      this.#session = p11.C_OpenSession(slot, mod.CKF_SERIAL_SESSION | mod.CKF_RW_SESSION);
      this.#login(slot);
      this.#scan();
    } catch (e) {
      await this.close();
      if (e instanceof KeyProviderError) throw e;
      throw new KeyProviderError(this.#scrub(`the PKCS#11 token "${this.#opts.tokenLabel}" cannot be used: ${reason(e)}`));
    }
  }

  #findSlot(): Handle {
    const { p11 } = this.#library();
    const labels: string[] = [];
    for (const slot of p11.C_GetSlotList(true)) {
      const label = p11.C_GetTokenInfo(slot).label.trim();
      if (label === this.#opts.tokenLabel) return slot;
      if (label) labels.push(label);
    }
    throw new KeyProviderError(
      `no PKCS#11 token labelled "${this.#opts.tokenLabel}" in ${this.#opts.library} (tokens: ${labels.map((l) => `"${l}"`).join(', ') || 'none'})`,
    );
  }

  #login(slot: Handle): void {
    const lib = this.#library();
    const slotKey = slot.toString('hex');
    try {
      lib.p11.C_Login(this.#session!, lib.mod.CKU_USER, this.#opts.pin.expose());
    } catch (e) {
      // Another provider of this process is logged in to this token already (the PIN was checked then).
      if (codeOf(e) !== lib.mod.CKR_USER_ALREADY_LOGGED_IN) {
        const wrongPin = codeOf(e) === lib.mod.CKR_PIN_INCORRECT;
        throw new KeyProviderError(this.#scrub(`cannot log in to the PKCS#11 token "${this.#opts.tokenLabel}": ${wrongPin ? 'the PIN is wrong' : reason(e)}`));
      }
    }
    this.#slot = slot;
    lib.logins.set(slotKey, (lib.logins.get(slotKey) ?? 0) + 1);
  }

  /** Never lets the PIN into a message, whatever a library might echo back. */
  #scrub(message: string): string {
    const pin = this.#opts.pin.expose();
    return pin ? message.split(pin).join('[REDACTED]') : message;
  }

  #library(): Library {
    if (!this.#lib) throw new KeyProviderError('the PKCS#11 provider is not open');
    return this.#lib.lib;
  }

  #sessionHandle(): Handle {
    if (!this.#session) throw new KeyProviderError('the PKCS#11 provider is not open');
    return this.#session;
  }

  /** Looks at the token again, for versions made or destroyed by other processes. Never reads CKA_VALUE. */
  #scan(): void {
    const { mod, p11 } = this.#library();
    const session = this.#sessionHandle();
    p11.C_FindObjectsInit(session, [
      { type: mod.CKA_CLASS, value: mod.CKO_SECRET_KEY },
      { type: mod.CKA_KEY_TYPE, value: mod.CKK_AES },
    ]);
    const handles: Handle[] = [];
    try {
      for (let batch = p11.C_FindObjects(session, 64); batch.length > 0; batch = p11.C_FindObjects(session, 64)) handles.push(...batch);
    } finally {
      p11.C_FindObjectsFinal(session);
    }
    const prefix = `${this.#opts.keyLabel}-v`;
    const keks = new Map<number, Kek[]>();
    for (const handle of handles) {
      let attrs;
      try {
        attrs = p11.C_GetAttributeValue(session, handle, [{ type: mod.CKA_LABEL }, { type: mod.CKA_ID }]);
      } catch (e) {
        if (this.#gone(e)) continue; // destroyed by another process since the search
        throw e;
      }
      const [label, id] = attrs;
      const text = label?.value.toString('utf8') ?? '';
      const digits = text.slice(prefix.length);
      if (!text.startsWith(prefix) || !/^[1-9][0-9]{0,8}$/.test(digits)) continue;
      const version = Number(digits);
      const createdAt = id?.value.length === 16 ? Number(id.value.readBigUInt64BE(0)) : null;
      keks.set(version, [...(keks.get(version) ?? []), { handle, createdAt }]);
    }
    this.#keks = keks;
  }

  /** The error says the object is no longer there (another process destroyed it). */
  #gone(e: unknown): boolean {
    const { mod } = this.#library();
    const code = codeOf(e);
    return code === mod.CKR_OBJECT_HANDLE_INVALID || code === mod.CKR_KEY_HANDLE_INVALID;
  }

  versions(): KekVersion[] {
    return [...this.#keks].map(([version, objs]) => ({ version, createdAt: objs[0]?.createdAt ?? null })).sort((a, b) => a.version - b.version);
  }

  #newest(): number | null {
    return this.#keks.size ? Math.max(...this.#keks.keys()) : null;
  }

  #gcm(iv: Buffer, aad: string): Mechanism {
    const { mod } = this.#library();
    // CK_GCM_PARAMS as PKCS#11 v2.40 defines it (with ulIvBits), which SoftHSM2 and current HSMs expect.
    const parameter: AesGCM = { type: mod.CK_PARAMS_AES_GCM_v240, iv, ivBits: IV_BYTES * 8, aad: Buffer.from(aad, 'utf8'), tagBits: TAG_BYTES * 8 };
    return { mechanism: mod.CKM_AES_GCM, parameter };
  }

  #noKek(version: number | null): KeyProviderError {
    return new KeyProviderError(
      version === null
        ? `no KEK in the PKCS#11 token "${this.#opts.tokenLabel}": rotate to make the first`
        : `no KEK of version ${version} in the PKCS#11 token "${this.#opts.tokenLabel}"`,
    );
  }

  async wrap(dek: Buffer, aad: string): Promise<{ kekVersion: number; wrapped: Buffer }> {
    const { p11 } = this.#library();
    const session = this.#sessionHandle();
    const iv = secureRandom(IV_BYTES);
    // No KEK known, or the object we knew destroyed meanwhile: look at the token again once.
    for (let looked = false; ; looked = true) {
      const version = this.#newest();
      const kek = version === null ? undefined : this.#keks.get(version)?.[0];
      if (version === null || !kek) {
        if (looked) throw this.#noKek(version);
        this.#scan();
        continue;
      }
      try {
        p11.C_EncryptInit(session, this.#gcm(iv, aad), kek.handle);
      } catch (e) {
        if (looked || !this.#gone(e)) throw e;
        this.#scan();
        continue;
      }
      // The token returns ciphertext ‖ tag.
      const sealed = p11.C_Encrypt(session, dek, Buffer.alloc(dek.length + TAG_BYTES));
      return { kekVersion: version, wrapped: Buffer.concat([iv, sealed]) };
    }
  }

  async unwrap(kekVersion: number, wrapped: Buffer, aad: string): Promise<Buffer> {
    const { p11 } = this.#library();
    const session = this.#sessionHandle();
    if (wrapped.length < IV_BYTES + TAG_BYTES) throw new Error('wrapped key too short');
    const mechanism = this.#gcm(wrapped.subarray(0, IV_BYTES), aad);
    // Try each object of the version; if none is known or none opens it, look at the token again once: another
    // process may have rotated, retired, or made a second object of this version.
    const tried = new Set<string>();
    let failure: unknown = null;
    for (let looked = false; ; looked = true) {
      for (const kek of this.#keks.get(kekVersion) ?? []) {
        if (tried.has(kek.handle.toString('hex'))) continue;
        tried.add(kek.handle.toString('hex'));
        try {
          p11.C_DecryptInit(session, mechanism, kek.handle);
        } catch (e) {
          if (this.#gone(e)) continue;
          throw e;
        }
        try {
          return Buffer.from(p11.C_Decrypt(session, wrapped.subarray(IV_BYTES), Buffer.alloc(wrapped.length)));
        } catch (e) {
          failure = e;
        }
      }
      if (looked) break;
      this.#scan();
    }
    // The tag does not verify: another slot's AAD, or altered bytes. Not a provider failure.
    if (failure) throw new Error(`the wrapped key does not open with KEK version ${kekVersion} (${reason(failure)})`);
    throw this.#noKek(kekVersion);
  }

  async rotate(now: number): Promise<number> {
    const { mod, p11 } = this.#library();
    const session = this.#sessionHandle();
    // Look again first: another process may have rotated since we last looked.
    this.#scan();
    const version = (this.#newest() ?? 0) + 1;
    const id = Buffer.concat([Buffer.alloc(8), secureRandom(8)]);
    id.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(now))), 0);
    let handle: Handle;
    try {
      handle = p11.C_GenerateKey(session, { mechanism: mod.CKM_AES_KEY_GEN }, [
        { type: mod.CKA_CLASS, value: mod.CKO_SECRET_KEY },
        { type: mod.CKA_KEY_TYPE, value: mod.CKK_AES },
        { type: mod.CKA_VALUE_LEN, value: 32 },
        { type: mod.CKA_TOKEN, value: true },
        { type: mod.CKA_PRIVATE, value: true },
        { type: mod.CKA_SENSITIVE, value: true },
        { type: mod.CKA_EXTRACTABLE, value: false },
        { type: mod.CKA_ENCRYPT, value: true },
        { type: mod.CKA_DECRYPT, value: true },
        { type: mod.CKA_LABEL, value: `${this.#opts.keyLabel}-v${version}` },
        { type: mod.CKA_ID, value: id },
      ]);
    } catch (e) {
      throw new KeyProviderError(`the PKCS#11 token "${this.#opts.tokenLabel}" did not make a KEK: ${reason(e)}`);
    }
    // First, so that wraps from now on use it.
    this.#keks.set(version, [{ handle, createdAt: now }, ...(this.#keks.get(version) ?? [])]);
    return version;
  }

  async retire(kekVersion: number): Promise<void> {
    const { p11 } = this.#library();
    const session = this.#sessionHandle();
    this.#scan();
    if (kekVersion === this.#newest()) throw new KeyProviderError('the newest KEK cannot be retired: rotate first');
    for (const kek of this.#keks.get(kekVersion) ?? []) {
      try {
        p11.C_DestroyObject(session, kek.handle);
      } catch (e) {
        if (!this.#gone(e)) throw e; // another process retired it first
      }
    }
    this.#keks.delete(kekVersion);
  }

  async close(): Promise<void> {
    const acquired = this.#lib;
    if (!acquired) return;
    this.#lib = null;
    const { lib } = acquired;
    const session = this.#session;
    const slot = this.#slot;
    this.#session = null;
    this.#slot = null;
    this.#keks.clear();
    // Errors here mean the token is gone or the session already invalid: nothing more to undo.
    if (session && slot) {
      // Log out only when no other session of this process relies on the login.
      const slotKey = slot.toString('hex');
      const left = (lib.logins.get(slotKey) ?? 1) - 1;
      if (left > 0) lib.logins.set(slotKey, left);
      else {
        lib.logins.delete(slotKey);
        ignore(() => lib.p11.C_Logout(session));
      }
    }
    if (session) ignore(() => lib.p11.C_CloseSession(session));
    ignore(() => releaseLibrary(acquired.key, lib));
  }
}
