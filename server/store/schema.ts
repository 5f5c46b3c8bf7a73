/** Table shapes as Kysely sees them (snake_case columns; times are ms since the epoch). */
export interface MerchantsTable {
  id: string;
  name: string;
  allowed_origins: string;
  allowed_proxy_targets: string;
  processor: string;
  cvv_block_threshold: number;
  cvc_session_ttl_seconds: number;
  created_at: number;
  updated_at: number;
}
/** A merchant's settings, one row per mode (API.md section 8): a key reads and writes only its own mode's. */
export interface MerchantSettingsTable {
  merchant_id: string;
  mode: string;
  allowed_origins: string;
  allowed_proxy_targets: string;
  processor: string;
  cvv_block_threshold: number;
  cvc_session_ttl_seconds: number;
  updated_at: number;
}
export interface ApiKeysTable {
  id: string;
  merchant_id: string;
  mode: string;
  hash: string;
  suffix: string;
  created_at: number;
  revoked_at: number | null;
}
export interface SigningKeysTable {
  kid: string;
  alg: string;
  public_jwk: string;
  private_sealed: Buffer;
  key_version: number;
  created_at: number;
  activated_at: number;
  retired_at: number | null;
}
export interface CardsTable {
  token: string;
  merchant_id: string;
  mode: string;
  brand: string;
  last4: string;
  bin: string;
  exp_month: number;
  exp_year: number;
  fingerprint: string;
  number_sealed: Buffer;
  holder_sealed: Buffer | null;
  key_version: number;
  created_at: number;
}
export interface CvvStatusTable {
  merchant_id: string;
  fingerprint: string;
  failed_attempts: number;
  blocked: number;
  updated_at: number;
}
export interface CvcSessionsTable {
  id: string;
  merchant_id: string;
  mode: string;
  card_token: string;
  session_id: string | null;
  sealed: Buffer;
  key_version: number;
  retention: string;
  expires_at: number;
  first_used_at: number | null;
  created_at: number;
}
export interface SessionsTable {
  id: string;
  merchant_id: string;
  mode: string;
  card_token: string;
  operations: string;
  amount_value: number | null;
  amount_currency: string | null;
  reference: string | null;
  require_3ds: number;
  require_cvv: number;
  max_attempts: number;
  cvv_retention: string;
  form: string;
  return_url: string | null;
  metadata: string | null;
  status: string;
  jti: string;
  seq: number;
  token_hash: string;
  att_collect: number;
  att_threeds: number;
  att_charge: number;
  results: string;
  replay_jti: string | null;
  replay_hash: string | null;
  replay_sealed: Buffer | null;
  replay_at: number | null;
  expires_at: number;
  created_at: number;
  updated_at: number;
  /** The charge that owns the session while it is at the processor (null when none is). */
  charge_id: string | null;
  /** When that charge won its token (ms). */
  charge_at: number | null;
}
export interface IdempotencyTable {
  merchant_id: string;
  endpoint: string;
  idem_key: string;
  request_hash: string;
  status: number | null;
  response_sealed: Buffer | null;
  created_at: number;
  expires_at: number;
}
/** Event records (migration 0010): GET /Events, kept 30 days. */
export interface EventsTable {
  id: string;
  merchant_id: string;
  mode: string;
  type: string;
  body: string;
  created_at: number;
}

/** A session's trail (migration 0012). */
export interface SessionHistoryTable {
  id: string;
  session_id: string;
  merchant_id: string;
  mode: string;
  type: string;
  operation: string | null;
  outcome: string | null;
  code: string | null;
  request_id: string | null;
  created_at: number;
}

/** Leases (migration 0009): work one instance of a cluster does at a time, e.g. the retention sweep. */
export interface LeasesTable {
  name: string;
  holder: string;
  until: number;
}

export interface MetaTable {
  name: string;
  value: string;
}

export interface TdsTable {
  id: string;
  merchant_id: string;
  session_id: string;
  mode: string;
  status: string;
  ds_transaction_id: string;
  version: string;
  result_status: string | null;
  eci: string | null;
  cavv_sealed: Buffer | null;
  created_at: number;
  expires_at: number;
  completed_at: number | null;
}
export interface ChargesTable {
  id: string;
  merchant_id: string;
  session_id: string;
  mode: string;
  idempotency_key: string | null;
  request_hash: string;
  provider_key: string;
  processor: string;
  amount_value: number;
  currency: string;
  status: string;
  authorization_code: string | null;
  decline_code: string | null;
  cvv_result: string | null;
  avs_result: string | null;
  network_transaction_id: string | null;
  response_sealed: Buffer | null;
  created_at: number;
  updated_at: number;
  /** The card number's fingerprint when the charge sends a CVV: pending ones are the CVV attempts in flight. */
  cvv_fingerprint: string | null;
}
export interface WebhookEndpointsTable {
  id: string;
  merchant_id: string;
  mode: string;
  url: string;
  events: string;
  secret_sealed: Buffer;
  created_at: number;
}
export interface WebhookOutboxTable {
  id: string;
  event_id: string;
  endpoint_id: string;
  merchant_id: string;
  body: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  locked_until: number;
  last_status: number | null;
  created_at: number;
  delivered_at: number | null;
}

export interface CustomFormsTable {
  id: string;
  merchant_id: string;
  mode: string;
  name: string;
  html: string;
  css: string;
  created_at: number;
  updated_at: number;
}

export interface CvvKeysTable {
  cvc_id: string;
  share: Buffer;
  created_at: number;
}

export interface Database {
  cvv_keys: CvvKeysTable;
  custom_forms: CustomFormsTable;
  tds_transactions: TdsTable;
  charges: ChargesTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_outbox: WebhookOutboxTable;
  merchants: MerchantsTable;
  api_keys: ApiKeysTable;
  signing_keys: SigningKeysTable;
  cards: CardsTable;
  cvv_status: CvvStatusTable;
  merchant_settings: MerchantSettingsTable;
  cvc_sessions: CvcSessionsTable;
  sessions: SessionsTable;
  idempotency_keys: IdempotencyTable;
  meta: MetaTable;
  leases: LeasesTable;
  events: EventsTable;
  session_history: SessionHistoryTable;
}
