import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../errors.js';
import type { OriginRegistry } from '../domain/origins.js';

const ALLOW_HEADERS = 'Authorization, Content-Type, Idempotency-Key, X-Request-Id';
const EXPOSE_HEADERS = 'X-Request-Id, Retry-After';

/**
 * CORS for the operation endpoints only. A preflight is answered for any
 * origin that some merchant allows (the merchant is unknown until the token
 * arrives); the real call is then checked against the token's merchant by
 * the session service (403 origin_not_allowed). Merchant endpoints never get
 * CORS headers.
 *
 * An origin the registry does not know makes it look in the store first
 * (`allows`: coalesced and rate-limited there), so a merchant created a
 * moment ago by the CLI, or on another instance, works at once. The real
 * call does the same: its preflight may have been answered by another
 * instance, and without Access-Control-Allow-Origin the page could not read
 * the response, nor the rotated token in it.
 */
export function operationCors(origins: OriginRegistry) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const origin = req.headers.origin;
    res.vary('Origin');
    if (origin === undefined) return next();
    const known = await origins.allows(origin);
    if (known) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Expose-Headers', EXPOSE_HEADERS);
    }
    if (req.method === 'OPTIONS') {
      if (!known) {
        throw new AppError(
          'origin_not_allowed',
          `The origin ${origin.slice(0, 200)} is not an allowed origin of any merchant: add it to the merchant's allowedOrigins (PATCH /Merchant, or cvvops merchant create --origin).`,
        );
      }
      res.setHeader('Access-Control-Allow-Methods', 'POST');
      res.setHeader('Access-Control-Allow-Headers', ALLOW_HEADERS);
      res.setHeader('Access-Control-Max-Age', '600');
      res.status(204).end();
      return;
    }
    next();
  };
}
