import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import { AppError } from './errors.js';
import type { Deps } from './deps.js';
import type { MerchantContext } from './domain/merchants.js';
import { Api } from './http/api.js';
import { merchantAuth, sessionAuth } from './http/auth.js';
import { operationCors } from './http/cors.js';
import { idempotency } from './http/idempotency.js';
import { Metrics } from './http/metrics.js';
import {
  errorHandler,
  jsonBody,
  notFound,
  refuseContentEncoding,
  refuseDuplicateHeaders,
  refuseKeysInQuery,
  refuseUndecodablePath,
  requestId,
  routePath,
} from './http/middleware.js';
import { cardRoutes } from './http/routes/cards.js';
import { merchantRoutes } from './http/routes/merchant.js';
import { formRoutes } from './http/routes/forms.js';
import { operationRoutes } from './http/routes/operations.js';
import { publicRoutes } from './http/routes/public.js';
import { sessionRoutes } from './http/routes/sessions.js';
import { projectRoot, VERSION } from './version.js';
import { join } from 'node:path';
import { hostedRoutes } from './http/routes/hosted.js';

export const BODY_LIMIT = 16384;
export const FORM_BODY_LIMIT = 65536;

/** Every route of the API, declared once (Express handlers and the OpenAPI document come from these). */
export function buildApi(d: Deps, metrics: () => Metrics = () => new Metrics()): Api {
  const api = new Api();
  let doc: Record<string, unknown> | undefined;
  publicRoutes(api, d, metrics, () => (doc ??= api.openapi({ serverUrl: d.config.publicBaseUrl, version: VERSION })));
  sessionRoutes(api, d);
  operationRoutes(api, d);
  cardRoutes(api, d);
  merchantRoutes(api, d);
  formRoutes(api, d);
  return api;
}

/**
 * The OpenAPI document. Route declarations only close over `deps` (handlers
 * use it when they run), so the document can be generated without a server.
 */
export function openapiDocument(serverUrl: string, d: Deps = {} as Deps): Record<string, unknown> {
  return buildApi(d).openapi({ serverUrl, version: VERSION });
}

/** The Express app, without listen(): tests drive it directly. */
export function buildApp(d: Deps, metrics = new Metrics()): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.set('etag', false);
  app.set('query parser', 'simple');

  app.use(requestContext(d, metrics));
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
      },
      frameguard: { action: 'deny' },
      crossOriginResourcePolicy: { policy: 'same-origin' },
    }),
  );
  // Before any route: a path that does not decode, an ambiguous repeated header, a compressed body and a key in
  // the query string are refused the same way on every path (API, hosted pages, static files, unknown paths).
  app.use(refuseUndecodablePath);
  app.use(refuseDuplicateHeaders);
  app.use(refuseKeysInQuery);
  app.use(refuseContentEncoding);

  const api = buildApi(d, () => metrics);

  app.set('views', join(projectRoot(), 'views'));
  app.set('view engine', 'ejs');
  hostedRoutes(app, d);

  const operationPaths = ['/CvvOperations/collectCvv', '/CvvOperations/threeDS', '/CvvOperations/threeDS/result', '/CvvOperations/charge'];
  app.use(operationPaths, operationCors(d.origins));
  // The proxy forwards the merchant's body as it is (JSON or form), placeholders filled in.
  app.use('/proxy', (req, res, next) => {
    if (req.method !== 'POST') return next();
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    if (!/^application\/(json|x-www-form-urlencoded)\b/.test(type))
      throw new AppError('unsupported_media_type', 'The proxy forwards application/json or application/x-www-form-urlencoded bodies.');
    express.raw({ type: () => true, limit: BODY_LIMIT })(req, res, next);
  });
  app.use('/CustomForms', jsonBody(FORM_BODY_LIMIT));
  app.use(jsonBody(BODY_LIMIT));
  const router = express.Router({ caseSensitive: true, strict: false });
  api.mount(router, {
    merchantAuth: merchantAuth(d.merchants, d.limits, d.log),
    sessionAuth: sessionAuth(d.tokens, d.limits),
    idempotency: idempotency(d.idempotency, d.log),
  });
  app.use(router);
  app.use(notFound);
  app.use(errorHandler(d.log, (r) => d.sessions.recordRefusal(r)));
  return app;
}

/**
 * Every request: its X-Request-Id, Cache-Control: no-store (no API response
 * may be cached by anyone), and when it finishes one metrics observation and
 * one access-log line (method, route template, status, time, ids; never a
 * query string, body or header value). One listener for both.
 */
function requestContext(d: Deps, metrics: Metrics) {
  const logRequests = d.log.isLevelEnabled('info');
  return (req: Request, res: Response, next: NextFunction): void => {
    const t0 = performance.now();
    res.on('finish', () => {
      const ms = performance.now() - t0;
      const matched = routePath(req);
      const route = matched ? `${req.baseUrl}${matched}` : 'unmatched';
      metrics.observe(req.method, route, res.statusCode, ms / 1000);
      if (logRequests) {
        d.log.info(
          {
            requestId: res.locals.requestId,
            method: req.method,
            route,
            status: res.statusCode,
            ms,
            merchantId: (res.locals.merchant as MerchantContext | undefined)?.merchant.id,
          },
          'request',
        );
      }
    });
    res.setHeader('Cache-Control', 'no-store');
    requestId(req, res, next);
  };
}
