import { randomBytes, randomFillSync } from 'node:crypto';

/**
 * Cryptographically secure random bytes for the hot path (ids, jtis, IVs,
 * CVV key shares), drawn from an 8 KiB pool refilled by one call into
 * OpenSSL's CSPRNG. The benchmark's profile showed one `randomBytes` call per
 * value costing more than the bytes themselves (what `crypto.randomUUID`
 * avoids the same way). Handed-out bytes are copied and wiped from the pool:
 * each value is used once and is not kept beside later ones.
 */
const POOL = Buffer.alloc(8192);
let offset = POOL.length;

function take(n: number): number {
  if (offset + n > POOL.length) {
    randomFillSync(POOL);
    offset = 0;
  }
  const at = offset;
  offset += n;
  return at;
}

/** `n` secure random bytes, a fresh buffer. */
export function secureRandom(n: number): Buffer {
  if (n > 256) return randomBytes(n);
  const at = take(n);
  const out = Buffer.allocUnsafe(n);
  POOL.copy(out, 0, at, at + n);
  POOL.fill(0, at, at + n);
  return out;
}

/** `n` secure random bytes as base64url (ids and jtis). */
export function secureRandomBase64url(n: number): string {
  if (n > 256) return randomBytes(n).toString('base64url');
  const at = take(n);
  const s = POOL.toString('base64url', at, at + n);
  POOL.fill(0, at, at + n);
  return s;
}
