import type { Sealed } from '../types/shared.js';

export type Mode = 'test' | 'live';
export type Operation = 'collectCvv' | 'threeDS' | 'charge';
export type SessionStatus = 'active' | 'completed' | 'canceled' | 'expired';
export type CvvRetention = 'single_use' | 'cache';

/** A merchant as one of its modes sees it: its name, and that mode's settings (API.md section 8). */
export interface MerchantRecord {
  id: string;
  name: string;
  /** Whose settings these are: a test key reads and writes only the test ones, a live key only the live ones. */
  mode: Mode;
  allowedOrigins: string[];
  allowedProxyTargets: string[];
  processor: Record<string, unknown>;
  cvvBlockThreshold: number;
  cvcSessionTtlSeconds: number;
  createdAt: number;
  updatedAt: number;
}

export interface ApiKeyRecord {
  id: string;
  merchantId: string;
  mode: Mode;
  /** HMAC-SHA256 of the key (hex); the key itself is never stored. */
  hash: string;
  /** The key's last four characters, for people telling keys apart. */
  suffix: string;
  createdAt: number;
  /** When it stops (or stopped) working: null while it has no end; a time ahead while it is being rolled. */
  revokedAt: number | null;
}

export interface SigningKeyRecord {
  kid: string;
  alg: string;
  publicJwk: string;
  privateSealed: Sealed;
  createdAt: number;
  activatedAt: number;
  retiredAt: number | null;
}

export interface CardRecord {
  token: string;
  merchantId: string;
  mode: Mode;
  brand: string;
  last4: string;
  bin: string;
  expMonth: number;
  expYear: number;
  /** HMAC of the card number within the server: counts CVV failures per card number. */
  fingerprint: string;
  numberSealed: Sealed;
  holderSealed: Sealed | null;
  createdAt: number;
}

export interface CvvStatusRecord {
  merchantId: string;
  fingerprint: string;
  failedAttempts: number;
  blocked: boolean;
  updatedAt: number;
}

/** How a CVC session may be used: per the session's retention, or 'reusable' (test cards in test mode). */
export type CvcRetention = CvvRetention | 'reusable';

export interface CvcSessionRecord {
  id: string;
  merchantId: string;
  mode: Mode;
  cardToken: string;
  /** The operations session that collected it, or null for one made by POST /Cards. */
  sessionId: string | null;
  sealed: Sealed;
  retention: CvcRetention;
  expiresAt: number;
  firstUsedAt: number | null;
  createdAt: number;
  /** Only from takeCvcSession: the key share it deleted along with the row. */
  keyShare?: Buffer | null;
}

export interface OperationResults {
  collectCvv?: Record<string, unknown>;
  threeDS?: Record<string, unknown>;
  charge?: Record<string, unknown>;
}

export interface SessionRecord {
  id: string;
  merchantId: string;
  mode: Mode;
  cardToken: string;
  operations: Operation[];
  amount: { value: number; currency: string } | null;
  reference: string | null;
  require3DS: boolean;
  requireCvv: boolean;
  maxAttempts: number;
  cvvRetention: CvvRetention;
  form: string;
  returnUrl: string | null;
  metadata: Record<string, string> | null;
  status: SessionStatus;
  /** The current token's jti: only the token with this jti is current. */
  jti: string;
  seq: number;
  /** base64url SHA-256 of the current token (the next token's `prev`). */
  tokenHash: string;
  attempts: Record<Operation, number>;
  results: OperationResults;
  replay: { jti: string; hash: string; sealed: Sealed; at: number } | null;
  /** The charge that owns the session while it is at the processor: from the moment it won its token until its outcome is recorded. */
  chargeInFlight: { chargeId: string; since: number } | null;
  expiresAt: number;
  createdAt: number;
  updatedAt: number;
}

/** A completed Idempotency-Key record, written with what the request created. */
export interface NewIdempotencyRecord {
  endpoint: string;
  key: string;
  requestHash: string;
  status: number;
  responseSealed: Sealed;
  now: number;
  expiresAt: number;
}

export interface IdempotencyRecord {
  requestHash: string;
  /** null while the first request is still being handled. */
  status: number | null;
  responseSealed: Sealed | null;
}

export interface TdsRecord {
  id: string;
  merchantId: string;
  sessionId: string;
  mode: Mode;
  status: 'challenge' | 'completed';
  dsTransactionId: string;
  version: string;
  result: { status: string; eci: string | null; cavvSealed: Sealed | null } | null;
  createdAt: number;
  expiresAt: number;
  completedAt: number | null;
}

export type ChargeStatus = 'pending' | 'approved' | 'declined' | 'error';

export interface ChargeRecord {
  id: string;
  merchantId: string;
  sessionId: string;
  mode: Mode;
  /** The merchant's Idempotency-Key, when the page sent one. */
  idempotencyKey: string | null;
  requestHash: string;
  /** The key sent to the processor so a resend can never charge twice. */
  providerKey: string;
  processor: string;
  amount: { value: number; currency: string };
  status: ChargeStatus;
  authorizationCode: string | null;
  declineCode: string | null;
  cvvResult: string | null;
  avsResult: string | null;
  networkTransactionId: string | null;
  /** The operation's response, encrypted (it holds a token): what a retry with the same key gets. */
  responseSealed: Sealed | null;
  createdAt: number;
  updatedAt: number;
}

/** What every new charge record starts as: pending, without an outcome or a stored response. */
export const NO_OUTCOME = {
  status: 'pending',
  authorizationCode: null,
  declineCode: null,
  cvvResult: null,
  avsResult: null,
  networkTransactionId: null,
  responseSealed: null,
} as const satisfies Partial<ChargeRecord>;

export interface WebhookEndpointRecord {
  id: string;
  merchantId: string;
  mode: Mode;
  url: string;
  events: string[];
  secretSealed: Sealed;
  createdAt: number;
}

export interface OutboxRecord {
  id: string;
  eventId: string;
  endpointId: string;
  merchantId: string;
  body: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: number;
  lockedUntil: number;
  lastStatus: number | null;
  createdAt: number;
  deliveredAt: number | null;
}

/**
 * An event's own record (GET /Events): written once per event, whether or not
 * an endpoint listens, in the transaction of the state change that raised it,
 * beside its deliveries; kept 30 days. `body` is the webhook's payload.
 */
export interface EventRecord {
  kind: 'event';
  id: string;
  merchantId: string;
  mode: Mode;
  type: string;
  body: string;
  createdAt: number;
}

/**
 * One entry of a session's trail (GET /CvvOperations/{id}/history): what
 * happened to it, written in the transaction of the change it records (or,
 * for a refused call, right after the refusal). Never a secret: no token,
 * CVV, card number or CAVV, only ids, statuses and codes.
 */
export interface HistoryRecord {
  kind: 'history';
  id: string;
  sessionId: string;
  merchantId: string;
  mode: Mode;
  type: 'created' | 'operation' | 'refused' | 'reissued' | 'canceled' | 'expired' | 'reconciled';
  /** The operation (collectCvv, threeDS, threeDS/result, charge), or for a refused call its route (`POST /CvvOperations/{id}/token`). */
  operation: string | null;
  /** An operation's result status (`collected`, a 3DS status, `approved`, `declined`, `error`). */
  outcome: string | null;
  /** A refused call's error code, or a declined charge's decline code. */
  code: string | null;
  requestId: string | null;
  createdAt: number;
}

/** What a state change writes about itself besides its own rows: each event's record, its outbox rows (one per listening endpoint), and the session's history entries. */
export type EventWrite = EventRecord | OutboxRecord | HistoryRecord;
export const isEventRecord = (w: EventWrite): w is EventRecord => 'kind' in w && w.kind === 'event';
export const isHistoryRecord = (w: EventWrite): w is HistoryRecord => 'kind' in w && w.kind === 'history';

export interface CustomFormRecord {
  id: string;
  merchantId: string;
  mode: Mode;
  name: string;
  /** Already sanitized. */
  html: string;
  css: string;
  createdAt: number;
  updatedAt: number;
}

/** A row an operation writes in the same transaction as its token rotation. */
export type OperationWrite =
  /** A collected CVV: its key share and CVC session; `replace` deletes the session's earlier CVC sessions first. */
  | { kind: 'cvc'; record: CvcSessionRecord; share: Buffer; replace: boolean }
  /** A 3-D Secure transaction. */
  | { kind: 'tds'; record: TdsRecord };

/** What Store.getOperationContext reads in one statement. */
export interface OperationContextRecord {
  session: SessionRecord;
  card: CardRecord | null;
  merchant: MerchantRecord | null;
  cvvStatus: CvvStatusRecord | null;
  latestTds: TdsRecord | null;
  usableCvc: CvcSessionRecord | null;
  /** With a `chargeKey`: the id of the charge of the session's merchant and mode that holds that Idempotency-Key, if any. */
  keyedChargeId: string | null;
}

/** Type of a charge's outcome, as the processor reported it. */
export type ChargeOutcome = Pick<ChargeRecord, 'status' | 'authorizationCode' | 'declineCode' | 'cvvResult' | 'avsResult' | 'networkTransactionId'>;
/** A replay record: the response of an operation, sealed, kept for a retry of the same call for 60 s. */
export interface ReplayRecord {
  jti: string;
  hash: string;
  sealed: Sealed;
  at: number;
}

/**
 * Storage, split by aggregate: each part owns its tables and the units
 * (transactions) that start from its root. A unit that must also write rows
 * of another aggregate in the same transaction (an operation's CVV, 3-D
 * Secure record and events; a charge's CVV reservation) takes them as
 * arguments, so a service never holds a transaction open.
 *
 * Async so SQLite and PostgreSQL both fit. Every state change is one
 * conditional statement (or one unit) whose result tells the caller whether
 * it won; no transaction spans an await. Expiry is checked in the queries
 * themselves: an expired row is never served, even before the sweeper
 * removes it. Implementations: KyselyStore (SQLite, PostgreSQL) and
 * MemoryStore (tests); both pass tests/store/contract.ts.
 */
export interface Store {
  readonly engine: 'sqlite' | 'postgres' | 'memory';
  migrate(): Promise<void>;
  ping(): Promise<void>;
  close(): Promise<void>;

  readonly meta: MetaStore;
  readonly merchants: MerchantStore;
  readonly signingKeys: SigningKeyStore;
  readonly cards: CardStore;
  readonly cvc: CvcStore;
  readonly sessions: SessionStore;
  readonly charges: ChargeStore;
  readonly webhooks: WebhookStore;
  readonly forms: FormStore;
  readonly idempotency: IdempotencyStore;
  readonly sealed: SealedStore;
}

/**
 * The long-lived sealed values besides cards, re-sealed after their purpose's key rotates (CVVs: the test
 * mode's reusable ones live a year; each is sealed with its own share, which re-sealing keeps).
 */
export type LongLivedKind = 'signing-key' | 'webhook-secret' | 'settings' | 'cvv';

/** One long-lived sealed value: `ref` names its row (a kid, an endpoint id, `merchantId|mode`). */
export interface SealedItem {
  kind: LongLivedKind;
  ref: string;
  /** What binds it (AAD): the merchant, the mode, the row. */
  merchantId: string | null;
  mode: Mode | null;
  /** For settings: the scope the processor configuration was sealed with. */
  scope: string | null;
  sealed: Sealed;
}

/**
 * What each key version seals, for re-sealing after a rotation and for retiring a version once nothing is
 * left under it (`cvvops keys`).
 */
export interface SealedStore {
  /** How many stored values each purpose's key versions seal (versions with none are left out); `purposes`: only those. */
  versionCounts(purposes?: readonly string[]): Promise<Array<{ purpose: string; version: number; count: number }>>;
  /** Up to `limit` long-lived values of `kind` sealed with a key version below `version`. */
  listBelow(kind: LongLivedKind, version: number, limit: number): Promise<SealedItem[]>;
  /** Replaces a value with the same value sealed anew, only if it still holds `item.sealed`: false, and nothing written, otherwise. */
  reseal(item: SealedItem, next: Sealed): Promise<boolean>;
}

/** Instance-wide bookkeeping: named values and leases (one instance of a cluster does a job). */
export interface MetaStore {
  get(name: string): Promise<string | null>;
  /** Sets it only if absent; returns the value now stored. */
  putIfAbsent(name: string, value: string): Promise<string>;
  /**
   * Takes the lease `name` for `holder` until `until` if it is free, past
   * (`until` ≤ now) or already the holder's (renewed). True: the holder has it.
   */
  takeLease(name: string, holder: string, now: number, until: number): Promise<boolean>;
  /** The entries whose name starts with `prefix`, by name. */
  list(prefix: string): Promise<Array<{ name: string; value: string }>>;
  /** Replaces `name` only if it still holds `expected`: false, and nothing written, otherwise. */
  replace(name: string, expected: string, value: string): Promise<boolean>;
  /** How many stored values each kind of key protects (`cvvops keys status`). */
  protectedCounts(): Promise<ProtectedCounts>;
}

/** The stored values under each key purpose, counted. */
export interface ProtectedCounts {
  cards: number;
  cvcSessions: number;
  signingKeys: number;
  webhookEndpoints: number;
  processorSettings: number;
  idempotencyRecords: number;
  replayRecords: number;
  cavvs: number;
  apiKeys: number;
  cvvStatuses: number;
}

/** Merchants, their settings per mode, and their API keys. */
export interface MerchantStore {
  /** A new merchant, with `m`'s settings in both modes. */
  insert(m: MerchantRecord): Promise<void>;
  /** The merchant with one mode's settings. */
  get(id: string, mode: Mode): Promise<MerchantRecord | null>;
  /** Changes one mode's settings only. */
  update(
    id: string,
    mode: Mode,
    patch: Partial<Pick<MerchantRecord, 'allowedOrigins' | 'allowedProxyTargets' | 'processor' | 'cvvBlockThreshold' | 'cvcSessionTtlSeconds'>>,
    now: number,
  ): Promise<MerchantRecord | null>;
  /** Every origin some merchant allows in either mode (CORS preflights). */
  listAllAllowedOrigins(): Promise<string[]>;
  insertApiKey(k: ApiKeyRecord): Promise<void>;
  findApiKeyByHash(hash: string): Promise<ApiKeyRecord | null>;
  /** Every merchant (id, name, creation time), oldest first: the operator's list (`cvvops merchant list`). */
  listAll(): Promise<Array<{ id: string; name: string; createdAt: number }>>;
  /** A merchant's API keys (both modes, revoked ones too), oldest first. */
  listApiKeys(merchantId: string): Promise<ApiKeyRecord[]>;
  /** Sets when a key stops working, never later than it already stops: false when no such key of this merchant. */
  revokeApiKey(merchantId: string, id: string, at: number): Promise<boolean>;
}

/** The token-signing keys (their private halves sealed). */
export interface SigningKeyStore {
  insert(k: SigningKeyRecord): Promise<void>;
  list(): Promise<SigningKeyRecord[]>;
  /** Marks every key but `kid` retired at `now` (those not yet retired). */
  retireAllExcept(kid: string, now: number): Promise<void>;
  deleteRetiredBefore(t: number): Promise<number>;
}

/** Stored cards, and the CVV status (failures, block) of each card number. */
export interface CardStore {
  insert(c: CardRecord): Promise<void>;
  /** Up to `limit` cards whose number is sealed with a key version below `version` (re-encryption after a rotation). */
  listSealedBelow(version: number, limit: number): Promise<CardRecord[]>;
  /**
   * Replaces a card's sealed number and holder name with the same values sealed anew, only if the card still
   * has the sealed number it was read with (`was`): false, and nothing written, otherwise.
   */
  reseal(c: Pick<CardRecord, 'token' | 'merchantId' | 'numberSealed' | 'holderSealed'>, was: CardRecord['numberSealed']): Promise<boolean>;
  get(merchantId: string, mode: Mode, token: string): Promise<CardRecord | null>;
  /** Deletes the card and every CVC session of it; false if there was no such card, or a charge of it is in flight. */
  delete(merchantId: string, mode: Mode, token: string): Promise<boolean>;
  getCvvStatus(merchantId: string, fingerprint: string): Promise<CvvStatusRecord | null>;
  /** Counts one incorrect-CVC decline for a card number; blocks it at `threshold`. Returns the new status. */
  recordCvvFailure(merchantId: string, fingerprint: string, threshold: number, now: number): Promise<CvvStatusRecord>;
  /** A match (or an unblock): the count back to zero, unblocked. */
  resetCvvStatus(merchantId: string, fingerprint: string, now: number): Promise<void>;
  /**
   * Deletes card numbers' CVV statuses untouched since before `before` (at
   * most `limit`): never a blocked one (a block lasts until it is lifted), nor
   * one a pending charge counts on.
   */
  deleteStaleCvvStatus(before: number, limit: number): Promise<number>;
}

/** CVC sessions (a sealed CVV) and their key shares: deleting the share is what destroys the CVV. */
export interface CvcStore {
  /** Stores a CVV's key share (before its CVC session row). */
  putKeyShare(cvcId: string, share: Buffer, now: number): Promise<void>;
  getKeyShare(cvcId: string): Promise<Buffer | null>;
  /** Inserts a CVC session; when `sessionId` is set, deletes that session's earlier ones first. */
  insert(c: CvcSessionRecord, opts?: { replace?: boolean }): Promise<void>;
  /** The live CVC session a charge of this session would use: its own, else the card's (from POST /Cards). */
  findUsable(merchantId: string, cardToken: string, sessionId: string, now: number): Promise<CvcSessionRecord | null>;
  getLive(merchantId: string, mode: Mode, id: string, now: number): Promise<CvcSessionRecord | null>;
  getById(id: string, now: number): Promise<CvcSessionRecord | null>;
  /** The newest live CVC session of a card, whichever session made it. */
  findLiveOfCard(merchantId: string, cardToken: string, now: number): Promise<CvcSessionRecord | null>;
  /** Read-once: deletes a live CVC session and returns it (DELETE … RETURNING); null if it was gone or expired. */
  take(id: string, now: number): Promise<CvcSessionRecord | null>;
  /** Starts the one-time cache window of a `cache` CVC session: first_used_at=now, expiry pulled in to `until` (never extended). */
  startCacheWindow(id: string, now: number, until: number): Promise<void>;
  /** Deletes one; true if it was there and live. */
  delete(merchantId: string, mode: Mode, id: string, now: number): Promise<boolean>;
  deleteOfSession(sessionId: string): Promise<number>;
  /** Deletes a session's CVC sessions unless a charge owns the session: the count, or null when one does. */
  deleteOfSessionUnlessCharging(sessionId: string): Promise<number | null>;
  /** Deletes one CVC session unless a charge owns its session (or, for a card-level one, a session of its card). */
  deleteUnlessCharging(merchantId: string, mode: Mode, id: string, now: number): Promise<'deleted' | 'gone' | 'charging'>;
  /** Removes expired CVC sessions (the sweeper); returns how many. */
  deleteExpired(now: number, limit: number): Promise<number>;
  /** Key shares left without their CVC session (a failed insert), one to two minutes old: none is being stored. */
  deleteOrphanKeyShares(now: number): Promise<number>;
}

/** Operation sessions, their token rotation, and their 3-D Secure transactions. */
export interface SessionStore {
  /**
   * Stores a new session. With `idempotency`: in the same transaction, the
   * completed Idempotency-Key record of the request that created it (an
   * expired one of the same key replaced); false, and nothing written, when
   * another request holds that key. `history`: its first trail entries, in
   * the same transaction.
   */
  insert(s: SessionRecord, idempotency?: NewIdempotencyRecord, history?: HistoryRecord[]): Promise<boolean>;
  /**
   * What POST /CvvOperations reads, in one statement: the card (of this
   * merchant and mode) and, for a keyed request, the live Idempotency-Key
   * record of `endpoint` (expired ones are absent).
   */
  getCreateContext(p: {
    merchantId: string;
    mode: Mode;
    cardToken: string;
    idempotency?: { endpoint: string; key: string; now: number };
  }): Promise<{ card: CardRecord | null; idempotency: IdempotencyRecord | null }>;
  get(merchantId: string, mode: Mode, id: string): Promise<SessionRecord | null>;
  /** By id only: the merchant comes from a verified token, and the caller compares it. */
  getById(id: string): Promise<SessionRecord | null>;
  /**
   * Everything an operation (or validateToken) reads, in one statement: the
   * session by id, its card (null once deleted), its merchant with the
   * session's mode's settings, the card number's CVV status, the session's
   * latest 3DS transaction, and the live CVC session a charge would use (its
   * own, else the card's from POST /Cards), live as of `now`.
   */
  getOperationContext(id: string, now: number, chargeKey?: string): Promise<OperationContextRecord | null>;
  /**
   * An operation, whole, in one transaction: the token rotation from the
   * presented `jti` (one conditional write: it must be current, the session
   * active, unexpired, within the attempts for `op` when `countAttempt`, and
   * owned by no charge) with the results, the next token's hash and the
   * replay record (as finishOperation), then the operation's own rows and its
   * webhook events. Nothing is written unless everything is: false when the
   * token was not won.
   */
  commitOperation(p: {
    id: string;
    jti: string;
    newJti: string;
    op: Operation;
    countAttempt: boolean;
    now: number;
    results: OperationResults;
    tokenHash: string;
    complete: boolean;
    replay: ReplayRecord;
    writes: OperationWrite[];
    events: EventWrite[];
  }): Promise<boolean>;
  /** Records an operation's outcome under the token it produced (conditional on that token still being current). */
  finishOperation(p: {
    id: string;
    jti: string;
    results: OperationResults;
    tokenHash: string;
    now: number;
    complete: boolean;
    replay: ReplayRecord;
  }): Promise<boolean>;
  /** Reissue: a new current token; every earlier one (and the replay) stops working. */
  rotateToken(p: { id: string; jti: string; newJti: string; tokenHash: string; now: number }): Promise<boolean>;
  /** Active sessions past their expiry that no charge owns (the sweeper's candidates, oldest expiry first). */
  listExpired(now: number, limit: number): Promise<Array<{ id: string; merchantId: string; mode: Mode }>>;
  /** active → expired, once (false for every other caller), in one transaction with its CVV's deletion and its `session.expired` webhook events. */
  expire(id: string, now: number, events: EventWrite[]): Promise<boolean>;
  /** active → canceled (never while a charge owns it), in one transaction with its CVV's deletion and its webhook `events`; true if it changed. */
  cancel(merchantId: string, mode: Mode, id: string, now: number, events?: EventWrite[]): Promise<boolean>;
  /**
   * A merchant's sessions in one mode, newest first (created time, then id),
   * at most `limit`; `after`: the ones created before that session of theirs
   * (none if it is not theirs). `status` is the public one: `active` and
   * `expired` also look at the expiry against `now`.
   */
  list(
    merchantId: string,
    mode: Mode,
    q: {
      limit: number;
      after?: string;
      status?: 'active' | 'completed' | 'canceled' | 'expired';
      card?: string;
      createdGte?: number;
      createdLt?: number;
      now: number;
    },
  ): Promise<SessionRecord[]>;
  /**
   * Clears the replay record of completed sessions whose record was made
   * before `before` (its window has ended), at most `limit`. An active
   * session's record is overwritten by its next operation or cleared at
   * cancel or expiry.
   */
  dropReplaysBefore(before: number, limit: number): Promise<number>;
  /**
   * Deletes ended sessions (completed, canceled, expired) whose expiry time is
   * before `before` (at most `limit`), in one transaction with their 3DS
   * transactions, their charge records, their history and any CVC session left of them. A
   * session a charge still owns is kept.
   */
  deleteEnded(before: number, limit: number): Promise<number>;

  /** Writes trail entries outside any other change (a refused call, a reissue). */
  appendHistory(rows: HistoryRecord[]): Promise<void>;
  /** A session's trail, oldest first, at most `limit`; `after`: the entries after that one (none if it is not this session's). Only the merchant's and mode's. */
  history(merchantId: string, mode: Mode, sessionId: string, q: { limit: number; after?: string }): Promise<HistoryRecord[]>;

  insertTds(t: TdsRecord): Promise<void>;
  getTds(id: string): Promise<TdsRecord | null>;
  /** challenge → completed, once; false if it was already completed. */
  /** A challenge's outcome, with the events it raises, in one transaction; false (and nothing written) unless it was still open. */
  completeTds(id: string, result: NonNullable<TdsRecord['result']>, now: number, events?: EventWrite[]): Promise<boolean>;
}

/** Charges: each one's intent, outcome and ownership of its session while it is at the processor. */
export interface ChargeStore {
  /**
   * The unit that starts a charge, in one transaction: wins the token (the
   * conditional rotation of commitOperation, counting a charge attempt) and
   * makes `charge` the session's charge in flight; reserves a CVV attempt for
   * the card number when `cvv` is set (refused while the number is blocked,
   * or while its failures plus the CVV attempts already in flight reach the
   * threshold); stores the durable intent. Nothing is written unless
   * everything is: `lost` (the token was not current, or the session not
   * open, or another charge owns it), `cvv_blocked`, `cvv_busy`, `key_reused`
   * (the Idempotency-Key is taken).
   */
  begin(p: {
    claim: { id: string; jti: string; newJti: string; now: number };
    charge: ChargeRecord;
    cvv: { fingerprint: string; threshold: number } | null;
    /**
     * The CVC session the charge sends, taken in the same unit: a `single_use`
     * one deleted (with its key share), a `cache` one's window started at its
     * first use (`cacheUntil`, never later than its expiry), a `reusable` one
     * read. Gone or expired by now: `cvc_gone`, and nothing is written.
     */
    take?: { id: string; retention: CvcRetention; cacheUntil: number } | null;
  }): Promise<{ status: 'ok'; cvc: CvcSessionRecord | null } | { status: 'lost' | 'cvv_blocked' | 'cvv_busy' | 'key_reused' | 'cvc_gone' }>;
  /**
   * Records a charge's outcome and ends its ownership of the session, in one
   * transaction (only from pending): the charge's outcome; what it says about
   * the CVV it sent (as recordOutcome); the CVV destroyed when `destroyCvc`
   * (live mode, after an authorization); the session finished under the
   * token the charge produced (as finishOperation, the ownership released);
   * the webhook events, and `ifBlocked` ones only when this very outcome
   * blocked the card number. `recorded` false: another settler (crash
   * recovery) recorded it first, and nothing is written.
   */
  complete(p: {
    chargeId: string;
    outcome: ChargeOutcome;
    threshold: number;
    destroyCvc: string | null;
    finish: { id: string; jti: string; results: OperationResults; tokenHash: string; complete: boolean; replay: ReplayRecord };
    now: number;
    events: EventWrite[];
    ifBlocked: EventWrite[];
    /** A keyed charge's response, sealed, kept for its retries (as setResponse, in the same transaction). */
    responseSealed?: Sealed | null;
  }): Promise<{ recorded: boolean; cvvBlocked: boolean }>;
  /**
   * Undoes begin before anything reached the processor (in one transaction):
   * the pending intent deleted (with it its CVV reservation), the presented
   * token current again, the attempt uncounted, the session free.
   */
  abort(p: { id: string; jti: string; oldJti: string; chargeId: string; now: number }): Promise<boolean>;
  /**
   * Records a charge's outcome (only from pending) and, in the same
   * transaction, what it says about the CVV it sent: `incorrect_cvc` counts a
   * failure (blocking at `threshold`), a match resets the count.
   * `cvvBlocked`: this very outcome blocked the card number. The webhook
   * events are written with it, and `ifBlocked` ones only when this very
   * outcome blocked the card number (as complete); nothing is written unless
   * it recorded.
   */
  recordOutcome(
    id: string,
    outcome: ChargeOutcome,
    now: number,
    threshold: number,
    events?: { events: EventWrite[]; ifBlocked: EventWrite[] },
  ): Promise<{ recorded: boolean; cvvBlocked: boolean }>;
  /**
   * Ends a charge's ownership of its session with its outcome, from outside
   * the operation call (crash recovery): a new current token, the results,
   * completed when approved; only while `chargeId` still owns the session.
   */
  settleLock(p: {
    id: string;
    chargeId: string;
    newJti: string;
    tokenHash: string;
    results: OperationResults;
    complete: boolean;
    now: number;
  }): Promise<boolean>;
  /** Crash recovery's lease on a session a charge owns: its ownership time moved from `since` to `now`, for one caller. */
  leaseRecovery(p: { id: string; chargeId: string; since: number; now: number }): Promise<boolean>;
  /** Sessions owned by a charge since before `since`: what crash recovery looks at. */
  listLocks(since: number, limit: number): Promise<Array<{ sessionId: string; chargeId: string; since: number; merchantId: string; mode: Mode }>>;
  setResponse(id: string, sealed: Sealed): Promise<void>;
  get(id: string): Promise<ChargeRecord | null>;
  findByIdempotencyKey(merchantId: string, mode: Mode, key: string): Promise<ChargeRecord | null>;
}

/** Webhook endpoints, events (kept 30 days) and the outbox of deliveries. */
export interface WebhookStore {
  insertEndpoint(e: WebhookEndpointRecord): Promise<void>;
  listEndpoints(merchantId: string, mode: Mode): Promise<WebhookEndpointRecord[]>;
  getEndpoint(id: string): Promise<WebhookEndpointRecord | null>;
  deleteEndpoint(merchantId: string, mode: Mode, id: string): Promise<boolean>;
  /** Writes events (their records and outbox rows) outside any other change. */
  enqueue(rows: EventWrite[]): Promise<void>;
  /** A merchant's events in one mode, newest first, at most `limit`; `after`: the ones before that event of theirs. */
  listEvents(merchantId: string, mode: Mode, q: { limit: number; after?: string; type?: string }): Promise<EventRecord[]>;
  getEvent(merchantId: string, mode: Mode, id: string): Promise<EventRecord | null>;
  /** Deletes event records made before `before` (at most `limit`). */
  deleteOldEvents(before: number, limit: number): Promise<number>;
  /** An endpoint's deliveries (outbox rows), newest first, at most `limit`; `after`: the ones before that row of this endpoint. */
  listDeliveries(endpointId: string, q: { limit: number; after?: string }): Promise<OutboxRecord[]>;
  /** Locks up to `limit` due deliveries for `lockMs` (one instance each: FOR UPDATE SKIP LOCKED on PostgreSQL). */
  claimDue(now: number, lockMs: number, limit: number): Promise<OutboxRecord[]>;
  settle(id: string, p: { status: OutboxRecord['status']; attempts: number; nextAttemptAt: number; lastStatus: number | null; now: number }): Promise<void>;
  listOutbox(merchantId: string): Promise<OutboxRecord[]>;
  /** Deletes outbox rows delivered before `deliveredBefore`, and failed ones whose last try was before `failedBefore` (at most `limit` of each). */
  deleteOldOutbox(deliveredBefore: number, failedBefore: number, limit: number): Promise<number>;
}

/** Custom forms (their HTML already sanitized). */
export interface FormStore {
  insert(f: CustomFormRecord): Promise<void>;
  get(id: string): Promise<CustomFormRecord | null>;
  list(merchantId: string, mode: Mode): Promise<CustomFormRecord[]>;
  update(merchantId: string, mode: Mode, id: string, p: { name: string; html: string; css: string; now: number }): Promise<boolean>;
  delete(merchantId: string, mode: Mode, id: string): Promise<boolean>;
}

/** Idempotency-Key records of the endpoints other than create (which writes its own with the session). */
export interface IdempotencyStore {
  /** Claims an idempotency key, or returns what is already stored under it (expired keys are replaced). */
  reserve(p: { merchantId: string; endpoint: string; key: string; requestHash: string; now: number; expiresAt: number }): Promise<IdempotencyRecord | null>;
  complete(p: { merchantId: string; endpoint: string; key: string; status: number; responseSealed: Sealed }): Promise<void>;
  release(p: { merchantId: string; endpoint: string; key: string }): Promise<void>;
  deleteExpired(now: number, limit: number): Promise<number>;
}
