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
  constructor(master: Secret<Buffer>) {
    const m = master.expose();
    if (m.length !== 32) throw new Error('master key must be 32 bytes');
    const purposes: KeyPurpose[] = [
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
    ];
    for (const p of purposes) {
      this.#keys.set(`${p}:${CURRENT_VERSION}`, Buffer.from(hkdfSync('sha256', m, 'cvvops', `cvvops/${p}/v${CURRENT_VERSION}`, 32)));
    }
  }

  #key(purpose: KeyPurpose, version: number): Buffer {
    const k = this.#keys.get(`${purpose}:${version}`);
    if (!k) throw new Error(`no ${purpose} key of version ${version}`);
    return k;
  }

  seal(purpose: KeyPurpose, plaintext: Buffer | string, aad: string): Sealed {
    const iv = secureRandom(12);
    const c = createCipheriv('aes-256-gcm', this.#key(purpose, CURRENT_VERSION), iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([c.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), c.final()]);
    return { keyVersion: CURRENT_VERSION, blob: Buffer.concat([iv, body, c.getAuthTag()]) };
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
    return this.#sealWith(this.#recordKey(purpose, CURRENT_VERSION, share, aad), CURRENT_VERSION, Buffer.from(plaintext, 'utf8'), aad);
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
