/**
 * Types more than one layer uses (README, "Layout"): the domain, the store
 * and the configuration all name them, so they live apart from each.
 */

/** A value encrypted by the keyring (AES-256-GCM), as it is stored: its key version and iv || ciphertext || tag. */
export interface Sealed {
  keyVersion: number;
  /** iv (12) || ciphertext || tag (16) */
  blob: Buffer;
}

/** The session tokens' signature algorithm (CVVOPS_SIGNING_ALG). */
export type SigningAlg = 'EdDSA' | 'ES256';
