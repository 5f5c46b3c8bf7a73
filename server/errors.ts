/** The stable error codes of API.md section 2, with their HTTP status and default message. */
export const ERRORS = {
  invalid_request: [400, 'The request is not valid.'],
  invalid_cvv: [400, 'The CVV is not valid.'],
  invalid_card: [400, 'The card is not valid.'],
  invalid_amount: [400, 'The amount is not valid.'],
  cvc_session_missing: [400, 'A CVC session is required.'],
  unauthenticated: [401, 'Authentication is required.'],
  invalid_api_key: [401, 'The API key is not valid.'],
  invalid_token: [401, 'The session token is not valid.'],
  token_expired: [401, 'The session token has expired.'],
  wrong_credential_type: [401, 'This endpoint does not accept this kind of credential.'],
  operation_not_allowed: [403, 'This operation is not allowed by the session token.'],
  forbidden: [403, 'Forbidden.'],
  origin_not_allowed: [403, 'This origin is not allowed for this merchant.'],
  target_not_allowed: [403, 'This target is not allowed for this merchant.'],
  not_found: [404, 'No such object.'],
  method_not_allowed: [405, 'This method is not allowed on this path.'],
  token_superseded: [409, 'The session token has been superseded by a newer one.'],
  session_completed: [409, 'The session is completed.'],
  session_canceled: [409, 'The session is canceled.'],
  idempotency_key_reused: [409, 'This idempotency key was used with a different request.'],
  precondition_failed: [409, 'A precondition of this operation is not met.'],
  session_expired: [410, 'The session has expired.'],
  cvc_session_not_found: [410, 'No such CVC session.'],
  payload_too_large: [413, 'The request body is too large.'],
  unsupported_media_type: [415, 'The request body must be application/json.'],
  cvv_blocked: [423, "The card's CVV is blocked."],
  rate_limited: [429, 'Too many requests.'],
  attempts_exhausted: [429, 'The attempts for this operation are used up.'],
  processor_error: [502, 'The processor failed.'],
  threeds_provider_error: [502, 'The 3-D Secure provider failed.'],
  internal_error: [500, 'Internal server error.'],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof ERRORS;

export interface AppErrorOptions {
  /** Seconds, sent as Retry-After. */
  retryAfter?: number;
  /** Never sent to the client: logged for 5xx only. */
  cause?: unknown;
  /** Extra response headers (e.g. Allow for 405). */
  headers?: Record<string, string>;
}

/**
 * An error with a stable code from API.md. The status comes from one table;
 * the message is safe to show (never a CVV, a card number or a token).
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfter?: number;
  readonly headers?: Record<string, string>;
  constructor(code: ErrorCode, message?: string, opts: AppErrorOptions = {}) {
    const [status, fallback] = ERRORS[code];
    super(message ?? fallback, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.retryAfter = opts.retryAfter;
    this.headers = opts.headers;
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
