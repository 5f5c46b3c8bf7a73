import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { CvvOpsError, type TokenFailureReason } from './errors.js';
import type { HttpClient } from './http.js';
import type { SessionClaims } from './types.js';

export const TOKEN_TYP = 'cvvops-session+jwt';
/** The server refuses longer Authorization values before any cryptography; so does the SDK. */
export const MAX_TOKEN_LENGTH = 4096;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Header parameters that would let a token choose its own key or change how it is read (RFC 8725). */
const FORBIDDEN_HEADER_PARAMS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip', 'enc'];
type Alg = 'EdDSA' | 'ES256';

export interface VerifyTokenOptions {
  /** Refuse a token issued (`iat`) more than this many seconds ago (reason `too_old`). */
  maxAgeSeconds?: number;
  /** Leeway for `exp`, `nbf` and `maxAgeSeconds` against clock skew (default 0, like the server). */
  clockToleranceSeconds?: number;
  /** The time to verify at (default now). */
  currentDate?: Date;
}

export interface TokenVerifierConfig {
  http: HttpClient;
  jwksUrl: string;
  issuer: string;
  /** The `aud` every token must carry: the merchant id. */
  merchantId: () => Promise<string>;
  /** `test` or `live`: the API key's mode; a token of the other mode is `wrong_merchant`, as validateToken says. */
  mode: 'test' | 'live';
  cooldownMs: number;
  cacheMaxAgeMs: number;
  /** Milliseconds since the epoch. */
  now: () => number;
}

interface KeySet {
  keys: Map<string, { alg: Alg; key: KeyObject }>;
  fetchedAt: number;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function refuse(reason: TokenFailureReason): CvvOpsError {
  const expired = reason === 'expired' || reason === 'too_old';
  return new CvvOpsError({
    code: expired ? 'token_expired' : 'invalid_token',
    reason,
    message: `The session token was refused: ${reason.replace(/_/g, ' ')}.`,
  });
}

/** The algorithm a JWK is for, from its key type and curve; a JWK whose `alg` says otherwise is not used. */
function algOf(jwk: Record<string, unknown>): Alg | undefined {
  let alg: Alg | undefined;
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') alg = 'EdDSA';
  else if (jwk.kty === 'EC' && jwk.crv === 'P-256') alg = 'ES256';
  if (!alg) return undefined;
  if (jwk.alg !== undefined && jwk.alg !== alg) return undefined;
  if (jwk.use !== undefined && jwk.use !== 'sig') return undefined;
  return alg;
}

/**
 * Offline verification of session tokens with the server's JWKS: the key chosen by `kid` from
 * that set only, `alg` pinned to the key's own, `typ`, `iss`, `aud` (the merchant), `mode`,
 * `exp`, `nbf` and an optional maximum age. The set is cached, fetched again when it is older
 * than `cacheMaxAgeMs`, or when a token names a `kid` it does not hold (a key rotation), at most
 * once per `cooldownMs` so unknown kids cannot make the SDK hammer the server.
 */
export class TokenVerifier {
  #set: KeySet | null = null;
  #lastFetch = -Infinity;
  #inflight: Promise<KeySet> | null = null;
  /** How many times the key set was fetched (tests). */
  fetches = 0;

  constructor(private readonly cfg: TokenVerifierConfig) {}

  async verify(token: string, opts: VerifyTokenOptions = {}): Promise<SessionClaims> {
    const tol = (opts.clockToleranceSeconds ?? 0) * 1000;
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw refuse('malformed');
    const [h, p, s] = token.split('.') as [string, string, string];
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(STRICT_UTF8.decode(Buffer.from(h, 'base64url'))) as typeof header;
    } catch {
      throw refuse('malformed');
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) throw refuse('malformed');
    if (header.typ !== TOKEN_TYP) throw refuse('wrong_type');
    for (const param of FORBIDDEN_HEADER_PARAMS) if (param in header) throw refuse('bad_signature');
    if (header.alg !== 'EdDSA' && header.alg !== 'ES256') throw refuse('bad_signature');
    if (typeof header.kid !== 'string' || header.kid === '') throw refuse('unknown_key');
    const key = await this.#key(header.kid);
    if (!key) throw refuse('unknown_key');
    // The algorithm is the key's, never the token's choice.
    if (key.alg !== header.alg) throw refuse('bad_signature');
    const sig = Buffer.from(s, 'base64url');
    if (sig.toString('base64url') !== s) throw refuse('bad_signature');
    let ok: boolean;
    try {
      ok = cryptoVerify(key.alg === 'EdDSA' ? null : 'sha256', Buffer.from(`${h}.${p}`), { key: key.key, dsaEncoding: 'ieee-p1363' }, sig);
    } catch {
      ok = false;
    }
    if (!ok) throw refuse('bad_signature');

    const payload = Buffer.from(p, 'base64url');
    if (payload.toString('base64url') !== p) throw refuse('malformed');
    let c: Record<string, unknown>;
    try {
      c = JSON.parse(STRICT_UTF8.decode(payload)) as typeof c;
    } catch {
      throw refuse('malformed');
    }
    if (!c || typeof c !== 'object' || Array.isArray(c)) throw refuse('malformed');
    if (c.iss !== this.cfg.issuer) throw refuse(typeof c.iss === 'string' ? 'wrong_issuer' : 'malformed');
    if (
      typeof c.aud !== 'string' ||
      typeof c.sub !== 'string' ||
      typeof c.jti !== 'string' ||
      !Number.isFinite(c.iat) ||
      !Number.isFinite(c.exp) ||
      !Array.isArray(c.ops) ||
      typeof c.mode !== 'string'
    )
      throw refuse('malformed');
    if (c.aud !== (await this.cfg.merchantId()) || c.mode !== this.cfg.mode) throw refuse('wrong_merchant');
    const now = opts.currentDate?.getTime() ?? this.cfg.now();
    if ('nbf' in c && (!Number.isFinite(c.nbf) || (c.nbf as number) * 1000 > now + tol)) throw refuse('malformed');
    if ((c.exp as number) * 1000 <= now - tol) throw refuse('expired');
    if (opts.maxAgeSeconds !== undefined && now - (c.iat as number) * 1000 > opts.maxAgeSeconds * 1000 + tol) throw refuse('too_old');
    return c as unknown as SessionClaims;
  }

  async #key(kid: string): Promise<{ alg: Alg; key: KeyObject } | undefined> {
    let set = this.#set;
    if (!set || this.cfg.now() - set.fetchedAt > this.cfg.cacheMaxAgeMs) set = await this.#refresh(set);
    let key = set.keys.get(kid);
    if (!key && this.cfg.now() - this.#lastFetch >= this.cfg.cooldownMs) {
      set = await this.#refresh(set);
      key = set.keys.get(kid);
    }
    return key;
  }

  /** Fetches the set (one fetch at a time); when that fails and an older set is known, keeps using it. */
  async #refresh(current: KeySet | null): Promise<KeySet> {
    if (!this.#inflight) {
      this.#lastFetch = this.cfg.now();
      this.#inflight = this.#fetch().finally(() => {
        this.#inflight = null;
      });
    }
    try {
      this.#set = await this.#inflight;
      return this.#set;
    } catch (err) {
      if (current) return current;
      throw err;
    }
  }

  async #fetch(): Promise<KeySet> {
    this.fetches++;
    const body = await this.cfg.http.request<{ keys?: unknown }>({
      method: 'GET',
      path: '/.well-known/jwks.json',
      url: this.cfg.jwksUrl,
      auth: false,
      retry: 'repeatable',
    });
    if (!body || typeof body !== 'object' || !Array.isArray(body.keys)) {
      throw new CvvOpsError({ code: 'invalid_response', message: 'The JWKS is not {"keys": [...]}.' });
    }
    const keys = new Map<string, { alg: Alg; key: KeyObject }>();
    for (const jwk of body.keys as Array<Record<string, unknown>>) {
      if (!jwk || typeof jwk !== 'object' || typeof jwk.kid !== 'string') continue;
      const alg = algOf(jwk);
      if (!alg) continue;
      try {
        // Only the public members: whatever else a JWK carries is not ours to use.
        const pub = alg === 'EdDSA' ? { kty: 'OKP', crv: 'Ed25519', x: jwk.x } : { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
        keys.set(jwk.kid, { alg, key: createPublicKey({ key: pub as import('node:crypto').JsonWebKey, format: 'jwk' }) });
      } catch {
        // A key Node cannot read verifies nothing.
      }
    }
    return { keys, fetchedAt: this.cfg.now() };
  }
}
