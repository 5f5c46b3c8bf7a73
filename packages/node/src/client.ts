import { CvvOpsError } from './errors.js';
import { type CvvOpsLogEntry, HttpClient } from './http.js';
import { Cards, CvcSessions } from './resources/cards.js';
import { Events, MerchantResource, WebhookEndpoints } from './resources/merchant.js';
import { Sessions } from './resources/sessions.js';
import { TokenVerifier, type VerifyTokenOptions } from './tokens.js';
import type { SessionClaims } from './types.js';
import { Webhooks } from './webhooks.js';

export interface CvvOpsOptions {
  /** The cvvops server, e.g. `https://cvv.example` (its PUBLIC_BASE_URL). */
  baseUrl: string;
  /** Per attempt, in milliseconds (default 30 000). */
  timeoutMs?: number;
  /** Retries after a failed attempt (default 2). See the README, "Retries", for what is retried when. */
  maxRetries?: number;
  /** The `iss` tokens must carry: the server's PUBLIC_BASE_URL (default `baseUrl`). */
  issuer?: string;
  /** The `aud` tokens must carry: your merchant id. Default: read once from GET /Merchant. */
  merchantId?: string;
  /** Where the signing keys are (default `${baseUrl}/.well-known/jwks.json`). */
  jwksUrl?: string;
  /** The least time between two JWKS fetches caused by an unknown `kid` (default 30 000 ms). */
  jwksCooldownMs?: number;
  /** How long a fetched JWKS is used before it is fetched again (default 600 000 ms). */
  jwksCacheMaxAgeMs?: number;
  /**
   * The clock `verifyToken` reads (milliseconds since the epoch; default `Date.now`): token
   * expiry when no `currentDate` is given, the JWKS cache's age and its cooldown. For tests.
   */
  now?: () => number;
  /** The first retry's backoff, doubled per retry, with jitter (default 500 ms). */
  retryBaseDelayMs?: number;
  /** Receives one entry per response, retry and failure: method, path, status, code, request id. Never a body or a header. */
  log?: (entry: CvvOpsLogEntry) => void;
  /** A fetch implementation (default the global one: Node 20's). */
  fetch?: typeof fetch;
}

const API_KEY = /^sk_(test|live)_[A-Za-z0-9_-]{1,200}$/;
const INSPECT = Symbol.for('nodejs.util.inspect.custom');

function configError(message: string): CvvOpsError {
  return new CvvOpsError({ code: 'invalid_configuration', message });
}

function checkUrl(name: string, value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw configError(`${name} must be an absolute http(s) URL.`);
  }
  if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.search || u.hash || u.username || u.password) {
    throw configError(`${name} must be an http(s) URL without credentials, query or fragment.`);
  }
  return value.replace(/\/+$/, '');
}

/**
 * The cvvops client for a merchant's server.
 *
 * ```ts
 * const cvvops = new CvvOps(process.env.CVVOPS_API_KEY!, { baseUrl: 'https://cvv.example' });
 * const card = await cvvops.cards.create({ number, expMonth: 12, expYear: 2030 });
 * const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv', 'charge'], amount: { value: 1999, currency: 'EUR' } });
 * ```
 *
 * The API key is kept in a private field: it is in no property, error, log entry,
 * `util.inspect` or `JSON.stringify` output of the client.
 */
export class CvvOps {
  readonly cards: Cards;
  readonly cvcSessions: CvcSessions;
  readonly sessions: Sessions;
  readonly merchant: MerchantResource;
  readonly webhookEndpoints: WebhookEndpoints;
  readonly events: Events;
  /** Webhook signatures (no request is made). */
  readonly webhooks: Webhooks;
  readonly baseUrl: string;
  /** The API key's mode. */
  readonly mode: 'test' | 'live';
  readonly #apiKey: string;
  readonly #verifier: TokenVerifier;
  #merchantId: Promise<string> | null = null;

  constructor(apiKey: string, options: CvvOpsOptions) {
    // The message never repeats the value: a mistyped key is still a key.
    if (typeof apiKey !== 'string' || !API_KEY.test(apiKey)) throw configError('The API key must be an sk_test_… or sk_live_… key.');
    if (!options || typeof options.baseUrl !== 'string') throw configError('options.baseUrl is required.');
    this.#apiKey = apiKey;
    this.mode = apiKey.startsWith('sk_live_') ? 'live' : 'test';
    this.baseUrl = checkUrl('baseUrl', options.baseUrl);
    const timeoutMs = options.timeoutMs ?? 30_000;
    const maxRetries = options.maxRetries ?? 2;
    if (!(timeoutMs > 0)) throw configError('timeoutMs must be a positive number.');
    if (!Number.isInteger(maxRetries) || maxRetries < 0) throw configError('maxRetries must be an integer ≥ 0.');
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (typeof fetchImpl !== 'function') throw configError('No fetch: Node 20 or later, or options.fetch.');
    const http = new HttpClient({
      baseUrl: this.baseUrl,
      apiKey: () => this.#apiKey,
      timeoutMs,
      maxRetries,
      fetch: fetchImpl,
      log: options.log,
      retryBaseDelayMs: options.retryBaseDelayMs ?? 500,
    });
    this.cards = new Cards(http);
    this.cvcSessions = new CvcSessions(http);
    this.sessions = new Sessions(http);
    this.merchant = new MerchantResource(http);
    this.webhookEndpoints = new WebhookEndpoints(http);
    this.events = new Events(http);
    this.webhooks = new Webhooks();
    if (options.merchantId !== undefined) this.#merchantId = Promise.resolve(options.merchantId);
    this.#verifier = new TokenVerifier({
      http,
      jwksUrl: options.jwksUrl !== undefined ? checkUrl('jwksUrl', options.jwksUrl) : `${this.baseUrl}/.well-known/jwks.json`,
      issuer: (options.issuer ?? this.baseUrl).replace(/\/+$/, ''),
      merchantId: () => this.#merchant(),
      mode: this.mode,
      cooldownMs: options.jwksCooldownMs ?? 30_000,
      cacheMaxAgeMs: options.jwksCacheMaxAgeMs ?? 600_000,
      now: options.now ?? Date.now,
    });
  }

  /**
   * Verifies a session token offline, with the server's published keys: signature (the key by
   * `kid`, `alg` pinned to that key's), `typ` `cvvops-session+jwt`, `iss` (the server's
   * PUBLIC_BASE_URL: `options.issuer`, default `baseUrl`), `aud` (your merchant id), the key's
   * mode, `exp`, `nbf` and, when given, `maxAgeSeconds` against `iat`. Returns the claims;
   * throws a `CvvOpsError` (`invalid_token` or `token_expired`, with `reason`) otherwise.
   *
   * Offline verification proves the token is authentic and unexpired, not that it is still the
   * session's current one: `sessions.validateToken` answers that.
   */
  verifyToken(token: string, options?: VerifyTokenOptions): Promise<SessionClaims> {
    return this.#verifier.verify(token, options);
  }

  /** The merchant id tokens are checked against (GET /Merchant, once). */
  #merchant(): Promise<string> {
    if (!this.#merchantId) {
      const p = this.merchant.retrieve().then((m) => m.id);
      p.catch(() => {
        if (this.#merchantId === p) this.#merchantId = null;
      });
      this.#merchantId = p;
    }
    return this.#merchantId;
  }

  /** How many times the JWKS was fetched (for tests and diagnostics). */
  get jwksFetches(): number {
    return this.#verifier.fetches;
  }

  [INSPECT](): string {
    return `CvvOps { baseUrl: '${this.baseUrl}', mode: '${this.mode}', apiKey: '[REDACTED]' }`;
  }

  toJSON(): Record<string, string> {
    return { baseUrl: this.baseUrl, mode: this.mode, apiKey: '[REDACTED]' };
  }
}
