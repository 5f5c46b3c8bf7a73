/**
 * The API's types. Bodies and answers come from src/generated/openapi.ts (openapi-typescript over
 * the server's openapi.json), looked up by path and method, so a method's types are its
 * endpoint's and cannot drift from the server; so are the token's claims (`TokenClaims`). A webhook
 * event is typed here by its envelope (its `data` differs by type: see the document's `webhooks`).
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

/** validateToken's answer: the claims and the session when valid, the reason when not. */
export type ValidateTokenResult = ResponseBody<'/CvvOperations/validateToken', 'post', 200>;
export type ValidateTokenFailureReason = Extract<ValidateTokenResult, { valid: false }>['reason'];

export type Merchant = ResponseBody<'/Merchant', 'get', 200>;
export type UpdateMerchantParams = RequestBody<'/Merchant', 'patch'>;

export type CreateWebhookEndpointParams = RequestBody<'/WebhookEndpoints', 'post'>;
export type CreatedWebhookEndpoint = ResponseBody<'/WebhookEndpoints', 'post', 201>;
export type WebhookEndpoint = Schemas['WebhookEndpoint'];
export type WebhookEventType = CreateWebhookEndpointParams['events'][number];

/** The claims of a session token (the API reference, section 10), as `verifyToken` and validateToken return them. */
export type SessionClaims = Schemas['TokenClaims'];

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
