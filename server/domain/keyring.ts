import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { gcmOpen, gcmSeal } from './key-provider.js';
import { Secret } from '../secret.js';

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

/**
 * A stored data key: random, wrapped by a KEK of the key provider. Version 1 of a purpose is derived from the
 * master key (local provider) unless a stored entry replaces it (a database moved to another root, or started
 * on an HSM); later versions are always stored. A retired entry keeps its slot, with the key erased.
 */
export interface DataKeyEntry {
  purpose: KeyPurpose;
  version: number;
  kekVersion: number;
  /** base64; '' once retired */
  wrapped: string;
  createdAt: number;
  activeFrom: number;
  /** When nothing sealed with it was left and it was erased. */
  retiredAt?: number | null;
}

/** What a wrapped data key is bound to: its purpose and version. */
export const dataKeyAad = (purpose: string, version: number) => `cvvops/dek/${purpose}/v${version}`;

/** A value encrypted with AES-256-GCM: key version, 96-bit IV, ciphertext and tag (one buffer). */
import type { Sealed } from '../types/shared.js';

export type { Sealed };

/** The first version of every purpose's key: derived from the master key (local provider) or stored wrapped. */
export const CURRENT_VERSION = 1;

/**
 * The server's symmetric keys, one per purpose and version, so a CVV key never decrypts a card number and vice
 * versa. Version 1 of each purpose is derived from the master key with HKDF-SHA256 and a distinct label (local
 * provider), unless a stored data key takes its place; later versions are data keys, unwrapped by the key
 * provider (`data-keys.ts`). Encryption binds each ciphertext to its row with additional authenticated data
 * (merchant id + record id).
 */
export class Keyring {
  readonly #keys = new Map<string, Buffer>();
  /** The slots filled from stored data keys (not derived), and those retired. */
  readonly #stored = new Set<string>();
  readonly #retired = new Set<string>();
  /** Per purpose, its data keys beyond version 1 and when each becomes the one new writes use. */
  readonly #schedule = new Map<KeyPurpose, Array<{ version: number; activeFrom: number }>>();
  readonly #now: () => number;
  /** `master` null: no key is derived (an HSM holds the root); every version comes from a stored data key. */
  constructor(master: Secret<Buffer> | null, opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    if (master === null) return;
    const m = master.expose();
    if (m.length !== 32) throw new Error('master key must be 32 bytes');
    for (const p of KEY_PURPOSES) {
      this.#keys.set(`${p}:${CURRENT_VERSION}`, Buffer.from(hkdfSync('sha256', m, 'cvvops', `cvvops/${p}/v${CURRENT_VERSION}`, 32)));
    }
  }

  /** True if `e` is news to this keyring: a key to load, or a retirement to apply. */
  needs(e: DataKeyEntry): boolean {
    const slot = `${e.purpose}:${e.version}`;
    if (!(KEY_PURPOSES as readonly string[]).includes(e.purpose) || !Number.isInteger(e.version) || e.version < 1) return false;
    return e.retiredAt ? !this.#retired.has(slot) : !this.#stored.has(slot) && !this.#retired.has(slot);
  }

  /**
   * Takes a stored data key, unwrapped: it opens what it sealed at once, and becomes the one new writes use from
   * its `activeFrom`, so every instance has loaded it before any instance writes with it. A stored version 1
   * replaces the derived one.
   */
  addDataKey(e: DataKeyEntry, dek: Buffer): void {
    if (dek.length !== 32) throw new Error(`the ${e.purpose} data key v${e.version} is not 32 bytes`);
    const slot = `${e.purpose}:${e.version}`;
    this.#keys.get(slot)?.fill(0);
    this.#keys.set(slot, dek);
    this.#stored.add(slot);
    if (e.version > CURRENT_VERSION) {
      const list = (this.#schedule.get(e.purpose) ?? []).filter((s) => s.version !== e.version);
      list.push({ version: e.version, activeFrom: e.activeFrom });
      list.sort((a, b) => a.version - b.version);
      this.#schedule.set(e.purpose, list);
    }
  }

  /** Erases a retired version: what it sealed no longer opens here (nothing should be left). */
  retire(purpose: KeyPurpose, version: number): void {
    const slot = `${purpose}:${version}`;
    this.#keys.get(slot)?.fill(0);
    this.#keys.delete(slot);
    this.#retired.add(slot);
    this.#schedule.set(
      purpose,
      (this.#schedule.get(purpose) ?? []).filter((s) => s.version !== version),
    );
  }

  /** True if version 1 of `purpose` is derived from the master key here (no stored data key replaces it). */
  derived(purpose: KeyPurpose): boolean {
    const slot = `${purpose}:${CURRENT_VERSION}`;
    return this.#keys.has(slot) && !this.#stored.has(slot);
  }

  /** The version new writes of `purpose` use now: the newest loaded one whose time has come, else 1. */
  writeVersion(purpose: KeyPurpose): number {
    const now = this.#now();
    let v = CURRENT_VERSION;
    for (const s of this.#schedule.get(purpose) ?? []) if (s.activeFrom <= now && s.version > v) v = s.version;
    return v;
  }

  /** The versions this keyring holds for `purpose` (1, unless retired, and the loaded data keys). */
  versions(purpose: KeyPurpose): Array<{ version: number; activeFrom: number | null }> {
    const first = this.#keys.has(`${purpose}:${CURRENT_VERSION}`) ? [{ version: CURRENT_VERSION, activeFrom: null }] : [];
    return [...first, ...(this.#schedule.get(purpose) ?? [])];
  }

  /**
   * The key of a slot, for the one caller that must move it under another root (`cvvops keys replace-root`):
   * it is wrapped at once and never kept.
   */
  exportForWrap(purpose: KeyPurpose, version: number): Buffer {
    return Buffer.from(this.#key(purpose, version));
  }

  #key(purpose: KeyPurpose, version: number): Buffer {
    const k = this.#keys.get(`${purpose}:${version}`);
    if (!k) throw new Error(`no ${purpose} key of version ${version}`);
    return k;
  }

  seal(purpose: KeyPurpose, plaintext: Buffer | string, aad: string): Sealed {
    const version = this.writeVersion(purpose);
    return { keyVersion: version, blob: gcmSeal(this.#key(purpose, version), typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext, aad) };
  }

  /** Throws if the ciphertext, its tag or its AAD do not match. */
  open(purpose: KeyPurpose, sealed: Sealed, aad: string): Buffer {
    return gcmOpen(this.#key(purpose, sealed.keyVersion), sealed.blob, aad);
  }

  /**
   * Per-record encryption: the data key is derived (HKDF) from the purpose's
   * key and a random share kept apart from the ciphertext. Destroying the
   * share makes the ciphertext useless, even to someone holding the master key.
   */
  sealWithShare(purpose: KeyPurpose, share: Buffer, plaintext: string, aad: string): Sealed {
    const version = this.writeVersion(purpose);
    return { keyVersion: version, blob: gcmSeal(this.#recordKey(purpose, version, share, aad), Buffer.from(plaintext, 'utf8'), aad) };
  }

  openWithShare(purpose: KeyPurpose, share: Buffer, sealed: Sealed, aad: string): Buffer {
    return gcmOpen(this.#recordKey(purpose, sealed.keyVersion, share, aad), sealed.blob, aad);
  }

  #recordKey(purpose: KeyPurpose, version: number, share: Buffer, aad: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#key(purpose, version), share, `cvvops/record/${aad}`, 32));
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
