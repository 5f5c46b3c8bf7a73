import { secureRandomBase64url } from './random.js';

/** Object id prefixes of API.md section 2. */
export type IdPrefix = 'mer' | 'key' | 'cvo' | 'tok' | 'cvc' | 'ch' | 'tds' | 'frm' | 'whe' | 'evt' | 'req';

/** An opaque, prefixed id carrying 160 bits of randomness (base64url, 27 characters). */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${secureRandomBase64url(20)}`;
}
