import { createPrivateKey, hash, createPublicKey, type KeyObject, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { SigningAlg } from '../types/shared.js';
import type { Logger } from '../log.js';
import type { Mode, Operation, OperationResults, Store } from '../store/store.js';
import type { Clock } from './clock.js';
import type { Keyring } from './keyring.js';
import { secureRandomBase64url } from './random.js';

export const TOKEN_TYP = 'cvvops-session+jwt';
/** The longest a session (and so a token) lives: API.md `ttlSeconds` ≤ 3600. */
export const MAX_TOKEN_LIFETIME_S = 3600;
/** Any Authorization value longer than this is refused before any cryptography. */
export const MAX_TOKEN_LENGTH = 4096;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Refuses invalid UTF-8 instead of replacing it (one decoder: it keeps no state between calls). */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });
const FORBIDDEN_HEADER_PARAMS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip', 'enc'];

/** The claims of a session token (API.md section 10). */
export interface SessionClaims {
  iss: string;
  aud: string;
  sub: string;
  jti: string;
  iat: number;
  exp: number;
  seq: number;
  mode: Mode;
  ops: Operation[];
  amt?: { value: number; currency: string };
  card: { token: string; brand: string; last4: string; cvvLength: number };
  prev?: string;
  form: string;
  res: OperationResults;
  /** Never issued by this server; checked when a token carries it (verify). */
  nbf?: number;
}

export type TokenFailure = 'malformed' | 'wrong_type' | 'unknown_key' | 'bad_signature' | 'wrong_issuer' | 'expired';
export type VerifyOutcome = { ok: true; claims: SessionClaims } | { ok: false; reason: TokenFailure; claims?: SessionClaims };

interface LoadedKey {
  kid: string;
  alg: string;
  publicJwk: JWK;
  publicKey: KeyObject;
  privateKey: KeyObject;
  /** The encoded protected header this key signs with: {"alg","kid","typ"}. */
  headerB64: string;
  activatedAt: number;
  retiredAt: number | null;
}

/** base64url SHA-256 of a token: the next token's `prev`. */
export const tokenHash = (token: string): string => hash('sha256', token, 'base64url');
export const newJti = (): string => secureRandomBase64url(16);

/**
 * Session-token signing and verification (RFC 8725): one configured
 * asymmetric algorithm, keys chosen by `kid` from our own key set only, no
 * `jwk`/`jku`/`x5u`/`crit`, explicit `typ`, issuer and required claims.
 * Private keys live encrypted in the store; every instance reloads the set so
 * a key rotated by command is picked up everywhere.
 */
export class TokenService {
  #keys = new Map<string, LoadedKey>();
  #active: LoadedKey | null = null;
  #lastReload = 0;
  /** How many signatures this instance has checked (tests prove refusals happen before any cryptography). */
  signatureChecks = 0;
  #reloading: Promise<void> | null = null;
  /**
   * SHA-256 digests of the tokens this process signed lately (insertion
   * order, bounded). A token whose exact bytes hash to one of them is one we
   * signed: its signature needs no checking (finding another token with the
   * same digest is a SHA-256 collision). Everything else about the token is
   * still checked. Saves an Ed25519 verification (the heaviest step of an
   * operation after the database) for the chained tokens of a flow.
   */
  readonly #issued = new Set<string>();
  static readonly ISSUED_REMEMBERED = 20_000;

  constructor(
    private readonly store: Pick<Store, 'signingKeys'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly opts: { alg: SigningAlg; issuer: string; log?: Logger },
  ) {}

  /** Loads the key set, creating the first key if there is none for the configured algorithm. */
  async init(): Promise<void> {
    await this.reload();
    if (!this.#active) {
      await this.rotate('initial');
    }
  }

  get ready(): boolean {
    return this.#active !== null;
  }

  async reload(): Promise<void> {
    if (this.#reloading) return this.#reloading;
    this.#reloading = (async () => {
      const rows = await this.store.signingKeys.list();
      const next = new Map<string, LoadedKey>();
      for (const r of rows) {
        const old = this.#keys.get(r.kid);
        if (old) {
          next.set(r.kid, { ...old, retiredAt: r.retiredAt, activatedAt: r.activatedAt });
          continue;
        }
        const priv = JSON.parse(this.keyring.open('signing-key', r.privateSealed, `signing-key|${r.kid}`).toString('utf8')) as JWK;
        const publicJwk = JSON.parse(r.publicJwk) as JWK;
        next.set(r.kid, {
          kid: r.kid,
          alg: r.alg,
          publicJwk,
          publicKey: createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' }),
          privateKey: createPrivateKey({ key: priv as import('node:crypto').JsonWebKey, format: 'jwk' }),
          headerB64: Buffer.from(JSON.stringify({ alg: r.alg, kid: r.kid, typ: TOKEN_TYP })).toString('base64url'),
          activatedAt: r.activatedAt,
          retiredAt: r.retiredAt,
        });
      }
      this.#keys = next;
      this.#active = [...next.values()].filter((k) => k.alg === this.opts.alg && k.retiredAt === null).sort((a, b) => b.activatedAt - a.activatedAt)[0] ?? null;
      this.#lastReload = this.clock.now();
    })();
    try {
      await this.#reloading;
    } finally {
      this.#reloading = null;
    }
  }

  /** Makes a new signing key active; the previous ones stay verifiable until their tokens have expired. */
  async rotate(reason = 'rotate'): Promise<string> {
    const { publicKey, privateKey } = await generateKeyPair(this.opts.alg, { extractable: true, ...(this.opts.alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const publicJwk = await exportJWK(publicKey);
    const privateJwk = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    const now = this.clock.now();
    await this.store.signingKeys.insert({
      kid,
      alg: this.opts.alg,
      publicJwk: JSON.stringify({ ...publicJwk, kid, alg: this.opts.alg, use: 'sig' }),
      privateSealed: this.keyring.seal('signing-key', JSON.stringify(privateJwk), `signing-key|${kid}`),
      createdAt: now,
      activatedAt: now,
      retiredAt: null,
    });
    await this.store.signingKeys.retireAllExcept(kid, now);
    await this.reload();
    this.opts.log?.info({ audit: true, event: 'signing_key.rotated', kid, reason }, 'signing key activated');
    return kid;
  }

  /** Public keys for offline verification: the active one and every retired one whose tokens may still be alive. */
  jwks(): { keys: JWK[] } {
    const horizon = this.clock.now() - (MAX_TOKEN_LIFETIME_S + 60) * 1000;
    return {
      keys: [...this.#keys.values()]
        .filter((k) => k.retiredAt === null || k.retiredAt > horizon)
        .sort((a, b) => b.activatedAt - a.activatedAt)
        .map((k) => k.publicJwk),
    };
  }

  async sign(claims: SessionClaims): Promise<string> {
    if (this.clock.now() - this.#lastReload > 10_000) await this.reload();
    const key = this.#active;
    if (!key) throw new Error('no active signing key');
    // Compact JWS (RFC 7515) signed with node:crypto directly: Ed25519 (or P-256 with the
    // IEEE P1363 signature encoding JWS uses), synchronously, without a thread-pool hop.
    const input = `${key.headerB64}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    const sig = cryptoSign(key.alg === 'EdDSA' ? null : 'sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${sig.toString('base64url')}`;
    this.#issued.add(tokenHash(token));
    if (this.#issued.size > TokenService.ISSUED_REMEMBERED) this.#issued.delete(this.#issued.values().next().value!);
    return token;
  }

  /**
   * Verifies a token completely except for the session's state. The order of
   * checks fixes which reason a bad token gets: malformed, wrong_type,
   * unknown_key, bad_signature, malformed claims (including an `nbf` still
   * in the future), then expired (with the verified claims, so a caller can
   * still tell whose token it was).
   */
  async verify(token: string): Promise<VerifyOutcome> {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) return { ok: false, reason: 'malformed' };
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) return { ok: false, reason: 'malformed' };
    if (header.typ !== TOKEN_TYP) return { ok: false, reason: 'wrong_type' };
    if (typeof header.alg !== 'string' || (header.alg !== this.opts.alg && !this.#hasKeyFor(header.alg))) return { ok: false, reason: 'bad_signature' };
    for (const p of FORBIDDEN_HEADER_PARAMS) if (p in header) return { ok: false, reason: 'bad_signature' };
    if (typeof header.kid !== 'string') return { ok: false, reason: 'unknown_key' };
    let key = this.#keys.get(header.kid);
    if (!key && this.clock.now() - this.#lastReload > 1000) {
      await this.reload();
      key = this.#keys.get(header.kid);
    }
    if (!key) return { ok: false, reason: 'unknown_key' };
    if (key.alg !== header.alg) return { ok: false, reason: 'bad_signature' };
    const dot = token.lastIndexOf('.');
    const sigB64 = token.slice(dot + 1);
    const sig = Buffer.from(sigB64, 'base64url');
    // Only the canonical encoding: no second spelling of one signature (no malleable tokens).
    if (sig.toString('base64url') !== sigB64) return { ok: false, reason: 'bad_signature' };
    let valid = this.#issued.has(tokenHash(token));
    if (!valid) {
      this.signatureChecks++;
      try {
        valid = cryptoVerify(key.alg === 'EdDSA' ? null : 'sha256', Buffer.from(token.slice(0, dot)), { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, sig);
      } catch {
        valid = false;
      }
    }
    if (!valid) return { ok: false, reason: 'bad_signature' };
    const payloadB64 = token.slice(token.indexOf('.') + 1, dot);
    const payload = Buffer.from(payloadB64, 'base64url');
    if (payload.toString('base64url') !== payloadB64) return { ok: false, reason: 'malformed' };
    let c: SessionClaims;
    try {
      c = JSON.parse(STRICT_UTF8.decode(payload)) as SessionClaims;
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    // An authentic token of another address (an instance started with another PUBLIC_BASE_URL): API.md's wrong_issuer.
    if (c && typeof c === 'object' && typeof c.iss === 'string' && c.iss !== this.opts.issuer) return { ok: false, reason: 'wrong_issuer' };
    if (
      !c ||
      typeof c !== 'object' ||
      c.iss !== this.opts.issuer ||
      typeof c.aud !== 'string' ||
      typeof c.sub !== 'string' ||
      typeof c.jti !== 'string' ||
      !Number.isFinite(c.iat) ||
      !Number.isFinite(c.exp) ||
      !Array.isArray(c.ops)
    ) {
      return { ok: false, reason: 'malformed' };
    }
    // `nbf` (RFC 7519 4.1.5), when present, is checked like `exp`, with no clock skew (`exp` has
    // none either): a token is not accepted before it, and an `nbf` that is not a number is refused.
    // We never issue `nbf`, so only a token signed with our key outside this code can carry one.
    // Its reason: API.md's validateToken reasons have no "not yet valid". `expired` would be
    // wrong (it means past `exp`: operations would answer token_expired and the merchant would
    // conclude the session ran out), and bad_signature, unknown_key and wrong_type name header
    // or signature faults this token does not have. `malformed` is what this code already answers
    // for an authentic token whose claims do not fit the profile we issue (a required claim
    // missing or of the wrong type): the claim set is unacceptable, so operations answer 401
    // invalid_token.
    if ('nbf' in c && (!Number.isFinite(c.nbf) || (c.nbf as number) * 1000 > this.clock.now())) return { ok: false, reason: 'malformed' };
    if (c.exp * 1000 <= this.clock.now()) return { ok: false, reason: 'expired', claims: c };
    return { ok: true, claims: c };
  }

  /** True when some key of ours uses this algorithm (a retired ES256 key after a switch to EdDSA, say). */
  #hasKeyFor(alg: string): boolean {
    for (const k of this.#keys.values()) if (k.alg === alg) return true;
    return false;
  }

  /** Forgets keys retired long enough ago that no token they signed can still be alive. */
  async pruneRetiredKeys(): Promise<number> {
    const n = await this.store.signingKeys.deleteRetiredBefore(this.clock.now() - (MAX_TOKEN_LIFETIME_S + 60) * 1000);
    if (n > 0) await this.reload();
    return n;
  }
}
