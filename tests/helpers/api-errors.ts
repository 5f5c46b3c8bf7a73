/** API.md section 2: every error code and the status it goes with (the tests' own copy of the contract, not the server's table). */
export const ERROR_TABLE: Readonly<Record<string, number>> = {
  invalid_request: 400, invalid_cvv: 400, invalid_card: 400, invalid_amount: 400, cvc_session_missing: 400,
  unauthenticated: 401, invalid_api_key: 401, invalid_token: 401, token_expired: 401, wrong_credential_type: 401,
  operation_not_allowed: 403, forbidden: 403, origin_not_allowed: 403, target_not_allowed: 403,
  not_found: 404, method_not_allowed: 405,
  token_superseded: 409, session_completed: 409, session_canceled: 409, idempotency_key_reused: 409, precondition_failed: 409,
  session_expired: 410, cvc_session_not_found: 410, payload_too_large: 413, unsupported_media_type: 415, cvv_blocked: 423,
  rate_limited: 429, attempts_exhausted: 429, processor_error: 502, threeds_provider_error: 502, internal_error: 500,
};
