import { Kysely, type Selectable } from 'kysely';
import type {
  CardsTable,
  ChargesTable,
  CvcSessionsTable,
  Database,
  MerchantSettingsTable,
  SessionsTable,
  WebhookEndpointsTable,
  WebhookOutboxTable,
} from '../schema.js';
import type {
  ApiKeyRecord,
  ChargeRecord,
  CustomFormRecord,
  OutboxRecord,
  EventRecord,
  EventWrite,
  HistoryRecord,
  TdsRecord,
  WebhookEndpointRecord,
  CardRecord,
  CvcRetention,
  CvcSessionRecord,
  CvvStatusRecord,
  MerchantRecord,
  Mode,
  SessionRecord,
  SessionStatus,
} from '../store.js';
import { isEventRecord, isHistoryRecord } from '../store.js';
import { pack, unpack, Prepared, prepared } from './engine.js';

/** An outbox record as its row. */
export const outboxRow = (o: OutboxRecord) => ({
  id: o.id,
  event_id: o.eventId,
  endpoint_id: o.endpointId,
  merchant_id: o.merchantId,
  body: o.body,
  status: o.status,
  attempts: o.attempts,
  next_attempt_at: o.nextAttemptAt,
  locked_until: o.lockedUntil,
  last_status: o.lastStatus,
  created_at: o.createdAt,
  delivered_at: o.deliveredAt,
});

/** An event's record as its row. */
export const eventRow = (e: EventRecord) => ({ id: e.id, merchant_id: e.merchantId, mode: e.mode, type: e.type, body: e.body, created_at: e.createdAt });
export const toEvent = (r: Selectable<Database['events']>): EventRecord => ({
  kind: 'event',
  id: r.id,
  merchantId: r.merchant_id,
  mode: r.mode as Mode,
  type: r.type,
  body: r.body,
  createdAt: Number(r.created_at),
});

/** A 3DS transaction record as its row. */
export const tdsRow = (t: TdsRecord) => ({
  id: t.id,
  merchant_id: t.merchantId,
  session_id: t.sessionId,
  mode: t.mode,
  status: t.status,
  ds_transaction_id: t.dsTransactionId,
  version: t.version,
  result_status: t.result?.status ?? null,
  eci: t.result?.eci ?? null,
  cavv_sealed: t.result?.cavvSealed ? pack(t.result.cavvSealed) : null,
  created_at: t.createdAt,
  expires_at: t.expiresAt,
  completed_at: t.completedAt,
});

/** A CVC session record as its row. */
export const cvcRow = (c: CvcSessionRecord) => ({
  id: c.id,
  merchant_id: c.merchantId,
  mode: c.mode,
  card_token: c.cardToken,
  session_id: c.sessionId,
  sealed: pack(c.sealed),
  key_version: c.sealed.keyVersion,
  retention: c.retention,
  expires_at: c.expiresAt,
  first_used_at: c.firstUsedAt,
  created_at: c.createdAt,
});

/** Webhook events written by a unit, one prepared row each (a unit writes none or a few). */
export const eventSteps = (db: Kysely<Database>, events: EventWrite[]): Prepared[] =>
  events.map((e) =>
    isEventRecord(e)
      ? prepared('unit:insertEventRecord', eventRow(e), (a) => db.insertInto('events').values(a))
      : isHistoryRecord(e)
        ? prepared('unit:insertHistory', historyRow(e), (a) => db.insertInto('session_history').values(a))
        : prepared('unit:insertEvent', outboxRow(e), (a) => db.insertInto('webhook_outbox').values(a)),
  );

/** A history entry as its row. */
export const historyRow = (h: HistoryRecord) => ({
  id: h.id,
  session_id: h.sessionId,
  merchant_id: h.merchantId,
  mode: h.mode,
  type: h.type,
  operation: h.operation,
  outcome: h.outcome,
  code: h.code,
  request_id: h.requestId,
  created_at: h.createdAt,
});
export const toHistory = (r: Selectable<Database['session_history']>): HistoryRecord => ({
  kind: 'history',
  id: r.id,
  sessionId: r.session_id,
  merchantId: r.merchant_id,
  mode: r.mode as Mode,
  type: r.type as HistoryRecord['type'],
  operation: r.operation,
  outcome: r.outcome,
  code: r.code,
  requestId: r.request_id,
  createdAt: Number(r.created_at),
});

export function toMerchant(r: Selectable<MerchantSettingsTable> & { id: string; name: string; created_at: number }): MerchantRecord {
  return {
    id: r.id,
    name: r.name,
    mode: r.mode as Mode,
    allowedOrigins: JSON.parse(r.allowed_origins),
    allowedProxyTargets: JSON.parse(r.allowed_proxy_targets),
    processor: JSON.parse(r.processor),
    cvvBlockThreshold: Number(r.cvv_block_threshold),
    cvcSessionTtlSeconds: Number(r.cvc_session_ttl_seconds),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}
export function toCard(r: Selectable<CardsTable>): CardRecord {
  return {
    token: r.token,
    merchantId: r.merchant_id,
    mode: r.mode as Mode,
    brand: r.brand,
    last4: r.last4,
    bin: r.bin,
    expMonth: Number(r.exp_month),
    expYear: Number(r.exp_year),
    fingerprint: r.fingerprint,
    numberSealed: unpack(r.number_sealed),
    holderSealed: r.holder_sealed ? unpack(r.holder_sealed) : null,
    createdAt: Number(r.created_at),
  };
}
export function toCvc(r: Selectable<CvcSessionsTable>): CvcSessionRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    mode: r.mode as Mode,
    cardToken: r.card_token,
    sessionId: r.session_id,
    sealed: unpack(r.sealed),
    retention: r.retention as CvcRetention,
    expiresAt: Number(r.expires_at),
    firstUsedAt: r.first_used_at === null ? null : Number(r.first_used_at),
    createdAt: Number(r.created_at),
  };
}
export function toSession(r: Selectable<SessionsTable>): SessionRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    mode: r.mode as Mode,
    cardToken: r.card_token,
    operations: JSON.parse(r.operations),
    amount: r.amount_value === null || r.amount_currency === null ? null : { value: Number(r.amount_value), currency: r.amount_currency },
    reference: r.reference,
    require3DS: Number(r.require_3ds) === 1,
    requireCvv: Number(r.require_cvv) === 1,
    maxAttempts: Number(r.max_attempts),
    cvvRetention: r.cvv_retention as SessionRecord['cvvRetention'],
    form: r.form,
    returnUrl: r.return_url,
    metadata: r.metadata === null ? null : JSON.parse(r.metadata),
    status: r.status as SessionStatus,
    jti: r.jti,
    seq: Number(r.seq),
    tokenHash: r.token_hash,
    attempts: { collectCvv: Number(r.att_collect), threeDS: Number(r.att_threeds), charge: Number(r.att_charge) },
    results: JSON.parse(r.results),
    replay:
      r.replay_jti && r.replay_hash && r.replay_sealed && r.replay_at !== null
        ? { jti: r.replay_jti, hash: r.replay_hash, sealed: unpack(r.replay_sealed), at: Number(r.replay_at) }
        : null,
    chargeInFlight: r.charge_id !== null && r.charge_at !== null ? { chargeId: r.charge_id, since: Number(r.charge_at) } : null,
    expiresAt: Number(r.expires_at),
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

export function toCharge(r: Selectable<ChargesTable>): ChargeRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    sessionId: r.session_id,
    mode: r.mode as Mode,
    idempotencyKey: r.idempotency_key,
    requestHash: r.request_hash,
    providerKey: r.provider_key,
    processor: r.processor,
    amount: { value: Number(r.amount_value), currency: r.currency },
    status: r.status as ChargeRecord['status'],
    authorizationCode: r.authorization_code,
    declineCode: r.decline_code,
    cvvResult: r.cvv_result,
    avsResult: r.avs_result,
    networkTransactionId: r.network_transaction_id,
    responseSealed: r.response_sealed ? unpack(r.response_sealed) : null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}
export function toEndpoint(r: Selectable<WebhookEndpointsTable>): WebhookEndpointRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    mode: r.mode as Mode,
    url: r.url,
    events: JSON.parse(r.events),
    secretSealed: unpack(r.secret_sealed),
    createdAt: Number(r.created_at),
  };
}
export function toOutbox(r: Selectable<WebhookOutboxTable>): OutboxRecord {
  return {
    id: r.id,
    eventId: r.event_id,
    endpointId: r.endpoint_id,
    merchantId: r.merchant_id,
    body: r.body,
    status: r.status as OutboxRecord['status'],
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    lockedUntil: Number(r.locked_until),
    lastStatus: r.last_status === null ? null : Number(r.last_status),
    createdAt: Number(r.created_at),
    deliveredAt: r.delivered_at === null ? null : Number(r.delivered_at),
  };
}

export function toTds(r: Selectable<Database['tds_transactions']>): TdsRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    sessionId: r.session_id,
    mode: r.mode as Mode,
    status: r.status as TdsRecord['status'],
    dsTransactionId: r.ds_transaction_id,
    version: r.version,
    result: r.result_status === null ? null : { status: r.result_status, eci: r.eci, cavvSealed: r.cavv_sealed ? unpack(r.cavv_sealed) : null },
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    completedAt: r.completed_at === null ? null : Number(r.completed_at),
  };
}

export function toForm(r: Selectable<Database['custom_forms']>): CustomFormRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    mode: r.mode as Mode,
    name: r.name,
    html: r.html,
    css: r.css,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

export function toCvvStatus(r: Selectable<Database['cvv_status']>): CvvStatusRecord {
  return {
    merchantId: r.merchant_id,
    fingerprint: r.fingerprint,
    failedAttempts: Number(r.failed_attempts),
    blocked: Number(r.blocked) === 1,
    updatedAt: Number(r.updated_at),
  };
}

export function toApiKey(r: Selectable<Database['api_keys']>): ApiKeyRecord {
  return {
    id: r.id,
    merchantId: r.merchant_id,
    mode: r.mode as Mode,
    hash: r.hash,
    suffix: r.suffix,
    createdAt: Number(r.created_at),
    revokedAt: r.revoked_at === null ? null : Number(r.revoked_at),
  };
}
