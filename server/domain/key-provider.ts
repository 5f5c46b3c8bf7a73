import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import type { Secret } from '../secret.js';
import { secureRandom } from './random.js';

/**
 * Where the key-encryption key (KEK) lives, and the only code that uses it: data keys are wrapped and
 * unwrapped here, and nothing else ever sees the KEK. `local` (the master key, from the environment or
 * a file) is the one built; a `pkcs11` provider (an HSM: the KEK never leaves the token) or a cloud
 * KMS (AWS KMS, Vault Transit: wrap and unwrap are calls) implement the same three members.
 */
export interface KeyProvider {
  readonly name: string;
  /** The KEK version new wraps use. */
  readonly kekVersion: number;
  /** `aad` binds the wrapped key to its purpose and version: a wrapped key moved to another slot does not open. */
  wrap(dek: Buffer, aad: string): { kekVersion: number; wrapped: Buffer };
  unwrap(kekVersion: number, wrapped: Buffer, aad: string): Buffer;
}

/** The KEK derived from CVVOPS_MASTER_KEY (HKDF-SHA256, its own label), wrapping with AES-256-GCM. */
export class LocalKeyProvider implements KeyProvider {
  readonly name = 'local';
  readonly kekVersion = 1;
  readonly #kek: Buffer;

  constructor(master: Secret<Buffer>) {
    this.#kek = Buffer.from(hkdfSync('sha256', master.expose(), 'cvvops', 'cvvops/kek/v1', 32));
  }

  wrap(dek: Buffer, aad: string): { kekVersion: number; wrapped: Buffer } {
    const iv = secureRandom(12);
    const c = createCipheriv('aes-256-gcm', this.#kek, iv);
    c.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([c.update(dek), c.final()]);
    return { kekVersion: this.kekVersion, wrapped: Buffer.concat([iv, body, c.getAuthTag()]) };
  }

  unwrap(kekVersion: number, wrapped: Buffer, aad: string): Buffer {
    if (kekVersion !== this.kekVersion) throw new Error(`no KEK of version ${kekVersion} in the local provider`);
    if (wrapped.length !== 12 + 32 + 16) throw new Error('a wrapped data key is 60 bytes');
    const d = createDecipheriv('aes-256-gcm', this.#kek, wrapped.subarray(0, 12));
    d.setAAD(Buffer.from(aad, 'utf8'));
    d.setAuthTag(wrapped.subarray(wrapped.length - 16));
    return Buffer.concat([d.update(wrapped.subarray(12, wrapped.length - 16)), d.final()]);
  }
}
