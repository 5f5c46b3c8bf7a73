import express, { type NextFunction, type Request, type Response } from 'express';
import { AppError, isAppError } from '../errors.js';
import { newId } from '../domain/ids.js';
import type { Logger } from '../log.js';

const CALLER_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** X-Request-Id: the caller's value when it is safe, otherwise a new req_ id. */
/** The route template Express matched, if any (Express types `req.route` as any). */
export const routePath = (req: Request): string | undefined => (req.route as { path?: string } | undefined)?.path;

/** One field of a parsed body, unknown until checked (Express types `req.body` as any). */
export const bodyField = (req: Request, name: string): unknown => (req.body as Record<string, unknown> | null | undefined)?.[name];

export function requestId(req: Request, res: Response, next: NextFunction): void {
  const given = req.get('x-request-id');
  const id = given && CALLER_REQUEST_ID.test(given) ? given : newId('req');
  res.locals.requestId = id;
  res.setHeader('X-Request-Id', id);
  next();
}

/**
 * The path must be valid percent-encoded UTF-8. The router decodes route
 * parameters only when a route matches and then throws a URIError that names
 * the raw segment (which used to become a 500 and a log line holding it).
 * Checking the whole path once, before any routing, makes every malformed path
 * the same 400 invalid_request, whatever route it aims at, and echoes nothing.
 */
export function refuseUndecodablePath(req: Request, _res: Response, next: NextFunction): void {
  const q = req.url.indexOf('?');
  const path = q >= 0 ? req.url.slice(0, q) : req.url;
  if (path.includes('%')) {
    try {
      decodeURIComponent(path);
    } catch {
      throw new AppError('invalid_request', 'The request path is not valid percent-encoded UTF-8.');
    }
  }
  next();
}

/**
 * Headers that must appear at most once. Node keeps only the first of two
 * Authorization (or Content-Type) headers and joins others with ", ": either
 * way the server would act on something other than what a proxy or log in
 * front of it saw. Two of them are refused instead of picking one.
 */
const SINGLE_HEADERS = [
  'authorization',
  'content-type',
  'content-encoding',
  'content-length',
  'idempotency-key',
  'x-proxy-target',
  'x-card-token',
  'x-cvc-session-id',
];

export function refuseDuplicateHeaders(req: Request, _res: Response, next: NextFunction): void {
  for (const name of SINGLE_HEADERS) {
    if ((req.headersDistinct[name]?.length ?? 0) > 1) throw new AppError('invalid_request', `The ${name} header must appear at most once.`);
  }
  next();
}

/** A request with a body: a non-zero Content-Length or any Transfer-Encoding. */
const hasBody = (req: Request) => req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;

/**
 * Bodies are accepted as they are sent (Content-Encoding identity) only. The
 * body parsers would otherwise inflate gzip, deflate and br themselves, and a
 * corrupt stream failed with a 500; an unknown coding is RFC 9110's 415.
 */
export function refuseContentEncoding(req: Request, _res: Response, next: NextFunction): void {
  const coding = req.headers['content-encoding'];
  if (coding !== undefined && coding.trim().toLowerCase() !== 'identity' && coding.trim() !== '' && hasBody(req)) {
    throw new AppError('unsupported_media_type', 'Request bodies must not be compressed (Content-Encoding: identity only).');
  }
  next();
}

/** Refuses API keys in the query string (they would land in access logs). */
export function refuseKeysInQuery(req: Request, _res: Response, next: NextFunction): void {
  const q = req.url.indexOf('?');
  const query = q >= 0 ? decodeURIComponentSafe(req.url.slice(q + 1).replace(/\+/g, ' ')) : '';
  if (q >= 0 && (/sk_(test|live)_/i.test(query) || /(^|&)(api_?key|access_token|key|token)=/i.test(query))) {
    throw new AppError('invalid_api_key', 'Credentials are not accepted in the query string; use the Authorization header.');
  }
  next();
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** JSON.parse reviver: no prototype-polluting keys survive parsing. */
function reviver(key: string, value: unknown): unknown {
  if (key === '__proto__' || key === 'constructor' || key === 'prototype') throw new SyntaxError('forbidden key');
  return value;
}

/**
 * JSON bodies only (415 otherwise), UTF-8, with a size limit (413 beyond it).
 * A request without a body (no Content-Length or 0, no Transfer-Encoding) passes with an empty body.
 */
export function jsonBody(limit: number) {
  const parse = express.json({ limit, type: () => true, strict: true, reviver });
  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
    // Already read by a route's own parser (the proxy forwards raw bodies).
    const parsed: unknown = req.body;
    if (Buffer.isBuffer(parsed) || (parsed !== undefined && parsed !== null && typeof parsed === 'object' && Object.keys(parsed).length > 0)) return next();
    if (!hasBody(req)) {
      req.body = undefined;
      return next();
    }
    const len = Number(req.headers['content-length'] ?? 0);
    if (len > limit) throw new AppError('payload_too_large', `The request body must be at most ${limit} bytes.`);
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    const m = /^application\/json\s*(;\s*charset\s*=\s*"?([^";]+)"?\s*)?$/.exec(type);
    if (!m || (m[2] && m[2] !== 'utf-8' && m[2] !== 'utf8')) {
      throw new AppError('unsupported_media_type', 'The request body must be application/json (UTF-8).');
    }
    parse(req, res, next);
  };
}

export function notFound(_req: Request, _res: Response, next: NextFunction): void {
  next(new AppError('not_found', 'No such path.'));
}

/** Express body-parser errors (and any other library's 4xx http-errors) mapped to the API's codes. */
function fromParserError(err: { type?: string; status?: number; statusCode?: number } | null | undefined): AppError | null {
  if (typeof err !== 'object' || err === null) return null;
  switch (err.type) {
    case 'entity.too.large':
      return new AppError('payload_too_large');
    case 'entity.parse.failed':
      return new AppError('invalid_request', 'The request body is not valid JSON.');
    // An HTML form (the 3-D Secure challenge) with more fields than it has: body-parser says 413, but the body is small.
    case 'parameters.too.many':
    case 'querystring.parse.rangeError':
      return new AppError('invalid_request', 'The form has too many fields.');
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return new AppError('unsupported_media_type');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'stream.not.readable':
      return new AppError('invalid_request', 'The request body could not be read.');
    default:
      break;
  }
  // A library's own client error (http-errors: a status 400-499) is the client's fault, never a 500. Its message
  // may quote the input, so only the status is kept.
  const status = err.status ?? err.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    switch (status) {
      case 404:
        return new AppError('not_found', 'No such path.');
      case 413:
        return new AppError('payload_too_large');
      case 415:
        return new AppError('unsupported_media_type');
      default:
        return new AppError('invalid_request');
    }
  }
  return null;
}

/**
 * A run of 12 or more digits, possibly grouped by spaces or dashes: what a
 * card number looks like. No error message may carry one (an unknown field
 * named with a card number used to be echoed), so every message is masked
 * here, in the one place that writes errors, whatever produced it.
 */
const LONG_DIGITS = /\d(?:[ -]?\d){11,}/g;
export const maskDigits = (s: string): string => s.replace(LONG_DIGITS, '[redacted]');

/** The session a call is about: the session token's (operations), or the id in a /CvvOperations/{id}/… path (merchant calls). */
const SESSION_IN_PATH = /^\/CvvOperations\/(cvo_[A-Za-z0-9_-]{1,64})(?:\/|$)/;

/**
 * A refused call on a session is an audit record: the session, the call,
 * the error code and the request id (never the token or the key).
 */
/** The id the requestId middleware gave this request (in X-Request-Id and every error body). */
export const requestIdOf = (res: Response): string | undefined => res.locals.requestId as string | undefined;

/** A refused call on a known session, as the session's history records it (SessionService.recordRefusal). */
export interface Refusal {
  sessionId: string;
  merchantId: string;
  mode: 'test' | 'live';
  operation: string;
  code: string;
  requestId: string;
}

function auditRefusal(log: Logger, req: Request, res: Response, e: AppError, requestId: string, onRefused?: (r: Refusal) => Promise<void>): void {
  const claims = (res.locals.sessionToken as { claims?: { sub?: unknown; aud?: unknown; mode?: unknown } } | undefined)?.claims;
  const merchant = res.locals.merchant as { merchant?: { id?: string }; mode?: 'test' | 'live' } | undefined;
  const session = typeof claims?.sub === 'string' ? claims.sub : SESSION_IN_PATH.exec(req.path)?.[1];
  if (!session) return;
  const merchantId = typeof claims?.aud === 'string' ? claims.aud : merchant?.merchant?.id;
  const mode = claims ? (claims.mode === 'live' ? 'live' : 'test') : merchant?.mode;
  // The route as the API reference writes it (/CvvOperations/{id}/token), never the raw path.
  const operation = maskDigits(
    `${req.method} ${(routePath(req) ?? req.path.replace(SESSION_IN_PATH, '/CvvOperations/:id/').replace(/\/$/, '')).replace(/:([A-Za-z]+)/g, '{$1}')}`,
  );
  log.warn({ audit: true, event: 'operation.refused', session, merchantId, operation, code: e.code, status: e.status, requestId }, 'call refused');
  // Into the session's history too, unless it is a rate limit's refusal (a flood must not become a flood of writes).
  if (onRefused && merchantId && mode && e.code !== 'rate_limited')
    void onRefused({ sessionId: session, merchantId, mode, operation, code: e.code, requestId });
}

/**
 * Writes every error in the API.md shape. 5xx are logged with their cause;
 * no cause, stack or input value is ever sent.
 */
export function errorHandler(log: Logger, onRefused?: (r: Refusal) => Promise<void>) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    let e: AppError;
    if (isAppError(err)) e = err;
    else e = fromParserError(err as { type?: string }) ?? new AppError('internal_error', undefined, { cause: err });
    const requestId = (res.locals.requestId as string | undefined) ?? newId('req');
    if (e.status >= 500) {
      const cause = e.cause ?? err;
      log.error(
        {
          requestId,
          route: routePath(req),
          err:
            cause instanceof Error
              ? { type: cause.name, message: maskDigits(cause.message), stack: cause.stack && maskDigits(cause.stack) }
              : maskDigits(String(cause)),
        },
        'request failed',
      );
    }
    if (e.status >= 400 && e.status < 500) auditRefusal(log, req, res, e, requestId, onRefused);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (e.retryAfter !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(e.retryAfter))));
    // RFC 6750 section 3: a 401 names the scheme; a credential that was sent and refused is an invalid_token.
    if (e.status === 401)
      res.setHeader('WWW-Authenticate', e.code === 'unauthenticated' ? 'Bearer realm="cvvops"' : 'Bearer realm="cvvops", error="invalid_token"');
    for (const [k, v] of Object.entries(e.headers ?? {})) res.setHeader(k, v);
    res.setHeader('Cache-Control', 'no-store');
    res.status(e.status).json({ error: { code: e.code, message: maskDigits(e.message), requestId } });
  };
}
