import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { HttpProcessorConfig } from '../connectors/processors/http.js';

extendZodWithOpenApi(z);

export { z };

const CURRENCIES = new Set(Intl.supportedValuesOf('currency'));

/** C0/C1 controls, line separators and the bidirectional controls of "Trojan Source". */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/;

/** Text a person wrote: well-formed Unicode (no lone surrogates), no control characters. */
export const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((s) => s.isWellFormed(), { message: 'must be well-formed Unicode' })
    .refine((s) => !CONTROL.test(s), { message: 'must not contain control characters' });

/**
 * Markup a merchant wrote (custom forms): any length of text, but well-formed Unicode and no NUL (no HTML
 * needs one, and PostgreSQL cannot store one in text: it used to be a 500 there).
 */
const markup = (s: z.ZodString) =>
  s
    .refine((v) => v.isWellFormed(), { message: 'must be well-formed Unicode' })
    .refine((v) => !v.includes('\u0000'), { message: 'must not contain NUL characters' });

/** An http(s) URL the server stores and may call: no control characters or spaces (new URL() would let some pass). */
const httpUrl = (message: string) =>
  z
    .string()
    .max(2048)
    .url()
    .refine((u) => /^https?:\/\//.test(u), { message })
    .refine((u) => !CONTROL.test(u) && !/\s/.test(u) && u.isWellFormed(), { message: 'must not contain control characters or spaces' });

export const idOf = (prefix: string) => z.string().regex(new RegExp(`^${prefix}_[A-Za-z0-9_-]{1,60}$`), { message: `must be a ${prefix}_ id` });

export const Amount = z
  .strictObject({
    value: z.number().int().min(1).max(99_999_999_999).openapi({ description: 'Minor units (cents).', example: 1999 }),
    currency: z
      .string()
      .regex(/^[A-Z]{3}$/)
      .refine((c) => CURRENCIES.has(c), { message: 'must be an ISO 4217 currency code' })
      .openapi({ example: 'EUR' }),
  })
  .openapi('Amount');

export const OperationName = z.enum(['collectCvv', 'threeDS', 'charge']).openapi('Operation');

export const CreateSessionBody = z
  .strictObject({
    card: idOf('tok'),
    operations: z
      .array(OperationName)
      .min(1)
      .max(3)
      .refine((a) => new Set(a).size === a.length, { message: 'must not contain duplicates' }),
    amount: Amount.optional(),
    reference: text(128).optional(),
    require3DS: z.boolean().optional(),
    requireCvv: z.boolean().optional(),
    maxAttempts: z.number().int().min(1).max(10).optional(),
    ttlSeconds: z.number().int().min(60).max(3600).optional(),
    cvvRetention: z.enum(['single_use', 'cache']).optional(),
    form: z.union([z.literal('hosted'), idOf('frm')]).optional(),
    returnUrl: httpUrl('must be an http(s) URL').optional(),
    metadata: z
      .record(
        z
          .string()
          .min(1)
          .max(40)
          .regex(/^[A-Za-z0-9_.-]+$/),
        z
          .string()
          .max(500)
          .refine((s) => s.isWellFormed()),
      )
      .refine((m) => Object.keys(m).length <= 20, { message: 'at most 20 keys' })
      .optional(),
  })
  .openapi('CreateSessionRequest');

export const CardSummary = z
  .object({
    token: z.string(),
    brand: z.string(),
    last4: z.string(),
    expMonth: z.number().int(),
    expYear: z.number().int(),
  })
  .openapi('CardSummary');

/** A session's card once the card was deleted (DELETE /Cards/{token}): only its token is left. */
export const DeletedCard = z
  .object({ token: z.string(), deleted: z.literal(true) })
  .openapi('DeletedCard', { description: 'The card was deleted after the session was made: only its token is left.' });

const SessionBase = {
  id: z.string().openapi({ example: 'cvo_…' }),
  object: z.literal('cvv_operations'),
  status: z.enum(['active', 'completed', 'canceled', 'expired']),
  mode: z.enum(['test', 'live']),
  expiresAt: z.string(),
  operations: z.array(OperationName),
  amount: Amount.nullable(),
  card: z.union([CardSummary, DeletedCard]),
  reference: z.string().nullable(),
  require3DS: z.boolean(),
  requireCvv: z.boolean(),
  maxAttempts: z.number().int(),
  cvvRetention: z.enum(['single_use', 'cache']),
  form: z.string(),
  returnUrl: z.string().nullable(),
  metadata: z.record(z.string(), z.string()),
  createdAt: z.string(),
  updatedAt: z.string(),
};

export const CreatedSession = z
  .object({
    ...SessionBase,
    token: z.string().openapi({ description: 'The first session token (a compact JWS).' }),
    formUrl: z.string().openapi({ description: 'The hosted form, with the token in the URL fragment.' }),
  })
  .openapi('CreatedSession');

export const Session = z
  .object({
    ...SessionBase,
    results: z.record(z.string(), z.unknown()),
    attempts: z.record(z.string(), z.object({ used: z.number().int(), max: z.number().int() })),
    cvv: z.union([z.object({ available: z.literal(true), expiresAt: z.string() }), z.object({ available: z.literal(false) })]),
  })
  .openapi('Session');

/** A time in a list filter: ISO 8601, or Unix seconds as Stripe sends them. */
const ListTime = z
  .string()
  .max(40)
  .refine((v) => /^\d{1,12}$/.test(v) || (/^\d{4}-\d{2}-\d{2}T/.test(v) && !Number.isNaN(Date.parse(v))), {
    message: 'must be an ISO 8601 time or Unix seconds',
  })
  .transform((v) => (/^\d+$/.test(v) ? Number(v) * 1000 : Date.parse(v)));

/** The page parameters of a list (Stripe-style: newest first). */
const pageQuery = (things: string) => ({
  limit: z
    .string()
    .regex(/^\d{1,3}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(100))
    .optional()
    .openapi({ description: `How many ${things} (1-100, default 10).` }),
  starting_after: z
    .string()
    .max(100)
    .optional()
    .openapi({ description: `The last id of the previous page: the ${things} created before it (newest first).` }),
});

export const ListSessionsQuery = z
  .strictObject({
    ...pageQuery('sessions'),
    status: z.enum(['active', 'completed', 'canceled', 'expired']).optional(),
    card: z.string().max(100).optional().openapi({ description: 'Only the sessions of this card token.' }),
    'created[gte]': ListTime.optional().openapi({ description: 'Created at or after (ISO 8601 or Unix seconds).' }),
    'created[lt]': ListTime.optional().openapi({ description: 'Created before (ISO 8601 or Unix seconds).' }),
  })
  .openapi('ListSessionsQuery');

export const HistoryEntry = z
  .object({
    id: z.string(),
    type: z.enum(['created', 'operation', 'refused', 'reissued', 'canceled', 'expired', 'reconciled']),
    createdAt: z.string().openapi({ description: 'ISO 8601.' }),
    operation: z.string().nullable().openapi({
      description: 'The operation (collectCvv, threeDS, threeDS/result, charge) or, for a refused call, its route (POST /CvvOperations/{id}/token).',
    }),
    outcome: z
      .string()
      .nullable()
      .openapi({ description: "An operation's result status: succeeded (collectCvv), the 3-D Secure status, approved, declined or error." }),
    code: z.string().nullable().openapi({ description: "A refused call's error code, or a declined charge's decline code." }),
    requestId: z.string().nullable().openapi({ description: 'The request that made it (its X-Request-Id and error requestId); null for expiry and recovery.' }),
  })
  .openapi('HistoryEntry');

export const HistoryQuery = z
  .strictObject({
    limit: pageQuery('entries').limit.openapi({ description: 'How many entries (1-100, default 100).' }),
    starting_after: z.string().max(100).optional().openapi({ description: 'The last id of the previous page: the entries after it (oldest first).' }),
  })
  .openapi('HistoryQuery');

export const SessionHistory = z
  .object({
    object: z.literal('list'),
    data: z.array(HistoryEntry),
    hasMore: z.boolean().openapi({ description: 'More entries after the last one: ask again with starting_after set to its id.' }),
  })
  .openapi('SessionHistory');

export const SessionList = z
  .object({
    object: z.literal('list'),
    data: z.array(Session),
    hasMore: z.boolean().openapi({ description: 'More sessions after the last one: ask again with starting_after set to its id.' }),
  })
  .openapi('SessionList');

export const ValidateTokenBody = z.strictObject({ token: z.string().max(16384) }).openapi('ValidateTokenRequest');
export const ValidateTokenResponse = z
  .union([
    z.object({ valid: z.literal(true), current: z.boolean(), claims: z.record(z.string(), z.unknown()), session: Session }),
    z.object({
      valid: z.literal(false),
      reason: z.enum(['bad_signature', 'malformed', 'expired', 'unknown_key', 'wrong_merchant', 'wrong_type', 'wrong_issuer']),
    }),
  ])
  .openapi('ValidateTokenResponse');

export const TokenResponse = z.object({ token: z.string() }).openapi('TokenResponse');

export const CvcSessionRef = z.object({ id: z.string(), expiresAt: z.string() }).openapi('CvcSessionRef');

export const CreateCardBody = z
  .strictObject({
    number: z.string().max(32).openapi({ example: '4000000000001018' }),
    expMonth: z.number().int().min(1).max(12),
    expYear: z.number().int().min(2000).max(2100),
    cvv: z.string().optional(),
    holderName: text(100).optional(),
  })
  .openapi('CreateCardRequest');

export const Card = z
  .object({
    token: z.string(),
    brand: z.string(),
    last4: z.string(),
    bin: z.string(),
    expMonth: z.number().int(),
    expYear: z.number().int(),
    createdAt: z.string(),
  })
  .openapi('Card');
export const CreatedCard = Card.extend({ cvcSession: CvcSessionRef.nullable() }).openapi('CreatedCard');

export const CollectCvvBody = z.strictObject({ cvv: z.string().openapi({ example: '123' }) }).openapi('CollectCvvRequest');
export const OperationResponse = z
  .object({
    result: z.record(z.string(), z.unknown()),
    token: z.string(),
    session: z.object({ status: z.enum(['active', 'completed', 'canceled', 'expired']) }),
  })
  .openapi('OperationResponse');

export const ErrorBody = z
  .object({
    error: z.object({ code: z.string(), message: z.string(), requestId: z.string() }),
  })
  .openapi('Error');

export const CvvStatus = z
  .object({
    status: z.enum(['Unblocked', 'Blocked']),
    failedAttempts: z.number().int(),
    cvcSession: z.union([z.object({ available: z.literal(true), id: z.string(), expiresAt: z.string() }), z.object({ available: z.literal(false) })]),
  })
  .openapi('CvvStatus');

export const Merchant = z
  .object({
    id: z.string(),
    name: z.string(),
    /** Whose settings these are: the mode of the calling key (settings are kept per mode). */
    mode: z.enum(['test', 'live']),
    allowedOrigins: z.array(z.string()),
    allowedProxyTargets: z.array(z.string()),
    processor: z.record(z.string(), z.unknown()),
    cvvBlockThreshold: z.number().int(),
    cvcSessionTtlSeconds: z.number().int(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Merchant');

export const PatchMerchantBody = z
  .strictObject({
    allowedOrigins: z.array(z.string().max(300)).max(50).optional(),
    allowedProxyTargets: z.array(httpUrl('must be an https URL')).max(50).optional(),
    processor: z.union([z.strictObject({ type: z.literal('simulator') }), HttpProcessorConfig]).optional(),
    cvvBlockThreshold: z.number().int().min(1).max(20).optional(),
    cvcSessionTtlSeconds: z.number().int().min(30).max(3600).optional(),
  })
  .openapi('PatchMerchantRequest');

export const ThreeDSBody = z
  .strictObject({
    browser: z
      .strictObject({
        acceptHeader: z.string().max(2048).optional(),
        language: z
          .string()
          .max(35)
          .regex(/^[A-Za-z0-9-]+$/)
          .optional(),
        screenWidth: z.number().int().min(0).max(100000).optional(),
        screenHeight: z.number().int().min(0).max(100000).optional(),
        timeZoneOffset: z.number().int().min(-1440).max(1440).optional(),
        userAgent: z.string().max(2048).optional(),
        colorDepth: z.number().int().min(1).max(64).optional(),
        javaEnabled: z.boolean().optional(),
        javascriptEnabled: z.boolean().optional(),
      })
      .optional(),
  })
  .openapi('ThreeDSRequest');

export const EmptyBody = z.strictObject({}).openapi('EmptyRequest');

export const ChargeBody = z.strictObject({ amount: Amount.optional() }).openapi('ChargeRequest');

export const CreateWebhookEndpointBody = z
  .strictObject({
    url: httpUrl('must be an http(s) URL'),
    events: z
      .array(
        z.enum([
          'cvv.collected',
          'threeds.completed',
          'charge.succeeded',
          'charge.failed',
          'session.completed',
          'session.canceled',
          'session.expired',
          'cvv.blocked',
        ]),
      )
      .min(1)
      .max(8),
  })
  .openapi('CreateWebhookEndpointRequest');

export const Event = z
  .object({
    id: z.string(),
    type: z.string(),
    createdAt: z.string(),
    mode: z.enum(['test', 'live']),
    data: z.record(z.string(), z.unknown()),
  })
  .openapi('Event', { description: 'An event: the same payload as its webhook delivery.' });

export const ListEventsQuery = z
  .strictObject({
    ...pageQuery('events'),
    type: z.string().max(64).optional().openapi({ description: 'Only events of this type (session.completed, charge.succeeded, …).' }),
  })
  .openapi('ListEventsQuery');

export const EventList = z
  .object({
    object: z.literal('list'),
    data: z.array(Event),
    hasMore: z.boolean().openapi({ description: 'More events after the last one: ask again with starting_after set to its id.' }),
  })
  .openapi('EventList');

export const Delivery = z
  .object({
    id: z.string(),
    event: z.string().openapi({ description: 'The event id (GET /Events/{id}).' }),
    type: z.string().nullable(),
    status: z.enum(['pending', 'delivered', 'failed']),
    attempts: z.number().int(),
    lastStatus: z.number().int().nullable().openapi({ description: "The receiver's last HTTP status code (null: none yet, or no answer)." }),
    nextAttemptAt: z.string().nullable().openapi({ description: 'The next try, while pending.' }),
    createdAt: z.string(),
    deliveredAt: z.string().nullable(),
  })
  .openapi('Delivery');

export const ListDeliveriesQuery = z.strictObject({ ...pageQuery('deliveries') }).openapi('ListDeliveriesQuery');

export const DeliveryList = z.object({ object: z.literal('list'), data: z.array(Delivery), hasMore: z.boolean() }).openapi('DeliveryList');

export const ResendEventBody = z
  .strictObject({
    endpoint: z.string().max(100).optional().openapi({ description: 'Only to this endpoint (default: every endpoint of the mode listening to the type).' }),
  })
  .openapi('ResendEventRequest');

export const ResendEventResponse = z.object({ deliveries: z.array(Delivery) }).openapi('ResendEventResponse');

export const WebhookEndpoint = z
  .object({
    id: z.string(),
    url: z.string(),
    events: z.array(z.string()),
    mode: z.enum(['test', 'live']),
    createdAt: z.string(),
  })
  .openapi('WebhookEndpoint');
export const CreatedWebhookEndpoint = WebhookEndpoint.extend({ secret: z.string().openapi({ description: 'whsec_…, shown only now.' }) }).openapi(
  'CreatedWebhookEndpoint',
);

export const CustomFormBody = z
  .strictObject({
    name: text(100),
    html: markup(z.string().min(1).max(60000)),
    css: markup(z.string().max(60000)).optional(),
  })
  .openapi('CustomFormRequest');

export const CustomForm = z
  .object({
    id: z.string(),
    name: z.string(),
    html: z.string(),
    css: z.string(),
    previewUrl: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
    sanitized: z.array(z.object({ removed: z.string(), count: z.number().int() })).optional(),
  })
  .openapi('CustomForm');
