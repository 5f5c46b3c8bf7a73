import type { NextFunction, Request, Response } from 'express';
import { IdempotencyService } from '../domain/idempotency.js';
import type { MerchantContext } from '../domain/merchants.js';
import type { Logger } from '../log.js';

/**
 * Honours Idempotency-Key on an endpoint: the first 2xx response is stored
 * and replayed for the same key and body; an error frees the key so the
 * merchant can retry.
 */
export function idempotency(svc: IdempotencyService, log: Logger) {
  return (endpoint: string) =>
    async (req: Request, res: Response, next: NextFunction): Promise<void> => {
      const key = req.get('idempotency-key');
      if (key === undefined) return next();
      IdempotencyService.checkKey(key);
      const m = res.locals.merchant as MerchantContext;
      const scope = `${m.mode}:${endpoint}`;
      const r = await svc.reserve(m.merchant.id, scope, key, svc.fingerprint(endpoint, req.body));
      if (r.kind === 'replay') {
        res.setHeader('Idempotent-Replayed', 'true');
        res.status(r.status).json(r.body);
        return;
      }
      const send = res.json.bind(res);
      res.json = (body: unknown) => {
        const ok = res.statusCode >= 200 && res.statusCode < 300;
        const settle = ok ? svc.complete(m.merchant.id, scope, key, res.statusCode, body) : svc.release(m.merchant.id, scope, key);
        settle.then(
          () => send(body),
          (err: unknown) => {
            log.error({ requestId: res.locals.requestId, err: String(err) }, 'idempotency record failed');
            res.status(500);
            send({ error: { code: 'internal_error', message: 'Internal server error.', requestId: res.locals.requestId as string } });
          },
        );
        return res;
      };
      next();
    };
}
