import express, { type NextFunction, type Request, type Response } from 'express';
import { AppError, isAppError } from '../errors.js';
import { newId } from '../domain/ids.js';
import type { Logger } from '../log.js';

const CALLER_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** X-Request-Id: the caller's value when it is safe, otherwise a new req_ id. */
export function requestId(req: Request, res: Response, next: NextFunction): void {
  const given = req.get('x-request-id');
  const id = given && CALLER_REQUEST_ID.test(given) ? given : newId('req');
  res.locals.requestId = id;
  res.setHeader('X-Request-Id', id);
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
    if (Buffer.isBuffer(req.body) || (req.body !== undefined && req.body !== null && typeof req.body === 'object' && Object.keys(req.body).length > 0)) return next();
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (!hasBody) {
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

/** Express body-parser errors mapped to the API's codes. */
function fromParserError(err: { type?: string; status?: number }): AppError | null {
  switch (err.type) {
    case 'entity.too.large': return new AppError('payload_too_large');
    case 'entity.parse.failed': return new AppError('invalid_request', 'The request body is not valid JSON.');
    case 'charset.unsupported':
    case 'encoding.unsupported': return new AppError('unsupported_media_type');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
    case 'stream.not.readable': return new AppError('invalid_request', 'The request body could not be read.');
    default: return null;
  }
}

/**
 * Writes every error in the API.md shape. 5xx are logged with their cause;
 * no cause, stack or input value is ever sent.
 */
export function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    let e: AppError;
    if (isAppError(err)) e = err;
    else e = fromParserError(err as { type?: string }) ?? new AppError('internal_error', undefined, { cause: err });
    const requestId = (res.locals.requestId as string | undefined) ?? newId('req');
    if (e.status >= 500) {
      const cause = e.cause ?? err;
      log.error({ requestId, route: req.route?.path, err: cause instanceof Error ? { type: cause.name, message: cause.message, stack: cause.stack } : String(cause) }, 'request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (e.retryAfter !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(e.retryAfter))));
    for (const [k, v] of Object.entries(e.headers ?? {})) res.setHeader(k, v);
    res.setHeader('Cache-Control', 'no-store');
    res.status(e.status).json({ error: { code: e.code, message: e.message, requestId } });
  };
}
