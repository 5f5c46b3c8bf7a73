/**
 * The API's types. Bodies and answers come from src/generated/openapi.ts (openapi-typescript over
 * the server's openapi.json), looked up by path and method, so a method's types are its
 * endpoint's and cannot drift from the server. What the OpenAPI document does not describe
 * (the token's claims, webhook events) is written here after API.md sections 8 and 10.
 */
import type { components, paths } from './generated/openapi.js';

type Schemas = components['schemas'];

/** The JSON request body of an endpoint. */
export type RequestBody<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { requestBody: { content: { 'application/json': infer B } } }
  ? B
  : paths[P][M] extends { requestBody?: { content: { 'application/json': infer B } } }
    ? B
    : never;

/** The JSON answer of an endpoint for a status. */
export type ResponseBody<P extends keyof paths, M extends keyof paths[P], S extends number> = paths[P][M] extends {
  responses: { [K in S]: { content: { 'application/json': infer R } } };
}
  ? R
  : never;

export type Amount = NonNullable<Schemas['Amount']>;
export type Operation = Schemas['Operation'];
export type CardSummary = Schemas['CardSummary'];

export type CreateCardParams = RequestBody<'/Cards', 'post'>;
export type CreatedCard = ResponseBody<'/Cards', 'post', 201>;
export type Card = ResponseBody<'/Cards/{token}', 'get', 200>;
export type CvvStatus = ResponseBody<'/Cards/{token}/cvv/status', 'get', 200>;

export type CreateSessionParams = RequestBody<'/CvvOperations', 'post'>;
export type CreatedSession = ResponseBody<'/CvvOperations', 'post', 201>;
export type Session = ResponseBody<'/CvvOperations/{id}', 'get', 200>;
export type ReissuedToken = ResponseBody<'/CvvOperations/{id}/token', 'post', 200>;
export type SessionPage = ResponseBody<'/CvvOperations', 'get', 200>;
export type SessionHistory = ResponseBody<'/CvvOperations/{id}/history', 'get', 200>;
export type HistoryEntry = SessionHistory['data'][number];
export type EventPage = ResponseBody<'/Events', 'get', 200>;
export type ApiEvent = ResponseBody<'/Events/{id}', 'get', 200>;
export type DeliveryPage = ResponseBody<'/WebhookEndpoints/{id}/deliveries', 'get', 200>;
export type Delivery = DeliveryPage['data'][number];
export type ResentEvent = ResponseBody<'/Events/{id}/resend', 'post', 200>;
/** GET /CvvOperations's filters; times as Date, ISO 8601 or Unix seconds. */
export interface ListSessionsParams {
  limit?: number;
  startingAfter?: string;
  status?: 'active' | 'completed' | 'canceled' | 'expired';
  card?: string;
  created?: { gte?: Date | string | number; lt?: Date | string | number };
}

type ValidateTokenAnswer = ResponseBody<'/CvvOperations/validateToken', 'post', 200>;
/** validateToken's answer, with `claims` typed (the document says only "an object"). */
export type ValidateTokenResult =
  (Omit<Extract<ValidateTokenAnswer, { valid: true }>, 'claims'> & { claims: SessionClaims }) | Extract<ValidateTokenAnswer, { valid: false }>;
export type ValidateTokenFailureReason = Extract<ValidateTokenAnswer, { valid: false }>['reason'];

export type Merchant = ResponseBody<'/Merchant', 'get', 200>;
export type UpdateMerchantParams = RequestBody<'/Merchant', 'patch'>;

export type CreateWebhookEndpointParams = RequestBody<'/WebhookEndpoints', 'post'>;
export type CreatedWebhookEndpoint = ResponseBody<'/WebhookEndpoints', 'post', 201>;
export type WebhookEndpoint = Schemas['WebhookEndpoint'];
export type WebhookEventType = CreateWebhookEndpointParams['events'][number];

/** The claims of a session token (API.md section 10), as `verifyToken` and validateToken return them. */
export interface SessionClaims {
  /** The server's public base URL. */
  iss: string;
  /** The merchant id, `mer_…`. */
  aud: string;
  /** The session id, `cvo_…`. */
  sub: string;
  /** Unique per token; the session's current `jti` makes a token current. */
  jti: string;
  iat: number;
  exp: number;
  /** 0 for the first token, +1 at every rotation. */
  seq: number;
  mode: 'test' | 'live';
  ops: Operation[];
  amt?: { value: number; currency: string };
  card: { token: string; brand: string; last4: string; cvvLength: number };
  /** base64url SHA-256 of the previous token of the session (absent when `seq` is 0). */
  prev?: string;
  form: string;
  /** The latest result per operation. */
  res: {
    collectCvv?: { status: string; at: number };
    threeDS?: { status: string; eci?: string | null; transactionId: string };
    charge?: {
      status: string;
      chargeId: string;
      amount?: { value: number; currency: string };
      authorizationCode?: string | null;
      cvvResult?: string | null;
      declineCode?: string | null;
    };
  };
  nbf?: number;
}

/** A webhook event (API.md section 8): no CVV, no card number. */
export interface WebhookEvent<T extends WebhookEventType = WebhookEventType> {
  id: string;
  type: T;
  mode: 'test' | 'live';
  /** When the event happened, ISO 8601 UTC. */
  createdAt: string;
  data: Record<string, unknown>;
}

/** One page of a list. Lists that are paginated by the server will set `hasMore` and a cursor. */
export interface Page<T> {
  data: T[];
  hasMore?: boolean;
}
