import { randomUUID } from 'node:crypto';
import { CvvOpsError } from './errors.js';
import { VERSION } from './version.js';

/** Per-call options of every API method. */
export interface RequestOptions {
  /**
   * For POSTs: the `Idempotency-Key` to send. Without one, the SDK makes one per call (and
   * reuses it across that call's retries). Pass your own to make retries across processes
   * (a job runner that restarts, say) return the first result too.
   */
  idempotencyKey?: string;
  /** This call's timeout per attempt, in milliseconds (default: the client's). */
  timeoutMs?: number;
  /** This call's retry budget (default: the client's). */
  maxRetries?: number;
  /** Aborts the call (and its retries). */
  signal?: AbortSignal;
}

/**
 * What a request may be retried after. See the package README, "Retries".
 * - `repeatable`: a repeat cannot do anything the first attempt did not (reads, Idempotency-Key
 *   endpoints, cancel, unblock, PATCH, DELETE): retried on connection errors, timeouts, 429 and 5xx.
 * - `once`: a repeat would act again (reissue rotates the token again, a webhook endpoint would be
 *   created twice): retried only when the request certainly did not reach the server (the
 *   connection could not be opened) or was refused before any work (429 `rate_limited`).
 */
export type RetryPolicy = 'repeatable' | 'once';

export interface RequestSpec {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  body?: unknown;
  retry: RetryPolicy;
  /** false: no Authorization header (the public JWKS). */
  auth?: boolean;
  /** A DELETE: a 404/410 after an attempt that may have reached the server means it is gone: success. */
  goneIsSuccess?: boolean;
  /** An absolute URL instead of baseUrl + path. */
  url?: string;
  options?: RequestOptions | undefined;
}

/** What the SDK tells an optional logger: never a body, a header, the key or a token. */
export interface CvvOpsLogEntry {
  event: 'response' | 'retry' | 'failure';
  method: string;
  path: string;
  attempt: number;
  status?: number;
  code?: string;
  requestId?: string;
  durationMs?: number;
  /** For `retry`: how long the SDK waits before the next attempt. */
  delayMs?: number;
}

export interface HttpConfig {
  baseUrl: string;
  apiKey: () => string;
  timeoutMs: number;
  maxRetries: number;
  fetch: typeof fetch;
  log?: ((entry: CvvOpsLogEntry) => void) | undefined;
  /** First backoff step (doubled per retry, with jitter); tests shorten it. */
  retryBaseDelayMs: number;
}

/** Longest Retry-After the SDK waits for on its own; a longer one is the caller's decision. */
export const MAX_RETRY_AFTER_MS = 60_000;
const MAX_BACKOFF_MS = 8_000;
/** Errors of the connect phase: nothing was sent. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);

type Failure = { kind: 'answer'; error: CvvOpsError } | { kind: 'network'; error: CvvOpsError; sent: boolean };

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * One path segment from an id, percent-encoded, so no id ('a/b', 'x?y') can name another path than
 * the one the method is for. '.' and '..' (also percent-encoded, URLs resolve them) are refused.
 */
export function seg(name: string, id: string): string {
  if (typeof id !== 'string' || id === '' || id === '.' || id === '..') {
    throw new CvvOpsError({ code: 'invalid_request', message: `${name} must be an id (a non-empty string other than "." and "..").` });
  }
  return encodeURIComponent(id);
}

/** Parses `Retry-After` (seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Exponential backoff with jitter: base·2^n, capped, then a random 50–100 % of it. */
export function backoffMs(retry: number, base: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, base * 2 ** retry);
  return Math.round(ceiling * (0.5 + Math.random() * 0.5));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function networkCode(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

/**
 * The transport: one place that sends, times out, retries and turns answers into values or
 * `CvvOpsError`s. The API key is read through a function at the moment a header is built, and
 * never put into a message, a log entry or an error.
 */
export class HttpClient {
  constructor(private readonly cfg: HttpConfig) {}

  get baseUrl(): string {
    return this.cfg.baseUrl;
  }

  async request<T>(spec: RequestSpec): Promise<T> {
    const o = spec.options ?? {};
    const maxRetries = o.maxRetries ?? this.cfg.maxRetries;
    if (o.idempotencyKey !== undefined && (typeof o.idempotencyKey !== 'string' || !IDEMPOTENCY_KEY.test(o.idempotencyKey))) {
      throw new CvvOpsError({ code: 'invalid_request', message: 'idempotencyKey must be 1-255 printable ASCII characters.' });
    }
    const idempotencyKey = spec.method === 'POST' ? (o.idempotencyKey ?? `cvvops-node-${randomUUID()}`) : undefined;
    let mayHaveReached = false;
    for (let attempt = 0; ; attempt++) {
      const started = Date.now();
      const result = await this.#attempt(spec, idempotencyKey, o);
      if (result.ok) {
        this.#log({
          event: 'response',
          method: spec.method,
          path: spec.path,
          attempt,
          status: result.status,
          requestId: result.requestId,
          durationMs: Date.now() - started,
        });
        return result.value as T;
      }
      const f = result.failure;
      const e = f.error;
      if (e.code === 'aborted') throw e;
      if (spec.goneIsSuccess && mayHaveReached && f.kind === 'answer' && (e.status === 404 || e.status === 410)) {
        // The earlier attempt deleted it and its answer was lost: what the caller asked for is done.
        this.#log({
          event: 'response',
          method: spec.method,
          path: spec.path,
          attempt,
          status: e.status,
          requestId: e.requestId,
          durationMs: Date.now() - started,
        });
        return undefined as T;
      }
      if (f.kind === 'network' ? f.sent : (e.status ?? 0) >= 500) mayHaveReached = true;
      const delay = attempt < maxRetries ? this.#retryDelay(spec, f, attempt, idempotencyKey !== undefined) : undefined;
      if (delay === undefined) {
        this.#log({
          event: 'failure',
          method: spec.method,
          path: spec.path,
          attempt,
          code: e.code,
          ...(e.status !== undefined ? { status: e.status } : {}),
          ...(e.requestId ? { requestId: e.requestId } : {}),
          durationMs: Date.now() - started,
        });
        throw e;
      }
      this.#log({
        event: 'retry',
        method: spec.method,
        path: spec.path,
        attempt,
        code: e.code,
        ...(e.status !== undefined ? { status: e.status } : {}),
        ...(e.requestId ? { requestId: e.requestId } : {}),
        delayMs: delay,
      });
      try {
        await sleep(delay, o.signal);
      } catch (reason) {
        throw new CvvOpsError({ code: 'aborted', message: 'The request was aborted.', cause: reason });
      }
    }
  }

  /** How long to wait before retrying, or undefined for no retry. */
  #retryDelay(spec: RequestSpec, f: Failure, attempt: number, keyed: boolean): number | undefined {
    const e = f.error;
    let retry: boolean;
    if (f.kind === 'network') {
      retry = !f.sent || spec.retry === 'repeatable';
    } else if (e.status === 429) {
      // rate_limited is answered before any work; attempts_exhausted will not change by waiting.
      retry = e.code !== 'attempts_exhausted';
    } else if (e.status === 409 && e.code === 'idempotency_key_reused' && keyed && e.retryAfterSeconds !== undefined) {
      // The first request with this key (ours, whose answer was lost) is still running: wait for its outcome.
      retry = true;
    } else {
      retry = (e.status ?? 0) >= 500 && spec.retry === 'repeatable';
    }
    if (!retry) return undefined;
    if (e.retryAfterSeconds !== undefined) {
      const ms = e.retryAfterSeconds * 1000;
      return ms > MAX_RETRY_AFTER_MS ? undefined : ms;
    }
    return backoffMs(attempt, this.cfg.retryBaseDelayMs);
  }

  async #attempt(
    spec: RequestSpec,
    idempotencyKey: string | undefined,
    o: RequestOptions,
  ): Promise<{ ok: true; value: unknown; status: number; requestId: string | undefined } | { ok: false; failure: Failure }> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': `cvvops-node/${VERSION} node/${process.version}`,
    };
    if (spec.auth !== false) headers.authorization = `Bearer ${this.cfg.apiKey()}`;
    if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
    let body: string | undefined;
    if (spec.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(spec.body);
    }
    const timeoutMs = o.timeoutMs ?? this.cfg.timeoutMs;
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    const onAbort = () => ac.abort();
    if (o.signal?.aborted) ac.abort();
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const url = spec.url ?? `${this.cfg.baseUrl}${spec.path}`;
    try {
      let res: Response;
      try {
        res = await this.cfg.fetch(url, { method: spec.method, headers, ...(body !== undefined ? { body } : {}), signal: ac.signal, redirect: 'error' });
      } catch (err) {
        return { ok: false, failure: this.#networkFailure(err, timedOut, timeoutMs, o, spec, false) };
      }
      const requestId = res.headers.get('x-request-id') ?? undefined;
      let text: string;
      try {
        text = await res.text();
      } catch (err) {
        // The answer started but broke off: the server had the request.
        return { ok: false, failure: this.#networkFailure(err, timedOut, timeoutMs, o, spec, true) };
      }
      if (res.ok) {
        if (res.status === 204 || text === '') return { ok: true, value: undefined, status: res.status, requestId };
        try {
          return { ok: true, value: JSON.parse(text), status: res.status, requestId };
        } catch {
          return {
            ok: false,
            failure: {
              kind: 'answer',
              error: new CvvOpsError({
                code: 'invalid_response',
                status: res.status,
                message: `cvvops answered ${res.status} with a body that is not JSON.`,
                ...(requestId ? { requestId } : {}),
              }),
            },
          };
        }
      }
      return { ok: false, failure: { kind: 'answer', error: this.#apiError(res, text, requestId) } };
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  #apiError(res: Response, text: string, requestId: string | undefined): CvvOpsError {
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
    const retryAfterSeconds = retryAfterMs === undefined ? undefined : Math.ceil(retryAfterMs / 1000);
    let parsed: { error?: { code?: unknown; message?: unknown; requestId?: unknown } } | undefined;
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    const err = parsed && typeof parsed === 'object' ? parsed.error : undefined;
    if (err && typeof err.code === 'string') {
      const rid = typeof err.requestId === 'string' ? err.requestId : requestId;
      return new CvvOpsError({
        status: res.status,
        code: err.code,
        message: typeof err.message === 'string' ? err.message : err.code,
        ...(rid ? { requestId: rid } : {}),
        ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
      });
    }
    return new CvvOpsError({
      status: res.status,
      code: 'api_error',
      message: `cvvops answered ${res.status} ${res.statusText}`.trim() + '.',
      ...(requestId ? { requestId } : {}),
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
    });
  }

  #networkFailure(err: unknown, timedOut: boolean, timeoutMs: number, o: RequestOptions, spec: RequestSpec, started: boolean): Failure {
    const where = `${spec.method} ${spec.path}`;
    if (timedOut) {
      return { kind: 'network', sent: true, error: new CvvOpsError({ code: 'timeout', message: `${where}: no answer within ${timeoutMs} ms.` }) };
    }
    if (o.signal?.aborted) {
      return { kind: 'network', sent: true, error: new CvvOpsError({ code: 'aborted', message: `${where}: aborted.`, cause: o.signal.reason }) };
    }
    const code = networkCode(err);
    const sent = started || code === undefined || !NOT_SENT.has(code);
    // The cause is Node's own (a system error with its code): it holds no header of ours.
    return {
      kind: 'network',
      sent,
      error: new CvvOpsError({
        code: 'connection_error',
        message: `${where}: could not reach cvvops at ${new URL(this.cfg.baseUrl).origin}${code ? ` (${code})` : ''}.`,
        cause: err,
      }),
    };
  }

  #log(entry: CvvOpsLogEntry): void {
    try {
      this.cfg.log?.(entry);
    } catch {
      // A logger's failure is not the request's.
    }
  }
}
