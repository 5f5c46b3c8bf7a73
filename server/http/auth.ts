import { routePath } from './middleware.js';
import type { NextFunction, Request, Response } from 'express';
import { AppError, isAppError } from '../errors.js';
import type { MerchantService } from '../domain/merchants.js';
import type { RateLimits } from '../domain/rate-limits.js';
import { MAX_TOKEN_LENGTH, type SessionClaims, type TokenService } from '../domain/tokens.js';
import type { Logger } from '../log.js';
import { Secret } from '../secret.js';

const looksLikeJws = (v: string) => /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/.test(v);

/** The Bearer credential of a request, or null when there is none. */
function bearer(req: Request): string | null {
  // Node keeps the first of two Authorization headers and drops the other: refuse rather than pick one.
  if ((req.headersDistinct.authorization?.length ?? 0) > 1) throw new AppError('invalid_request', 'The authorization header must appear at most once.');
  const h = req.headers.authorization;
  if (h === undefined || h === '') return null;
  if (h.length > MAX_TOKEN_LENGTH) throw new AppError('invalid_token', 'The Authorization header is too long.');
  const m = /^Bearer +(\S+) *$/i.exec(h);
  if (!m) throw new AppError('unauthenticated', 'Use Authorization: Bearer <credential>.');
  return m[1]!;
}

/**
 * Merchant endpoints: an API key, hashed and compared in constant time; every use is audited.
 * Wrong keys are counted per client address (as forged session tokens are limited per address on
 * the operation endpoints): past the limit every key attempt from that address is 429 rate_limited
 * with Retry-After, before the key is looked at, so a right guess is no different from a wrong one.
 */
export function merchantAuth(merchants: MerchantService, limits: RateLimits, log: Logger) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const cred = bearer(req);
    if (cred === null) throw new AppError('unauthenticated', 'An API key is required: Authorization: Bearer sk_…');
    if (!cred.startsWith('sk_') && looksLikeJws(cred)) throw new AppError('wrong_credential_type', 'Merchant endpoints take an API key, not a session token.');
    const address = req.ip ?? 'unknown';
    try {
      await limits.assertNotBlocked('apiKeyFailures', address);
      let ctx;
      try {
        ctx = await merchants.authenticate(new Secret(cred));
      } catch (e) {
        if (isAppError(e) && e.code === 'invalid_api_key') await limits.countFailure('apiKeyFailures', address);
        throw e;
      }
      res.locals.merchant = ctx;
      await limits.consume('apiKey', ctx.keyId);
      log.info(
        {
          audit: true,
          event: 'api_key.used',
          outcome: 'success',
          keyId: ctx.keyId,
          merchantId: ctx.merchant.id,
          mode: ctx.mode,
          requestId: res.locals.requestId,
          ip: req.ip,
          route: `${req.method} ${routePath(req) ?? '?'}`,
        },
        'API key accepted',
      );
    } catch (e) {
      if (isAppError(e))
        log.warn(
          {
            audit: true,
            event: 'api_key.used',
            outcome: 'failure',
            reason: e.code,
            requestId: res.locals.requestId,
            ip: req.ip,
            route: `${req.method} ${routePath(req) ?? '?'}`,
          },
          'API key refused',
        );
      throw e;
    }
    next();
  };
}

/**
 * Operation endpoints: a session token, verified (signature, algorithm, kid,
 * typ, issuer, expiry) before the body is looked at. Whether it is still the
 * session's current token is the session service's business.
 */
export function sessionAuth(tokens: TokenService, limits: RateLimits) {
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const cred = bearer(req);
    if (cred === null) throw new AppError('unauthenticated', 'A session token is required: Authorization: Bearer <token>.');
    if (cred.startsWith('sk_')) throw new AppError('wrong_credential_type', 'Operation endpoints take a session token, not an API key.');
    if (cred.length > MAX_TOKEN_LENGTH) throw new AppError('invalid_token', 'The session token is too long.');
    await limits.consume('address', req.ip ?? 'unknown');
    const out = await tokens.verify(cred);
    if (!out.ok) throw new AppError(out.reason === 'expired' ? 'token_expired' : 'invalid_token');
    await limits.consume('session', out.claims.sub);
    res.locals.sessionToken = { token: cred, claims: out.claims } satisfies VerifiedToken;
    next();
  };
}

/** A bearer token whose signature and claims have been verified. */
export interface VerifiedToken {
  token: string;
  claims: SessionClaims;
}
