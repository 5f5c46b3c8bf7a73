import { createCipheriv, createDecipheriv, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { Secret } from '../secret.js';
import { secureRandom } from './random.js';

/** What a key is for: each purpose gets its own key, derived from the master key with HKDF. */
export const KEY_PURPOSES = [
  'cvv',
  'card',
  'signing-key',
  'webhook-secret',
  'replay',
  'idempotency',
  'fingerprint',
  'api-key',
  'demo',
  'settings',
  'cavv',
  'key-check',
] as const;
export type KeyPurpose = (typeof KEY_PURPOSES)[number];

/**
 * The purposes whose key can be rotated (`cvvops keys rotate-data`): those that encrypt. The keyed digests
 * (api-key, fingerprint, and the idempotency key's digest) stay on version 1: a new key would change every
 * digest, and the lookups by digest would find nothing.
 */
export const ROTATABLE_PURPOSES = ['cvv', 'card', 'signing-key', 'webhook-secret', 'replay', 'idempotency', 'settings', 'cavv'] as const;
export type RotatablePurpose = (typeof ROTATABLE_PURPOSES)[number];

/** A data key of version 2 or later: random, wrapped by the provider's KEK, used for new writes from `activeFrom`. */
export interface DataKeyEntry {
  purpose: RotatablePurpose;
  version: number;
  kekVersion: number;
  /** base64 */
  wrapped: string;
  createdAt: number;
  activeFrom: number;
}

/** What a wrapped data key is bound to: its purpose and version. */
export const dataKeyAad = (purpose: string, version: number) => `cvvops/dek/${purpose}/v${version}`;

/** A value encrypted with AES-256-GCM: key version, 96-bit IV, ciphertext and tag (one buffer). */
import type { Sealed } from '../types/shared.js';

export type { Sealed };

/** The version every purpose's key has today: derived from the master key (rotation of data keys is not built yet). */
export const CURRENT_VERSION = 1;

/**
 * The server's symmetric keys, all derived from the master key with
 * HKDF-SHA256 and a distinct label, so a CVV key never decrypts a card
 * number and vice versa. Encryption binds each ciphertext to its row with
 * additional authenticated data (merchant id + record id).
 */
export class Keyring {
  readonly #keys = new Map<string, Buffer>();
  /** Per purpose, its data keys beyond version 1 and when each becomes the one new writes use. */
  readonly #schedule = new Map<KeyPurpose, Array<{ version: number; activeFrom: number }>>();
  readonly #now: () => number;
  constructor(master: Secret<Buffer>, opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    const m = master.expose();
    if (m.length !== 32) throw new Error('master key must be 32 bytes');
    for (const p of KEY_PURPOSES) {
      this.#keys.set(`${p}:${CURRENT_VERSION}`, Buffer.from(hkdfSync('sha256', m, 'cvvops', `cvvops/${p}/v${CURRENT_VERSION}`, 32)));
    }
  }

  /**
   * Takes the data keys stored (unwrapped by the provider): every version opens what it sealed at once, and a
   * version becomes the one new writes use from its `activeFrom`, so every instance has loaded it before any
   * instance writes with it. Loading again adds what is new; a key that does not unwrap throws.
   */
  loadDataKeys(entries: DataKeyEntry[], unwrap: (e: DataKeyEntry) => Buffer): number {
    let added = 0;
    for (const e of entries) {
      if (!(ROTATABLE_PURPOSES as readonly string[]).includes(e.purpose) || !Number.isInteger(e.version) || e.version < 2) continue;
      const slot = `${e.purpose}:${e.version}`;
      if (this.#keys.has(slot)) continue;
      const dek = unwrap(e);
      if (dek.length !== 32) throw new Error(`the ${e.purpose} data key v${e.version} is not 32 bytes`);
      this.#keys.set(slot, dek);
      const list = this.#schedule.get(e.purpose) ?? [];
      list.push({ version: e.version, activeFrom: e.activeFrom });
      list.sort((a, b) => a.version - b.version);
      this.#schedule.set(e.purpose, list);
      added++;
    }
    return added;
  }

  /** The version new writes of `purpose` use now: the newest loaded one whose time has come, else 1. */
  writeVersion(purpose: KeyPurpose): number {
    const now = this.#now();
    let v = CURRENT_VERSION;
    for (const s of this.#schedule.get(purpose) ?? []) if (s.activeFrom <= now && s.version > v) v = s.version;
    return v;
  }

  /** The versions this keyring holds for `purpose` (1, derived from the master key, and the loaded data keys). */
  versions(purpose: KeyPurpose): Array<{ version: number; activeFrom: number | null }> {
    return [{ version: CURRENT_VERSION, activeFrom: null }, ...(this.#schedule.get(purpose) ?? [])];
  }

  #key(purpose: KeyPurpose, version: number): Buffer {
    const k = this.#keys.get(`${purpose}:${version}`);
    if (!k) throw new Error(`no ${purpose} key of version ${version}`);
    return k;
  }

  seal(purpose: KeyPurpose, plaintext: Buffer | string, aad: string): Sealed {
    const version = this.writeVersion(purpose);
    const iv = secureRandom(12);
    const c = createCipheriv('aes-256-gcm', this.#key(purpose, version), iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([c.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), c.final()]);
    return { keyVersion: version, blob: Buffer.concat([iv, body, c.getAuthTag()]) };
  }

  /** Throws if the ciphertext, its tag or its AAD do not match. */
  open(purpose: KeyPurpose, sealed: Sealed, aad: string): Buffer {
    const { blob } = sealed;
    if (blob.length < 28) throw new Error('sealed value too short');
    const d = createDecipheriv('aes-256-gcm', this.#key(purpose, sealed.keyVersion), blob.subarray(0, 12));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(blob.subarray(blob.length - 16));
    return Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
  }

  /**
   * Per-record encryption: the data key is derived (HKDF) from the purpose's
   * key and a random share kept apart from the ciphertext. Destroying the
   * share makes the ciphertext useless, even to someone holding the master key.
   */
  sealWithShare(purpose: KeyPurpose, share: Buffer, plaintext: string, aad: string): Sealed {
    const version = this.writeVersion(purpose);
    return this.#sealWith(this.#recordKey(purpose, version, share, aad), version, Buffer.from(plaintext, 'utf8'), aad);
  }

  openWithShare(purpose: KeyPurpose, share: Buffer, sealed: Sealed, aad: string): Buffer {
    return this.#openWith(this.#recordKey(purpose, sealed.keyVersion, share, aad), sealed, aad);
  }

  #recordKey(purpose: KeyPurpose, version: number, share: Buffer, aad: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#key(purpose, version), share, `cvvops/record/${aad}`, 32));
  }

  #sealWith(key: Buffer, version: number, plaintext: Buffer, aad: string): Sealed {
    const iv = secureRandom(12);
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([c.update(plaintext), c.final()]);
    return { keyVersion: version, blob: Buffer.concat([iv, body, c.getAuthTag()]) };
  }

  #openWith(key: Buffer, sealed: Sealed, aad: string): Buffer {
    const { blob } = sealed;
    if (blob.length < 28) throw new Error('sealed value too short');
    const d = createDecipheriv('aes-256-gcm', key, blob.subarray(0, 12));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(blob.subarray(blob.length - 16));
    return Buffer.concat([d.update(blob.subarray(12, blob.length - 16)), d.final()]);
  }

  /** A keyed, deterministic digest (HMAC-SHA256, hex): card fingerprints, API key hashes. */
  mac(purpose: 'fingerprint' | 'api-key' | 'idempotency', value: string): string {
    return createHmac('sha256', this.#key(purpose, CURRENT_VERSION)).update(value, 'utf8').digest('hex');
  }
}

export function constantTimeEqualHex(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}
