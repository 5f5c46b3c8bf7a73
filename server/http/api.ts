import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import type { NextFunction, Request, Response, Router } from 'express';
import { AppError, type ErrorCode } from '../errors.js';
import type { MerchantContext } from '../domain/merchants.js';
import type { VerifiedToken } from './auth.js';
import { ERRORS } from '../errors.js';
import { ErrorBody, EVENT_SCHEMAS, TestEvent, z } from './schemas.js';

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
  /** What a merchant needs to know beyond the summary (the document's operation description). */
  description: string;
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
  responses: Record<number, { description: string; schema?: z.ZodType; mediaType?: string }>;
  /**
   * The error codes of this route beyond those every route of its kind has (see `errorCodes`): the
   * document lists each status's codes as an enum, and the HTTP tests check every answer against it.
   */
  errors?: ErrorCode[];
  /** Request headers the route reads, beyond Authorization, X-Request-Id and Idempotency-Key. */
  headers?: Record<string, { description: string; required?: boolean }>;
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
    registry.registerComponent('securitySchemes', 'webhookSignature', {
      type: 'apiKey',
      in: 'header',
      name: 'Cvvops-Signature',
      description:
        'Webhook deliveries are signed, not authenticated: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>"> with the endpoint\'s secret (whsec_…).',
    });
    registry.register('Error', ErrorBody);
    for (const [name, h] of Object.entries(HEADERS)) registry.registerComponent('headers', name, h);
    for (const r of this.routes) {
      const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      const responses: Record<string, unknown> = {};
      for (const [status, resp] of Object.entries(r.responses)) {
        responses[status] = {
          description: resp.description,
          headers: { ...RESPONSE_HEADERS.always, ...(r.idempotent ? RESPONSE_HEADERS.idempotent : {}), ...(r.auth === 'session' ? RESPONSE_HEADERS.cors : {}) },
          ...(resp.schema ? { content: { [resp.mediaType ?? 'application/json']: { schema: resp.schema } } } : {}),
        };
      }
      const byStatus = new Map<number, ErrorCode[]>();
      for (const code of errorCodes(r)) byStatus.set(ERRORS[code][0], [...(byStatus.get(ERRORS[code][0]) ?? []), code]);
      for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
        responses[String(status)] = {
          description: codes.map((c) => `\`${c}\`: ${ERRORS[c][1]}`).join(' '),
          headers: {
            ...RESPONSE_HEADERS.always,
            ...RESPONSE_HEADERS.error,
            ...(status === 401 ? RESPONSE_HEADERS.unauthorized : {}),
            ...(codes.some((c) => RETRY_AFTER.has(c)) ? RESPONSE_HEADERS.retryAfter : {}),
            ...(r.auth === 'session' ? RESPONSE_HEADERS.cors : {}),
          },
          // The Error schema, with this status's codes only.
          content: {
            'application/json': {
              schema: {
                allOf: [{ $ref: '#/components/schemas/Error' }],
                properties: { error: { properties: { code: { enum: codes } } } },
              },
            },
          },
        };
      }
      const headers = z.object({
        'x-request-id': z
          .string()
          .max(128)
          .optional()
          .openapi({ description: 'Your id for this call (letters, digits, - and _): answered back, logged and put in errors. Default: one of ours.' }),
        ...(r.idempotent
          ? {
              'idempotency-key': z
                .string()
                .max(255)
                .optional()
                .openapi({ description: 'Makes a retry safe: the same key with the same body gets the first answer, never a second effect.' }),
            }
          : {}),
        ...Object.fromEntries(
          Object.entries(r.headers ?? {}).map(([name, h]) => [
            name.toLowerCase(),
            (h.required ? z.string() : z.string().optional()).openapi({ description: h.description }),
          ]),
        ),
      });
      // A body is optional when the route accepts none at all (its schema takes {}).
      const bodyRequired = r.body ? !r.body.safeParse({}).success : false;
      registry.registerPath({
        method: r.method,
        path: r.path,
        operationId: operationId(r.method, r.path),
        summary: r.summary,
        description: r.description,
        tags: [r.tag],
        security: r.auth === 'merchant' ? [{ apiKey: [] }] : r.auth === 'session' ? [{ sessionToken: [] }] : [],
        request: {
          ...(params.length ? { params: z.object(Object.fromEntries(params.map((p) => [p, z.string()]))) } : {}),
          headers,
          ...(r.query ? { query: r.query as z.ZodObject } : {}),
          ...(r.body ? { body: { required: bodyRequired, content: { 'application/json': { schema: r.body } } } } : {}),
        },
        responses: responses as never,
      });
    }
    // Webhooks are not walked for component schemas: the payloads are registered here by name.
    registry.register('WebhookTestEvent', TestEvent);
    for (const [type, schema] of [...Object.entries(EVENT_SCHEMAS), [TestEvent.shape.type.value, TestEvent] as const]) {
      registry.registerWebhook({
        method: 'post',
        path: type,
        operationId: `webhook${type.replace(/(^|\.)(\w)/g, (_m, _d, c: string) => c.toUpperCase())}`,
        summary: type,
        description: `${schema.description ?? ''} Sent to every endpoint of the event's mode that listens to \`${type}\` (docs/webhooks.md).`.trim(),
        tags: ['Webhooks'],
        security: [{ webhookSignature: [] }],
        request: {
          headers: z.object({
            'cvvops-signature': z.string().openapi({
              description:
                't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the endpoint\'s secret>. Verify it on the raw body, in constant time, and refuse a t more than 5 minutes old.',
              example: 't=1764950400,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd',
            }),
            'user-agent': z.string().openapi({ description: 'cvvops-webhooks/1' }),
          }),
          body: { required: true, content: { 'application/json': { schema } } },
        },
        responses: {
          200: {
            description:
              'Any 2xx acknowledges the delivery. Anything else (a redirect included), a timeout or no answer is a failure: the delivery is tried again, after 10 s, then twice as long each time (at most an hour apart), for 24 hours.',
          },
        },
      });
    }
    return new OpenApiGeneratorV31(registry.definitions).generateDocument({
      openapi: '3.1.0',
      info: {
        title: 'cvvops',
        version: opts.version,
        description: "Collect a card's CVV safely and use it for one payment. Reference: docs/api.md in the repository.",
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        // Self-hosted: whoever runs this server answers for it; its docs are served with it.
        contact: { name: 'The operator of this cvvops server', url: `${opts.serverUrl}/docs` },
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

/**
 * The error codes a route can answer: those of every route (the checks before any route: an
 * undecodable path or a repeated header, an API key in the query string, a compressed or
 * oversized body, an unexpected failure), those of its credential, its path parameters, its
 * body and its Idempotency-Key, and its own (`errors`).
 */
export function errorCodes(r: Pick<RouteDef, 'auth' | 'path' | 'unknownId' | 'fieldCodes' | 'idempotent' | 'errors'>): ErrorCode[] {
  const codes = new Set<ErrorCode>(['invalid_request', 'invalid_api_key', 'payload_too_large', 'unsupported_media_type', 'internal_error']);
  if (r.auth === 'merchant') for (const c of ['unauthenticated', 'invalid_token', 'wrong_credential_type', 'rate_limited'] as const) codes.add(c);
  if (r.auth === 'session')
    for (const c of [
      'unauthenticated',
      'invalid_token',
      'token_expired',
      'wrong_credential_type',
      'rate_limited',
      'operation_not_allowed',
      'origin_not_allowed',
      'token_superseded',
      'session_completed',
      'session_canceled',
      'session_expired',
      'attempts_exhausted',
    ] as const)
      codes.add(c);
  if (r.path.includes('{')) codes.add(r.unknownId ?? 'not_found');
  for (const c of Object.values(r.fieldCodes ?? {})) codes.add(c);
  if (r.idempotent) codes.add('idempotency_key_reused');
  for (const c of r.errors ?? []) codes.add(c);
  return [...codes].sort((a, b) => ERRORS[a][0] - ERRORS[b][0] || a.localeCompare(b));
}

/** The codes whose answer carries Retry-After (when a wait helps). */
const RETRY_AFTER = new Set<ErrorCode>(['rate_limited', 'attempts_exhausted', 'idempotency_key_reused', 'precondition_failed']);

/** The response headers, each declared once under components/headers and referred to by name. */
const HEADERS = {
  'X-Request-Id': { description: "The call's id: the one sent, or ours (req_…); errors quote it.", schema: { type: 'string' } },
  'Cache-Control': { description: 'no-store: an error is never cached.', schema: { type: 'string' } },
  'WWW-Authenticate': {
    description: 'Bearer realm="cvvops", with error="invalid_token" when a credential was sent and refused (RFC 6750).',
    schema: { type: 'string' },
  },
  'Retry-After': { description: 'Seconds to wait before trying again, where a wait helps.', schema: { type: 'integer', minimum: 1 } },
  'Idempotent-Replayed': { description: 'true when this is the stored answer of an earlier call with the same Idempotency-Key.', schema: { type: 'string' } },
  'Access-Control-Allow-Origin': { description: "The calling page's origin, when the session's merchant allows it.", schema: { type: 'string' } },
  'Access-Control-Expose-Headers': {
    description: 'The headers a cross-origin page may read (X-Request-Id, Retry-After, Idempotent-Replayed).',
    schema: { type: 'string' },
  },
} as const;
const refs = (...names: Array<keyof typeof HEADERS>) => Object.fromEntries(names.map((n) => [n, { $ref: `#/components/headers/${n}` }]));
const RESPONSE_HEADERS = {
  always: refs('X-Request-Id'),
  error: refs('Cache-Control'),
  unauthorized: refs('WWW-Authenticate'),
  retryAfter: refs('Retry-After'),
  idempotent: refs('Idempotent-Replayed'),
  cors: refs('Access-Control-Allow-Origin', 'Access-Control-Expose-Headers'),
};
