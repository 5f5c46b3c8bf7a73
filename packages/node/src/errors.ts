/** Why `verifyToken` refused a token: validateToken's reasons, plus `too_old` (`maxAgeSeconds`). */
export type TokenFailureReason = 'malformed' | 'wrong_type' | 'unknown_key' | 'bad_signature' | 'wrong_issuer' | 'wrong_merchant' | 'expired' | 'too_old';

/**
 * The codes a `CvvOpsError` may carry: the API's own (API.md section 2), and the SDK's for what
 * never got an API answer.
 */
export type CvvOpsErrorCode =
  // The API's (a newer server may add more: any string can arrive).
  | 'invalid_request'
  | 'invalid_cvv'
  | 'invalid_card'
  | 'invalid_amount'
  | 'cvc_session_missing'
  | 'unauthenticated'
  | 'invalid_api_key'
  | 'invalid_token'
  | 'token_expired'
  | 'wrong_credential_type'
  | 'operation_not_allowed'
  | 'forbidden'
  | 'origin_not_allowed'
  | 'target_not_allowed'
  | 'not_found'
  | 'method_not_allowed'
  | 'token_superseded'
  | 'session_completed'
  | 'session_canceled'
  | 'idempotency_key_reused'
  | 'precondition_failed'
  | 'session_expired'
  | 'cvc_session_not_found'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'cvv_blocked'
  | 'rate_limited'
  | 'attempts_exhausted'
  | 'processor_error'
  | 'threeds_provider_error'
  | 'internal_error'
  // The SDK's.
  | 'connection_error' // the server could not be reached, or the connection broke before an answer
  | 'timeout' // no answer within timeoutMs
  | 'aborted' // the caller's AbortSignal fired
  | 'api_error' // an answer that is not the API's error shape (a proxy's 502 page, say)
  | 'invalid_response' // a 2xx answer that is not the JSON expected
  | 'invalid_signature' // webhooks.constructEvent
  | 'invalid_configuration'
  | (string & {});

export interface CvvOpsErrorInit {
  code: CvvOpsErrorCode;
  message: string;
  status?: number;
  requestId?: string;
  retryAfterSeconds?: number;
  reason?: TokenFailureReason;
  cause?: unknown;
}

/**
 * Every failure of the SDK. `status` is the HTTP status (undefined when no answer came), `code`
 * the API's stable code (or one of the SDK's), `requestId` the server's `X-Request-Id` for
 * support. Never carries the API key, a card number, a CVV or a session token.
 */
export class CvvOpsError extends Error {
  override readonly name = 'CvvOpsError';
  readonly code: CvvOpsErrorCode;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  /** The server's `Retry-After`, in seconds, when it sent one. */
  readonly retryAfterSeconds: number | undefined;
  /** For `verifyToken`: why the token was refused. */
  readonly reason: TokenFailureReason | undefined;

  constructor(init: CvvOpsErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.status = init.status;
    this.requestId = init.requestId;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.reason = init.reason;
  }
}
