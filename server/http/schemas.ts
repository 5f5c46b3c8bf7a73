import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { HttpProcessorConfig } from '../connectors/processors/http.js';
import type { WebhookEvent } from '../domain/webhooks.js';
import { ERRORS, type ErrorCode } from '../errors.js';

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

const SESSION_STATUS = ['active', 'completed', 'canceled', 'expired'] as const;

export const ThreeDSStatus = z.enum(['Y', 'A', 'N', 'U', 'R', 'C']).openapi('ThreeDSStatus', {
  description: 'EMV 3-D Secure transaction status: Y authenticated, A attempted, N not authenticated, U unavailable, R rejected, C challenge required.',
});
const CvvResult = z.enum(['M', 'N', 'P', 'U']).openapi('CvvResult', { description: 'M match, N no match, P not processed, U unavailable.' });
const ChargeOutcome = z.enum(['approved', 'declined', 'error']).openapi('ChargeStatus', {
  description: 'approved; declined (see declineCode); error: the processor failed or could not be reached (the page may retry).',
});
const AmountOut = z.object({ value: z.number().int(), currency: z.string() }).openapi('AmountValue', { description: 'Minor units and ISO 4217 currency.' });

/** What each operation left in the session (its claim in `res` of the token, and `results` of the session). */
export const CollectCvvClaim = z
  .object({ status: z.literal('succeeded'), at: z.number().int().openapi({ description: 'Unix seconds.' }) })
  .strict()
  .openapi('CollectCvvClaim');
export const ThreeDSClaim = z.object({ status: ThreeDSStatus, eci: z.string().nullable(), transactionId: z.string() }).strict().openapi('ThreeDSClaim');
/** What a charge's claim and its result both say (the result adds what only the page that charged sees). */
const chargeOutcome = {
  status: ChargeOutcome,
  chargeId: z.string(),
  amount: AmountOut,
  authorizationCode: z.string().nullable(),
  cvvResult: CvvResult.nullable(),
  declineCode: z.string().nullable(),
};
export const ChargeClaim = z.object(chargeOutcome).strict().openapi('ChargeClaim');
export const Results = z
  .object({ collectCvv: CollectCvvClaim.optional(), threeDS: ThreeDSClaim.optional(), charge: ChargeClaim.optional() })
  .strict()
  .openapi('Results', { description: 'The outcome of each operation that ran, by operation.' });
/** A session's results: a charge under way shows as pending. */
const SessionResults = z
  .object({
    collectCvv: CollectCvvClaim.optional(),
    threeDS: ThreeDSClaim.optional(),
    charge: z
      .union([
        ChargeClaim,
        z
          .object({ status: z.literal('pending'), chargeId: z.string() })
          .strict()
          .openapi('PendingCharge'),
      ])
      .optional(),
  })
  .strict()
  .openapi('SessionResults', { description: 'The outcome of each operation that ran; a charge still in flight shows as pending.' });

/** The claims of a session token (its payload). */
export const TokenClaims = z
  .object({
    iss: z.string().openapi({ description: "The server's PUBLIC_BASE_URL." }),
    aud: z.string().openapi({ description: 'The merchant id.' }),
    sub: z.string().openapi({ description: 'The session id.' }),
    jti: z.string(),
    iat: z.number().int(),
    exp: z.number().int(),
    nbf: z.number().optional().openapi({ description: 'Never issued by this server; checked when a token carries one.' }),
    seq: z.number().int().openapi({ description: 'The rotation number: 0 for the first token, one more per operation call.' }),
    mode: z.enum(['test', 'live']),
    ops: z.array(OperationName),
    amt: AmountOut.optional(),
    card: z.object({ token: z.string(), brand: z.string(), last4: z.string(), cvvLength: z.number().int() }).strict(),
    prev: z
      .string()
      .optional()
      .openapi({ description: 'The base64url SHA-256 of the token this one replaced (absent when seq is 0): the tokens form a chain.' }),
    form: z.string(),
    res: Results,
  })
  .strict()
  .openapi('TokenClaims', { description: 'The payload of a session token (cvvops-session+jwt).' });

/** Each operation's result (the `result` of its 200). */
export const CollectCvvResult = z
  .object({ status: z.literal('succeeded'), cvcSession: z.object({ id: z.string(), expiresAt: z.string() }).strict() })
  .strict()
  .openapi('CollectCvvResult');
export const ThreeDSResult = z
  .object({
    status: ThreeDSStatus.exclude(['C']),
    transactionId: z.string(),
    eci: z.string().nullable(),
    authenticationValue: z.string().nullable().openapi({ description: 'The CAVV (base64), shown once, to the page that asked.' }),
    dsTransactionId: z.string(),
    version: z.string(),
  })
  .strict()
  .openapi('ThreeDSResult');
export const ThreeDSChallenge = z
  .object({
    status: z.literal('C'),
    transactionId: z.string(),
    challengeUrl: z.string().openapi({ description: 'The hosted challenge page: open it in a frame, or redirect the shopper to it.' }),
    dsTransactionId: z.string(),
    version: z.string(),
  })
  .strict()
  .openapi('ThreeDSChallenge');
export const ChargeResult = z
  .object({ ...chargeOutcome, avsResult: z.string().nullable(), networkTransactionId: z.string().nullable(), processor: z.string() })
  .strict()
  .openapi('ChargeResult');

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
    results: SessionResults,
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
    z.object({ valid: z.literal(true), current: z.boolean(), claims: TokenClaims, session: Session }),
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
/** An operation's 200: its result, the next token, the session's status. */
const operationResponse = <R extends z.ZodType>(name: string, result: R) =>
  z
    .object({
      result,
      token: z.string().openapi({ description: 'The next session token: the one sent is now superseded.' }),
      session: z.object({ status: z.enum(SESSION_STATUS) }),
    })
    .openapi(name);
export const CollectCvvResponse = operationResponse('CollectCvvResponse', CollectCvvResult);
export const ThreeDSResponse = operationResponse('ThreeDSResponse', z.union([ThreeDSResult, ThreeDSChallenge]));
export const ThreeDSResultResponse = operationResponse('ThreeDSResultResponse', ThreeDSResult);
export const ChargeResponse = operationResponse('ChargeResponse', ChargeResult);

export const ErrorCodeEnum = z
  .enum(Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]])
  .openapi('ErrorCode', { description: 'A stable error code (docs/api.md, Errors).' });

/** Every error's body; each route's document narrows `code` to the codes of each status. */
export const ErrorBody = z
  .object({
    error: z
      .object({
        code: ErrorCodeEnum,
        message: z.string().openapi({ description: 'For people: never a CVV, a card number or a token.' }),
        requestId: z.string().openapi({ description: 'The X-Request-Id of the call, to quote in a support request.' }),
      })
      .strict(),
  })
  .strict()
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
    processor: z
      .union([z.object({ type: z.literal('simulator') }).strict(), z.object({ type: z.literal('http'), url: z.string() }).strict()])
      .openapi({ description: "The processor of this mode (an http processor's template and credentials are never shown)." }),
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

const eventOf = <D extends z.ZodRawShape>(type: string, name: string, description: string, data: D) =>
  z
    .object({
      id: z.string().openapi({ description: 'evt_…: the same on every delivery and retry of the event (deduplicate on it).' }),
      type: z.literal(type),
      createdAt: z.string(),
      mode: z.enum(['test', 'live']),
      data: z.object(data).strict(),
    })
    .strict()
    .describe(description)
    .openapi(name);

const sessionRef = z.string().openapi({ description: 'The session id (cvo_…).' });
export const EVENT_SCHEMAS = {
  'cvv.collected': eventOf('cvv.collected', 'CvvCollectedEvent', 'The CVV was collected into a CVC session of the session.', {
    session: sessionRef,
    card: z.string(),
    cvcSession: z.string(),
    expiresAt: z.string().openapi({ description: 'When the CVC session ends (ISO 8601).' }),
  }),
  'threeds.completed': eventOf('threeds.completed', 'ThreeDSCompletedEvent', 'A 3-D Secure transaction reached its final status.', {
    session: sessionRef,
    transactionId: z.string(),
    status: ThreeDSStatus.exclude(['C']),
    eci: z.string().nullable(),
  }),
  'charge.succeeded': eventOf('charge.succeeded', 'ChargeSucceededEvent', 'A charge was approved.', {
    session: sessionRef,
    chargeId: z.string(),
    status: z.literal('approved'),
    amount: AmountOut,
    declineCode: z.null(),
    cvvResult: CvvResult.nullable(),
  }),
  'charge.failed': eventOf('charge.failed', 'ChargeFailedEvent', 'A charge was declined, or failed at the processor.', {
    session: sessionRef,
    chargeId: z.string(),
    status: z.enum(['declined', 'error']),
    amount: AmountOut,
    declineCode: z.string().nullable(),
    cvvResult: CvvResult.nullable(),
  }),
  'session.completed': eventOf('session.completed', 'SessionCompletedEvent', 'The session ended with an approved charge.', {
    session: sessionRef,
    chargeId: z.string(),
  }),
  'session.canceled': eventOf('session.canceled', 'SessionCanceledEvent', 'The merchant canceled the session.', { session: sessionRef }),
  'session.expired': eventOf('session.expired', 'SessionExpiredEvent', 'The session reached its expiry unfinished.', { session: sessionRef }),
  'cvv.blocked': eventOf('cvv.blocked', 'CvvBlockedEvent', "The card's CVV is blocked after too many wrong CVVs (POST /Cards/{token}/cvv/unblock).", {
    card: z.string(),
    failedAttempts: z.number().int(),
  }),
} as const satisfies Record<WebhookEvent, z.ZodType>;
export const TestEvent = eventOf('webhook.test', 'WebhookTestEvent', 'Sent by `cvvops webhooks test`, to one endpoint; not stored.', {
  endpoint: z.string(),
});

export const Event = z
  .discriminatedUnion('type', Object.values(EVENT_SCHEMAS) as unknown as [z.ZodObject, ...z.ZodObject[]])
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
