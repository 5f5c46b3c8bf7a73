import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import type { NextFunction, Request, Response, Router } from 'express';
import { AppError, type ErrorCode } from '../errors.js';
import type { MerchantContext } from '../domain/merchants.js';
import type { VerifiedToken } from './auth.js';
import { ErrorBody, z } from './schemas.js';

export type Auth = 'merchant' | 'session' | 'none';
type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface HandlerContext<B> {
  body: B;
  merchant: MerchantContext;
  /** The verified bearer session token (operation endpoints). */
  token: VerifiedToken;
  params: Record<string, string>;
  /** The query string, parsed by the route's `query` schema (empty without one). */
  query: Record<string, unknown>;
}

export interface RouteDef<S extends z.ZodType | undefined = z.ZodType | undefined> {
  method: Method;
  /** OpenAPI style: /CvvOperations/{id} */
  path: string;
  summary: string;
  tag: keyof typeof TAGS;
  auth: Auth;
  /**
   * The JSON body's schema. A route without one takes no body: only none at
   * all or `{}` is accepted (400 otherwise), so a stray field is never ignored.
   */
  body?: S;
  /**
   * The query string's schema (strict: an unknown parameter is 400). Without
   * one, the query string is ignored.
   */
  query?: z.ZodType;
  /** The route reads its body itself, raw (the proxy): no JSON rule applies. */
  rawBody?: boolean;
  /** The error for an id that cannot exist (default not_found; CVC sessions answer one code for every missing kind). */
  unknownId?: ErrorCode;
  /** Which error code a schema problem of a top-level field gets (default invalid_request). */
  fieldCodes?: Record<string, ErrorCode>;
  /** Idempotency-Key honoured: by the HTTP middleware (true), or by the use case itself, in its own units ('in-use-case'). */
  idempotent?: boolean | 'in-use-case';
  responses: Record<number, { description: string; schema?: z.ZodType }>;
  handler: (req: Request, res: Response, ctx: HandlerContext<S extends z.ZodType ? z.infer<S> : undefined>) => Promise<void>;
}

/** Turns a schema failure into the API's error: the first issue, its field, never the value. */
export function schemaError(err: z.ZodError, fieldCodes: Record<string, ErrorCode> = {}): AppError {
  const first = err.issues[0]!;
  const field = first.path.length ? String(first.path[0]) : undefined;
  const code: ErrorCode = (field && fieldCodes[field]) || 'invalid_request';
  // Every problem, in plain words (at most ten), so one correction fixes the whole request.
  const problems = err.issues.slice(0, 10).map(plainIssue);
  const more = err.issues.length > 10 ? `; and ${err.issues.length - 10} more` : '';
  return new AppError(code, `${problems.join('; ')}${more}.`);
}

const ARTICLE: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'an array',
};

/** One validation problem as a newcomer reads it: where, and what is wrong ("amount.value must be an integer"). */
function plainIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.map(String).join('.') || 'the body';
  const quoted = (v: unknown) => JSON.stringify(typeof v === 'string' ? v.slice(0, 40) : v);
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''}${issue.path.length ? ` in ${where}` : ''}: ${issue.keys.map(quoted).join(', ')}`;
    case 'invalid_type':
      // zod reports a missing field as received undefined (it keeps no input in the issue).
      return / received undefined$/.test(issue.message) ? `${where} is required` : `${where} must be ${ARTICLE[issue.expected] ?? issue.expected}`;
    case 'too_small':
      return issue.origin === 'string'
        ? `${where} must be at least ${String(issue.minimum)} characters long`
        : issue.origin === 'array'
          ? `${where} must have at least ${String(issue.minimum)} item${issue.minimum === 1 ? '' : 's'}`
          : `${where} must be ${issue.inclusive ? 'at least' : 'more than'} ${String(issue.minimum)}`;
    case 'too_big':
      return issue.origin === 'string'
        ? `${where} must be at most ${String(issue.maximum)} characters long`
        : issue.origin === 'array'
          ? `${where} must have at most ${String(issue.maximum)} items`
          : `${where} must be ${issue.inclusive ? 'at most' : 'less than'} ${String(issue.maximum)}`;
    case 'invalid_value':
      return `${where} must be ${issue.values.length === 1 ? quoted(issue.values[0]) : `one of ${issue.values.map(quoted).join(', ')}`}`;
    case 'invalid_format':
      return `${where} is not a valid ${issue.format === 'regex' ? 'value' : issue.format}`;
    default:
      // Our own refinements already speak plainly ("must not contain duplicates").
      return `${where}: ${issue.message}`;
  }
}

/**
 * What a path parameter of ours can be: every id is `prefix_` and base64url
 * characters. Anything else (NUL, a slash, dots, non-ASCII, kilobytes) names
 * nothing, so it is 404 not_found at once, like an unknown id, and never
 * reaches the store (PostgreSQL refuses NUL in text with an error).
 */
const PARAM = /^[A-Za-z0-9_-]{1,100}$/;

/** A body that says nothing: none at all, or `{}`. */
const isEmptyBody = (b: unknown): boolean =>
  b === undefined || (typeof b === 'object' && b !== null && !Array.isArray(b) && !Buffer.isBuffer(b) && Object.keys(b).length === 0);

/**
 * The API's routes, declared once: each definition mounts its Express
 * handler (auth, schema validation) and registers the same zod schemas in the
 * OpenAPI document, so the document cannot drift from what is enforced.
 */
export class Api {
  readonly routes: RouteDef[] = [];

  add<S extends z.ZodType | undefined>(def: RouteDef<S>): void {
    this.routes.push(def);
  }

  mount(
    router: Router,
    mw: {
      merchantAuth: (req: Request, res: Response, next: NextFunction) => void | Promise<void>;
      sessionAuth: (req: Request, res: Response, next: NextFunction) => void | Promise<void>;
      idempotency: (endpoint: string, fieldCodes?: Record<string, ErrorCode>) => (req: Request, res: Response, next: NextFunction) => void;
    },
  ): void {
    const byPath = new Map<string, RouteDef[]>();
    for (const r of this.routes) {
      const list = byPath.get(r.path) ?? [];
      list.push(r);
      byPath.set(r.path, list);
    }
    // Static paths first, so /CvvOperations/validateToken is never taken for /CvvOperations/{id}.
    const ordered = [...byPath].sort(([a], [b]) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0));
    for (const [path, defs] of ordered) {
      const expressPath = path.replace(/\{(\w+)\}/g, ':$1');
      const route = router.route(expressPath);
      for (const def of defs) {
        const chain: Array<(req: Request, res: Response, next: NextFunction) => void | Promise<void>> = [];
        if (def.auth === 'merchant') chain.push(mw.merchantAuth);
        if (def.auth === 'session') chain.push(mw.sessionAuth);
        chain.push((req, res, next) => {
          for (const v of Object.values(req.params as Record<string, string>)) {
            if (!PARAM.test(v)) throw new AppError(def.unknownId ?? 'not_found');
          }
          if (!def.body && !def.rawBody && !isEmptyBody(req.body)) {
            throw new AppError('invalid_request', 'This endpoint takes no request body (send none, or {}).');
          }
          if (def.body) {
            const parsed = def.body.safeParse(req.body ?? {});
            if (!parsed.success) throw schemaError(parsed.error, def.fieldCodes);
            req.body = parsed.data;
          }
          if (def.query) {
            const parsed = def.query.safeParse(req.query);
            if (!parsed.success) throw schemaError(parsed.error, def.fieldCodes);
            res.locals.query = parsed.data;
          }
          next();
        });
        if (def.idempotent === true) chain.push(mw.idempotency(`${def.method.toUpperCase()} ${def.path}`));
        chain.push(async (req, res) => {
          await def.handler(req, res, {
            body: req.body as unknown,
            merchant: res.locals.merchant as MerchantContext,
            token: res.locals.sessionToken as VerifiedToken,
            params: req.params as Record<string, string>,
            query: (res.locals.query as Record<string, unknown> | undefined) ?? {},
          });
        });
        route[def.method](...chain);
      }
      const allow = [...new Set(defs.map((d) => d.method.toUpperCase()))];
      if (allow.includes('GET')) allow.push('HEAD');
      route.all((req, _res, next) => {
        if (req.method === 'OPTIONS') return next();
        throw new AppError('method_not_allowed', undefined, { headers: { Allow: allow.join(', ') } });
      });
    }
  }

  openapi(opts: { serverUrl: string; version: string }): Record<string, unknown> {
    const registry = new OpenAPIRegistry();
    registry.registerComponent('securitySchemes', 'apiKey', {
      type: 'http',
      scheme: 'bearer',
      description: 'A merchant API key: sk_test_… or sk_live_…',
    });
    registry.registerComponent('securitySchemes', 'sessionToken', {
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'JWS',
      description: 'The current session token (cvvops-session+jwt).',
    });
    for (const r of this.routes) {
      const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      const responses: Record<string, unknown> = {};
      for (const [status, resp] of Object.entries(r.responses)) {
        responses[status] = resp.schema
          ? { description: resp.description, content: { 'application/json': { schema: resp.schema } } }
          : { description: resp.description };
      }
      if (r.auth !== 'none') {
        // RFC 6750 section 3: every 401 names the scheme (errorHandler sets it).
        responses['401'] = {
          description:
            r.auth === 'merchant'
              ? 'No API key (unauthenticated), or a refused one (invalid_api_key).'
              : 'No session token (unauthenticated), or an invalid or expired one (invalid_token, token_expired).',
          headers: {
            'WWW-Authenticate': {
              description: 'Bearer realm="cvvops", with error="invalid_token" when a credential was sent and refused.',
              schema: { type: 'string' },
            },
          },
          content: { 'application/json': { schema: ErrorBody } },
        };
      }
      responses.default = { description: 'An error (API.md section 2).', content: { 'application/json': { schema: ErrorBody } } };
      const headers = r.idempotent ? z.object({ 'idempotency-key': z.string().max(255).optional() }) : undefined;
      registry.registerPath({
        method: r.method,
        path: r.path,
        operationId: operationId(r.method, r.path),
        summary: r.summary,
        tags: [r.tag],
        security: r.auth === 'merchant' ? [{ apiKey: [] }] : r.auth === 'session' ? [{ sessionToken: [] }] : [],
        request: {
          ...(params.length ? { params: z.object(Object.fromEntries(params.map((p) => [p, z.string()]))) } : {}),
          ...(headers ? { headers } : {}),
          ...(r.query ? { query: r.query as z.ZodObject } : {}),
          ...(r.body ? { body: { required: true, content: { 'application/json': { schema: r.body } } } } : {}),
        },
        responses: responses as never,
      });
    }
    return new OpenApiGeneratorV31(registry.definitions).generateDocument({
      openapi: '3.1.0',
      info: {
        title: 'cvvops',
        version: opts.version,
        description: "Collect a card's CVV safely and use it for one payment. Reference: docs/api.md in the repository.",
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      servers: [{ url: opts.serverUrl }],
      tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
    }) as unknown as Record<string, unknown>;
  }
}

/** The document's tags, in the order the reference reads (every route's `tag` is one of them). */
export const TAGS = {
  Sessions: "Operations sessions, for the merchant's server (API key).",
  Operations: 'The operations the browser runs with the current session token: collectCvv, threeDS, charge.',
  Cards: 'Card tokens and their CVVs (API key).',
  Merchant: "The merchant's settings, per mode (API key).",
  Webhooks: 'Webhook endpoints, events and deliveries (API key).',
  Proxy: 'Forwarding a request with the CVV to an allowed target (API key).',
  'Custom forms': "Custom CVV forms stored with the merchant's HTML and CSS (API key).",
  Public: 'The signing keys, health, metrics and this document: no credential.',
} as const;

/** A route's operationId: its method and path, camelCased (`GET /CvvOperations/{id}/history` → `getCvvOperationsByIdHistory`). */
export function operationId(method: string, path: string): string {
  const words = path
    .split('/')
    .filter(Boolean)
    .flatMap((seg) => (seg.startsWith('{') ? ['by', seg.slice(1, -1)] : seg.split(/[^A-Za-z0-9]+/)))
    .filter(Boolean);
  return method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}
