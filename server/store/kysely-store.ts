import {
  type Compilable,
  type CompiledQuery,
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  sql,
  type Selectable,
  type SelectQueryBuilder,
  type Updateable,
  type UpdateQueryBuilder,
  type UpdateResult,
} from 'kysely';
import type BetterSqlite3 from 'better-sqlite3';
import { chmodSync, closeSync, fdatasync, fstatSync, openSync } from 'node:fs';
import type { Sealed } from '../types/shared.js';
import { migrationProvider, type Engine } from './migrations.js';
import type {
  CardsTable,
  ChargesTable,
  CvcSessionsTable,
  Database,
  MerchantSettingsTable,
  SessionsTable,
  WebhookEndpointsTable,
  WebhookOutboxTable,
} from './schema.js';
import type {
  ApiKeyRecord,
  ChargeRecord,
  CustomFormRecord,
  OutboxRecord,
  EventRecord,
  EventWrite,
  TdsRecord,
  WebhookEndpointRecord,
  CardRecord,
  CvcRetention,
  CvcSessionRecord,
  CvvStatusRecord,
  IdempotencyRecord,
  MerchantRecord,
  Mode,
  NewIdempotencyRecord,
  Operation,
  OperationContextRecord,
  SessionRecord,
  SessionStatus,
  SigningKeyRecord,
  Store,
} from './store.js';
import { isEventRecord } from './store.js';

/** A sealed value in one column: its key version in the first byte. */
const pack = (s: Sealed): Buffer => Buffer.concat([Buffer.from([s.keyVersion]), s.blob]);
const unpack = (b: Buffer | Uint8Array): Sealed => {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b);
  return { keyVersion: buf[0]!, blob: buf.subarray(1) };
};

/** An outbox record as its row. */
const outboxRow = (o: OutboxRecord) => ({
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
const eventRow = (e: EventRecord) => ({ id: e.id, merchant_id: e.merchantId, mode: e.mode, type: e.type, body: e.body, created_at: e.createdAt });
const toEvent = (r: Selectable<Database['events']>): EventRecord => ({
  kind: 'event',
  id: r.id,
  merchantId: r.merchant_id,
  mode: r.mode as Mode,
  type: r.type,
  body: r.body,
  createdAt: Number(r.created_at),
});

/** A 3DS transaction record as its row. */
const tdsRow = (t: TdsRecord) => ({
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
const cvcRow = (c: CvcSessionRecord) => ({
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

/** What a statement of a transaction unit gives back to it. */
interface StepResult {
  rows: any[];
  affected: number;
}
/**
 * A statement compiled once (see KyselyStore.#compile): `build` is called the
 * first time only, with a marker in place of each of `args`, and its SQL kept
 * under `key`; later runs only bind `args`. Whatever changes the SQL (not just
 * a value) belongs in `key`.
 */
interface Prepared {
  readonly key: string;
  readonly args: Record<string, unknown>;
  readonly build: (a: any) => Compilable<unknown>;
}
const prepared = <A extends Record<string, unknown>>(key: string, args: A, build: (a: A) => Compilable<unknown>): Prepared => ({ key, args, build });
/**
 * A statement that must give back exactly one row (a SELECT, or a write with
 * RETURNING); otherwise the whole unit is undone and returns `refuse`. The
 * check runs where the statement runs: on SQLite in the synchronous
 * transaction, on PostgreSQL in the statement itself (wrapped so that it
 * raises cvvops_refuse's error, migration 0008), so the statements sent after
 * it in the same round trip fail and the COMMIT that follows them rolls back.
 */
interface Guarded {
  readonly step: Prepared | Compilable<unknown>;
  readonly refuse: unknown;
}
const guarded = (step: Prepared | Compilable<unknown>, refuse: unknown): Guarded => ({ step, refuse });
type Step = Compilable<unknown> | Prepared | Guarded;
/**
 * Statements sent together: on PostgreSQL in one round trip (pipelined; the
 * BEGIN rides with the unit's first batch). `final`: the unit ends after it
 * (it may read the results, but not refuse: its refusals are guards), so the
 * COMMIT rides along too, and a unit of one final batch is one round trip.
 */
class Batch {
  constructor(
    readonly steps: readonly Step[],
    readonly final: boolean,
  ) {}
}
/**
 * A transaction unit: yields the statements it runs (Kysely builders, or
 * `prepared` ones on the hot paths) one by one or in batches (`send`), gets
 * their results back.
 */
type Unit<T> = Generator<Compilable<unknown> | Prepared | Batch, T, any>;
/** Inside a unit: runs `steps` together (see Batch) and gives back their results, in order. */
function* send(steps: readonly Step[], opts: { final: boolean }): Generator<Batch, StepResult[], any> {
  return (yield new Batch(steps, opts.final)) as StepResult[];
}
const isGuarded = (s: Step): s is Guarded => 'refuse' in s;

/** Webhook events written by a unit, one prepared row each (a unit writes none or a few). */
const eventSteps = (db: Kysely<Database>, events: EventWrite[]): Prepared[] =>
  events.map((e) =>
    isEventRecord(e)
      ? prepared('unit:insertEventRecord', eventRow(e), (a) => db.insertInto('events').values(a))
      : prepared('unit:insertEvent', outboxRow(e), (a) => db.insertInto('webhook_outbox').values(a)),
  );
/** Thrown inside a unit: undo everything it wrote and return `value`. */
class Rollback<T> {
  constructor(readonly value: T) {}
}
/** The SQLSTATE cvvops_refuse raises (migration 0008): a guard found its statement gave no row. */
const REFUSED = 'CV001';

/**
 * A charge's outcome (only from pending: a charge already settled refuses the
 * unit with `refuse`) and what it says about the CVV it sent: `incorrect_cvc`
 * counts a failure (blocking at `threshold`), a match resets the count. The
 * card number is the charge's (a subquery), so the statements need nothing
 * from each other and go in one batch. `blocked(results)`: this very outcome
 * blocked the card number. Steps of a transaction unit (recordChargeOutcome,
 * completeCharge), first in their batch.
 */
function outcomeSteps(
  db: Kysely<Database>,
  id: string,
  o: Pick<ChargeRecord, 'status' | 'authorizationCode' | 'declineCode' | 'cvvResult' | 'avsResult' | 'networkTransactionId'>,
  now: number,
  threshold: number,
  refuse: unknown,
): { steps: Step[]; blocked: (r: StepResult[]) => boolean } {
  const outcome = {
    id,
    status: o.status,
    authorization_code: o.authorizationCode,
    decline_code: o.declineCode,
    cvv_result: o.cvvResult,
    avs_result: o.avsResult,
    network_transaction_id: o.networkTransactionId,
    updated_at: now,
  };
  const steps: Step[] = [
    guarded(
      prepared('unit:chargeOutcome', outcome, ({ id: chargeId, ...set }) =>
        db.updateTable('charges').set(set).where('id', '=', chargeId).where('status', '=', PENDING).returning(ONE),
      ),
      refuse,
    ),
  ];
  // The card number the charge sent a CVV for (none: no row matches, nothing changes).
  const ofCharge = (a: { id: string }) => ({
    merchant: db.selectFrom('charges').select('merchant_id').where('id', '=', a.id),
    fp: db.selectFrom('charges').select('cvv_fingerprint').where('id', '=', a.id),
  });
  if (o.declineCode === 'incorrect_cvc') {
    steps.push(
      prepared('unit:cvvFailure', { threshold, now, id }, (a) =>
        db
          .updateTable('cvv_status')
          .set({
            failed_attempts: sql`failed_attempts + 1`,
            blocked: sql`CASE WHEN failed_attempts + 1 >= ${a.threshold} THEN 1 ELSE blocked END`,
            updated_at: a.now,
          })
          .where('merchant_id', '=', ofCharge(a).merchant)
          .where('fingerprint', '=', ofCharge(a).fp)
          .returning(['failed_attempts', 'blocked']),
      ),
    );
  } else if (o.cvvResult === 'M') {
    steps.push(
      prepared('unit:cvvMatch', { now, id }, (a) =>
        db
          .updateTable('cvv_status')
          .set({ failed_attempts: 0, blocked: 0, updated_at: a.now })
          .where('merchant_id', '=', ofCharge(a).merchant)
          .where('fingerprint', '=', ofCharge(a).fp)
          .where((eb) => eb.or([eb('failed_attempts', '>', 0), eb('blocked', '=', 1)])),
      ),
    );
  }
  return {
    steps,
    blocked: (r) => {
      if (o.declineCode !== 'incorrect_cvc') return false;
      const st = r[1]?.rows[0] as { failed_attempts: number; blocked: number } | undefined;
      return !!st && Number(st.blocked) === 1 && Number(st.failed_attempts) === threshold;
    },
  };
}

/** What a guarded write gives back: one row with a constant, so the guard can count it. */
const ONE = sql<number>`1`.as('one');

/**
 * 'pending' as a literal in the SQL, not a parameter: the partial index on
 * pending charges (charges_cvv_in_flight) makes SQLite re-prepare, on every
 * run, a statement that compares `status` with a bound value.
 */
const PENDING = sql.lit('pending');
/** 'completed' as a literal, for the partial index on completed sessions' replay records (as PENDING). */
const COMPLETED = sql.lit('completed');

/** An operation's outcome on its session, as arguments of a prepared statement: results, next token hash, replay record. */
interface FinishArgs extends Record<string, unknown> {
  id: string;
  jti: string;
  results: string;
  tokenHash: string;
  now: number;
  replayJti: string;
  replayHash: string;
  replaySealed: Buffer;
  replayAt: number;
}
const finishArgs = (
  f: { id: string; jti: string; results: unknown; tokenHash: string; replay: { jti: string; hash: string; sealed: Sealed; at: number } },
  now: number,
): FinishArgs => ({
  id: f.id,
  jti: f.jti,
  results: JSON.stringify(f.results),
  tokenHash: f.tokenHash,
  now,
  replayJti: f.replay.jti,
  replayHash: f.replay.hash,
  replaySealed: pack(f.replay.sealed),
  replayAt: f.replay.at,
});
/** The columns every operation's outcome sets on its session: results, next token hash, replay record. */
const outcomeSet = (a: FinishArgs) => ({
  results: a.results,
  token_hash: a.tokenHash,
  updated_at: a.now,
  replay_jti: a.replayJti,
  replay_hash: a.replayHash,
  replay_sealed: a.replaySealed,
  replay_at: a.replayAt,
});
/** The columns such a finish sets; a charge's outcome also ends its ownership of the session (no other operation could have held it). */
const finishSet = (a: FinishArgs, complete: boolean) => ({
  ...outcomeSet(a),
  charge_id: null,
  charge_at: null,
  ...(complete ? { status: 'completed' } : {}),
});

const ATTEMPT_COLUMN = { collectCvv: 'att_collect', threeDS: 'att_threeds', charge: 'att_charge' } as const satisfies Record<Operation, keyof SessionsTable>;

function toMerchant(r: Selectable<MerchantSettingsTable> & { id: string; name: string; created_at: number }): MerchantRecord {
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
function toCard(r: Selectable<CardsTable>): CardRecord {
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
function toCvc(r: Selectable<CvcSessionsTable>): CvcSessionRecord {
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
function toSession(r: Selectable<SessionsTable>): SessionRecord {
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

function toCharge(r: Selectable<ChargesTable>): ChargeRecord {
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
function toEndpoint(r: Selectable<WebhookEndpointsTable>): WebhookEndpointRecord {
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
function toOutbox(r: Selectable<WebhookOutboxTable>): OutboxRecord {
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

export interface KyselyStoreOptions {
  /** SQLite `synchronous` for ordinary writes. */
  synchronous?: 'FULL' | 'NORMAL';
  /** Called after CVV rows were deleted (tests observe checkpoints). */
  onCheckpoint?: (ms: number) => void;
  /** The time, in ms since the epoch, for the store's own caches (the server's clock; default Date.now). */
  now?: () => number;
}

/**
 * The one Store implementation, over Kysely, for SQLite (better-sqlite3) and
 * PostgreSQL (pg). Dialect differences stay in this file: pragmas and the WAL
 * checkpoint that makes deleted CVV bytes leave the SQLite files.
 */
export class KyselyStore implements Store {
  readonly db: Kysely<Database>;
  readonly engine: Engine;
  readonly #sqlite: BetterSqlite3.Database | null;
  /** SQLite: prepared statements by SQL text (shared with Kysely's own calls). */
  readonly #prepare: ((text: string) => BetterSqlite3.Statement) | null;
  /** The pg pool (PostgreSQL only): shared with the rate limiter so limits hold across instances. */
  pgPool: unknown = null;
  #checkpointTimer: NodeJS.Timeout | null = null;
  readonly #opts: KyselyStoreOptions;

  /** Statements run so far, however they were sent (tests report how many an operation runs). */
  readonly #statements: { n: number; trips: number };
  get statementsRun(): number {
    return this.#statements.n;
  }
  /**
   * Round trips to the database so far: on PostgreSQL each awaited exchange
   * (a transaction unit's batch, a statement), on SQLite each synchronous call.
   */
  get roundTrips(): number {
    return this.#statements.trips;
  }

  private constructor(
    db: Kysely<Database>,
    engine: Engine,
    sqliteDb: BetterSqlite3.Database | null,
    opts: KyselyStoreOptions,
    prepare: ((text: string) => BetterSqlite3.Statement) | null = null,
    statements = { n: 0, trips: 0 },
  ) {
    this.#statements = statements;
    this.db = db;
    this.engine = engine;
    this.#sqlite = sqliteDb;
    this.#prepare = prepare;
    this.#opts = opts;
  }

  static async open(url: string, opts: KyselyStoreOptions = {}): Promise<KyselyStore> {
    if (url.startsWith('sqlite:')) {
      const path = url.slice('sqlite:'.length);
      const { default: Sqlite } = await import('better-sqlite3');
      if (path !== ':memory:') {
        const { mkdirSync } = await import('node:fs');
        const path_ = await import('node:path');
        mkdirSync(path_.dirname(path), { recursive: true, mode: 0o700 });
        KyselyStore.#ownerOnly(path, true);
      }
      const raw = new Sqlite(path);
      raw.pragma('journal_mode = WAL');
      raw.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
      raw.pragma('secure_delete = ON');
      raw.pragma('foreign_keys = ON');
      raw.pragma('busy_timeout = 5000');
      // SQLite gives the -wal and -shm files the database file's mode; ones left by an older version are tightened too.
      if (path !== ':memory:') for (const f of [`${path}-wal`, `${path}-shm`]) KyselyStore.#ownerOnly(f, false);
      // Kysely prepares every statement on every call; the same SQL text is reused here (a profile showed
      // prepare() at ~11 % of the server's time under load). Statements are never iterated, so sharing is safe.
      const statements = new Map<string, BetterSqlite3.Statement>();
      const database = {
        prepare(text: string) {
          let st = statements.get(text);
          if (!st) {
            st = raw.prepare(text);
            if (statements.size < 1000) statements.set(text, st);
          }
          return st;
        },
        close() {
          statements.clear();
          raw.close();
        },
      };
      const counter = { n: 0, trips: 0 };
      const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: database }), log: () => void (counter.n++, counter.trips++) });
      return new KyselyStore(db, 'sqlite', raw, opts, (text) => database.prepare(text), counter);
    }
    if (/^postgres(ql)?:\/\//.test(url)) {
      const pg = await import('pg');
      pg.default.types.setTypeParser(20, (v: string) => Number(v));
      // Pipeline mode: a transaction unit's statements are sent together, without waiting for each result (#transaction).
      const pool = new pg.default.Pool({ connectionString: url, max: 10, pipeline: true });
      const counter = { n: 0, trips: 0 };
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log: () => void (counter.n++, counter.trips++) });
      const store = new KyselyStore(db, 'postgres', null, opts, null, counter);
      store.pgPool = pool;
      return store;
    }
    throw new Error('unsupported DATABASE_URL');
  }

  /**
   * The database files hold card data (encrypted) and its metadata: readable
   * by their owner only (0600), whatever the umask. `create`: made so before
   * SQLite opens it, so it is never briefly world-readable.
   */
  static #ownerOnly(file: string, create: boolean): void {
    try {
      if (create) closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    } catch (e) {
      // Not there (a -wal before the first write), or not ours to change (a file another user owns): SQLite decides.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    }
  }

  readonly #compiled = new Map<string, { query: CompiledQuery; slots: Array<string | { value: unknown }> }>();
  /**
   * Runs a hot-path query built by Kysely only once: the builder is called the
   * first time with a marker in place of each argument, the compiled SQL is
   * kept under `key`, and later calls only bind the arguments (on SQLite
   * straight to the prepared statement, synchronously; on PostgreSQL as a
   * named statement, prepared once per connection). A profile showed
   * Kysely's per-call building and compiling at ~9 % of the server's time.
   * `build` must pass every argument through as a value (no arithmetic or
   * branching on it): whatever changes the SQL belongs in `key`.
   */
  async #exec<A extends Record<string, unknown>, R>(key: string, args: A, build: (a: A) => Compilable<R>): Promise<{ rows: R[]; affected: number }> {
    const { query, params } = this.#compile(key, args, build);
    if (this.#prepare || this.pgPool) this.#statements.n++;
    this.#statements.trips++;
    if (this.#prepare) {
      const st = this.#prepare(query.sql);
      if (st.reader) return { rows: st.all(params) as R[], affected: 0 };
      return { rows: [], affected: st.run(params).changes };
    }
    if (this.pgPool) {
      // A named statement: PostgreSQL parses and plans it once per connection instead of on every call.
      const r = await (this.pgPool as { query(q: { name: string; text: string; values: unknown[] }): Promise<{ rows: R[]; rowCount: number | null }> }).query({
        name: `cvvops:${key}`,
        text: query.sql,
        values: params,
      });
      return { rows: r.rows, affected: r.rowCount ?? 0 };
    }
    const r = await this.db.executeQuery<R>({ ...query, parameters: params });
    return { rows: r.rows, affected: Number(r.numAffectedRows ?? 0n) };
  }

  /** The SQL of the query `build` makes, compiled the first time `key` is seen, and `args` bound to it (see #exec). */
  #compile<A extends Record<string, unknown>>(key: string, args: A, build: (a: A) => Compilable<unknown>): { query: CompiledQuery; params: unknown[] } {
    let c = this.#compiled.get(key);
    if (!c) {
      const marker = (k: string) => `\u0000cvvops-arg:${k}\u0000`;
      const markers = Object.fromEntries(Object.keys(args).map((k) => [k, marker(k)])) as A;
      const query = build(markers).compile();
      const byMarker = new Map(Object.keys(args).map((k) => [marker(k), k]));
      const slots = query.parameters.map((p) => (typeof p === 'string' && byMarker.has(p) ? byMarker.get(p)! : { value: p }));
      for (const k of Object.keys(args)) {
        if (!slots.includes(k)) throw new Error(`prepared query ${key}: argument ${k} is not a parameter`);
      }
      c = { query, slots };
      this.#compiled.set(key, c);
    }
    // An absent value is NULL (the SQL was built with a parameter in its place, never without the column).
    return { query: c.query, params: c.slots.map((s) => (typeof s === 'string' ? (args[s] ?? null) : s.value)) };
  }

  /**
   * A unit's statement as SQL and parameters, and the name it is prepared
   * under on PostgreSQL (prepared ones only). A guarded one, on PostgreSQL,
   * raises cvvops_refuse's error unless it gives back exactly one row (on
   * SQLite the unit checks the rows, see #runSqlite).
   */
  #bind(step: Step): { sql: string; params: unknown[]; name?: string } {
    if (isGuarded(step)) {
      const b = this.#bind(step.step);
      if (this.engine !== 'postgres') return b;
      return {
        sql: `WITH w AS (${b.sql}), g AS (SELECT cvvops_refuse(count(*) <> 1) AS refused FROM w) SELECT w.* FROM g LEFT JOIN w ON true`,
        params: b.params,
        ...(b.name ? { name: `${b.name}:guarded` } : {}),
      };
    }
    if ('build' in step) {
      const { query, params } = this.#compile(step.key, step.args, step.build);
      return { sql: query.sql, params, name: `cvvops:${step.key}` };
    }
    const c = step.compile();
    return { sql: c.sql, params: c.parameters as unknown[] };
  }

  async migrate(): Promise<void> {
    // PostgreSQL: Kysely's Migrator looks for its bookkeeping tables in every
    // schema unless told which one, so a `kysely_migration` table in another
    // schema (another app's, or another cvvops instance's) made it skip
    // creating its own and then fail. Pin it to the schema our tables go to.
    let migrationTableSchema: string | undefined;
    if (this.engine === 'postgres') {
      const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(this.db);
      migrationTableSchema = rows[0]?.schema ?? undefined;
    }
    const migrator = new Migrator({ db: this.db, provider: migrationProvider(this.engine), migrationTableSchema });
    const { error } = await migrator.migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error('the migrations failed', { cause: error });
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async close(): Promise<void> {
    await this.#walSyncing?.catch(() => undefined);
    if (this.#walFd !== null) {
      closeSync(this.#walFd);
      this.#walFd = null;
    }
    if (this.#checkpointTimer) {
      clearTimeout(this.#checkpointTimer);
      this.#checkpointTimer = null;
      this.checkpointNow();
    }
    await this.db.destroy();
  }

  /**
   * After CVV rows are deleted (secure_delete zeroes them in the main file),
   * their earlier versions may still sit in the write-ahead log: checkpoint
   * it with TRUNCATE soon after (20 ms: deletions that come close together share one,
   * and the log it copies stays small, so the checkpoint holds the event loop briefly).
   */
  #afterCvvDelete(): void {
    if (!this.#sqlite || this.#checkpointTimer) return;
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = null;
      this.checkpointNow();
    }, 20);
    this.#checkpointTimer.unref();
  }

  #checkpointRetries = 0;
  /**
   * Runs the WAL checkpoint at once (SQLite); a no-op on PostgreSQL. With
   * several processes on one file (CVVOPS_WORKERS) another one may be reading:
   * a checkpoint that could not finish is retried shortly, up to 5 s.
   */
  checkpointNow(): void {
    if (!this.#sqlite || !this.#sqlite.open) return;
    const t0 = performance.now();
    let done = false;
    try {
      const [r] = this.#sqlite.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
      done = !r || r.busy === 0;
    } catch {
      done = false;
    }
    this.#opts.onCheckpoint?.(performance.now() - t0);
    if (done) {
      this.#checkpointRetries = 0;
    } else if (this.#checkpointRetries++ < 50 && !this.#checkpointTimer) {
      this.#checkpointTimer = setTimeout(() => {
        this.#checkpointTimer = null;
        this.checkpointNow();
      }, 100);
      this.#checkpointTimer.unref();
    }
  }

  async getMeta(name: string): Promise<string | null> {
    const r = await this.db.selectFrom('meta').select('value').where('name', '=', name).executeTakeFirst();
    return r?.value ?? null;
  }

  async putMetaIfAbsent(name: string, value: string): Promise<string> {
    await this.db
      .insertInto('meta')
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    return (await this.getMeta(name)) ?? value;
  }

  async insertMerchant(m: MerchantRecord): Promise<void> {
    const db = this.db;
    const settings = {
      merchant_id: m.id,
      allowed_origins: JSON.stringify(m.allowedOrigins),
      allowed_proxy_targets: JSON.stringify(m.allowedProxyTargets),
      processor: JSON.stringify(m.processor),
      cvv_block_threshold: m.cvvBlockThreshold,
      cvc_session_ttl_seconds: m.cvcSessionTtlSeconds,
      updated_at: m.updatedAt,
    };
    await this.#transaction(function* (): Unit<void> {
      // The legacy setting columns are not read (settings live per mode in merchant_settings).
      yield db.insertInto('merchants').values({
        id: m.id,
        name: m.name,
        allowed_origins: '[]',
        allowed_proxy_targets: '[]',
        processor: '{"type":"simulator"}',
        cvv_block_threshold: m.cvvBlockThreshold,
        cvc_session_ttl_seconds: m.cvcSessionTtlSeconds,
        created_at: m.createdAt,
        updated_at: m.updatedAt,
      });
      yield db.insertInto('merchant_settings').values([
        { ...settings, mode: 'test' },
        { ...settings, mode: 'live' },
      ]);
    });
  }

  /**
   * Merchants are read on every call and change rarely: kept for a second.
   * A change made through this store is seen at once; one made by another
   * instance within a second.
   */
  readonly #merchants = new Map<string, { at: number; m: MerchantRecord }>();
  async getMerchant(id: string, mode: Mode): Promise<MerchantRecord | null> {
    const now = (this.#opts.now ?? Date.now)();
    const key = `${id}|${mode}`;
    const hit = this.#merchants.get(key);
    if (hit && now - hit.at < 1000) return hit.m;
    const r = await this.db
      .selectFrom('merchant_settings')
      .innerJoin('merchants', 'merchants.id', 'merchant_settings.merchant_id')
      .selectAll('merchant_settings')
      .select(['merchants.id as id', 'merchants.name as name', 'merchants.created_at as created_at'])
      .where('merchant_settings.merchant_id', '=', id)
      .where('merchant_settings.mode', '=', mode)
      .executeTakeFirst();
    if (!r) return null;
    const m = Object.freeze(toMerchant(r)) as MerchantRecord;
    if (this.#merchants.size > 10_000) this.#merchants.clear();
    this.#merchants.set(key, { at: now, m });
    return m;
  }

  async listAllAllowedOrigins(): Promise<string[]> {
    const rows = await this.db.selectFrom('merchant_settings').select('allowed_origins').execute();
    const all = new Set<string>();
    for (const r of rows) for (const o of JSON.parse(r.allowed_origins) as string[]) all.add(o);
    return [...all];
  }

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.db
      .insertInto('api_keys')
      .values({
        id: k.id,
        merchant_id: k.merchantId,
        mode: k.mode,
        hash: k.hash,
        suffix: k.suffix,
        created_at: k.createdAt,
        revoked_at: k.revokedAt,
      })
      .execute();
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('findApiKeyByHash', { hash }, (a) => this.db.selectFrom('api_keys').selectAll().where('hash', '=', a.hash));
    if (!r) return null;
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

  async insertSigningKey(k: SigningKeyRecord): Promise<void> {
    await this.db
      .insertInto('signing_keys')
      .values({
        kid: k.kid,
        alg: k.alg,
        public_jwk: k.publicJwk,
        private_sealed: pack(k.privateSealed),
        key_version: k.privateSealed.keyVersion,
        created_at: k.createdAt,
        activated_at: k.activatedAt,
        retired_at: k.retiredAt,
      })
      .execute();
  }

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    const rows = await this.db.selectFrom('signing_keys').selectAll().orderBy('activated_at', 'desc').orderBy('created_at', 'desc').orderBy('kid').execute();
    return rows.map((r) => ({
      kid: r.kid,
      alg: r.alg,
      publicJwk: r.public_jwk,
      privateSealed: unpack(r.private_sealed),
      createdAt: Number(r.created_at),
      activatedAt: Number(r.activated_at),
      retiredAt: r.retired_at === null ? null : Number(r.retired_at),
    }));
  }

  async retireSigningKeysExcept(kid: string, now: number): Promise<void> {
    await this.db.updateTable('signing_keys').set({ retired_at: now }).where('kid', '!=', kid).where('retired_at', 'is', null).execute();
  }

  async deleteSigningKeysRetiredBefore(t: number): Promise<number> {
    const r = await this.db.deleteFrom('signing_keys').where('retired_at', 'is not', null).where('retired_at', '<', t).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async insertCard(c: CardRecord): Promise<void> {
    await this.db
      .insertInto('cards')
      .values({
        token: c.token,
        merchant_id: c.merchantId,
        mode: c.mode,
        brand: c.brand,
        last4: c.last4,
        bin: c.bin,
        exp_month: c.expMonth,
        exp_year: c.expYear,
        fingerprint: c.fingerprint,
        number_sealed: pack(c.numberSealed),
        holder_sealed: c.holderSealed ? pack(c.holderSealed) : null,
        key_version: c.numberSealed.keyVersion,
        created_at: c.createdAt,
      })
      .execute();
  }

  async getCard(merchantId: string, mode: Mode, token: string): Promise<CardRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('getCard', { token, merchantId, mode }, (a) =>
      this.db.selectFrom('cards').selectAll().where('token', '=', a.token).where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode),
    );
    return r ? toCard(r) : null;
  }

  async deleteCard(merchantId: string, mode: Mode, token: string): Promise<boolean> {
    const r = await this.db
      .deleteFrom('cards')
      .where('token', '=', token)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('sessions')
              .select('sessions.id')
              .where('sessions.charge_id', 'is not', null)
              .where('sessions.card_token', '=', token)
              .where('sessions.merchant_id', '=', merchantId),
          ),
        ),
      )
      .executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) return false;
    await this.#dropKeys(this.db.selectFrom('cvc_sessions').select('id').where('card_token', '=', token).where('merchant_id', '=', merchantId));
    const c = await this.db.deleteFrom('cvc_sessions').where('card_token', '=', token).where('merchant_id', '=', merchantId).executeTakeFirst();
    if (Number(c.numDeletedRows) > 0) this.#afterCvvDelete();
    return true;
  }

  async getCvvStatus(merchantId: string, fingerprint: string): Promise<CvvStatusRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('getCvvStatus', { merchantId, fingerprint }, (a) =>
      this.db.selectFrom('cvv_status').selectAll().where('merchant_id', '=', a.merchantId).where('fingerprint', '=', a.fingerprint),
    );
    if (!r) return null;
    return {
      merchantId: r.merchant_id,
      fingerprint: r.fingerprint,
      failedAttempts: Number(r.failed_attempts),
      blocked: Number(r.blocked) === 1,
      updatedAt: Number(r.updated_at),
    };
  }

  async insertCvcSession(c: CvcSessionRecord, opts: { replace?: boolean } = {}): Promise<void> {
    if (c.sessionId !== null && opts.replace !== false) await this.deleteCvcSessionsOfSession(c.sessionId);
    await this.#exec('insertCvcSession', cvcRow(c), (a) => this.db.insertInto('cvc_sessions').values(a));
  }

  async findUsableCvcSession(merchantId: string, cardToken: string, sessionId: string, now: number): Promise<CvcSessionRecord | null> {
    // Two indexed lookups of one row each (a card may hold many CVC sessions: test mode keeps them a year).
    const args = { sessionId, merchantId, cardToken, now };
    const {
      rows: [own],
    } = await this.#exec('findUsableCvcSession:own', args, (a) =>
      this.db
        .selectFrom('cvc_sessions')
        .selectAll()
        .where('session_id', '=', a.sessionId)
        .where('merchant_id', '=', a.merchantId)
        .where('card_token', '=', a.cardToken)
        .where('expires_at', '>', a.now)
        .orderBy('created_at', 'desc')
        .limit(1),
    );
    if (own) return toCvc(own);
    const {
      rows: [cardLevel],
    } = await this.#exec('findUsableCvcSession:card', { merchantId, cardToken, now }, (a) =>
      this.db
        .selectFrom('cvc_sessions')
        .selectAll()
        .where('card_token', '=', a.cardToken)
        .where('session_id', 'is', null)
        .where('merchant_id', '=', a.merchantId)
        .where('expires_at', '>', a.now)
        .orderBy('created_at', 'desc')
        .limit(1),
    );
    return cardLevel ? toCvc(cardLevel) : null;
  }

  async getLiveCvcSession(merchantId: string, mode: Mode, id: string, now: number): Promise<CvcSessionRecord | null> {
    const r = await this.db
      .selectFrom('cvc_sessions')
      .selectAll()
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return r ? toCvc(r) : null;
  }

  async deleteCvcSession(merchantId: string, mode: Mode, id: string, now: number): Promise<boolean> {
    await this.#dropKeys(this.db.selectFrom('cvc_sessions').select('id').where('id', '=', id).where('merchant_id', '=', merchantId).where('mode', '=', mode));
    const r = await this.db
      .deleteFrom('cvc_sessions')
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .returning(['expires_at'])
      .execute();
    if (r.length === 0) return false;
    this.#afterCvvDelete();
    return Number(r[0]!.expires_at) > now;
  }

  async deleteCvcSessionsOfSession(sessionId: string): Promise<number> {
    const { affected: keys } = await this.#exec('dropKeysOfSession', { sessionId }, (a) =>
      this.db.deleteFrom('cvv_keys').where('cvc_id', 'in', this.db.selectFrom('cvc_sessions').select('id').where('session_id', '=', a.sessionId)),
    );
    if (keys > 0) this.#afterKeyDelete();
    const { affected: n } = await this.#exec('deleteCvcSessionsOfSession', { sessionId }, (a) =>
      this.db.deleteFrom('cvc_sessions').where('session_id', '=', a.sessionId),
    );
    if (n > 0) this.#afterCvvDelete();
    return n;
  }

  async deleteExpiredCvcSessions(now: number, limit: number): Promise<number> {
    const ids = (await this.db.selectFrom('cvc_sessions').select('id').where('expires_at', '<=', now).limit(limit).execute()).map((r) => r.id);
    if (ids.length === 0) return 0;
    await this.#dropKeys(ids);
    const r = await this.db.deleteFrom('cvc_sessions').where('id', 'in', ids).where('expires_at', '<=', now).executeTakeFirst();
    const n = Number(r.numDeletedRows);
    if (n > 0) this.#afterCvvDelete();
    return n;
  }

  async deleteOrphanCvvKeyShares(now: number): Promise<number> {
    // A minute to two old, so none is being stored, and the scan stays small (the sweeper runs every second).
    const r = await this.db
      .deleteFrom('cvv_keys')
      .where('cvc_id', 'in', (eb) =>
        eb
          .selectFrom('cvv_keys')
          .select('cvc_id')
          .where('created_at', '<', now - 60_000)
          .where('created_at', '>=', now - 120_000)
          .where((eb) => eb.not(eb.exists(eb.selectFrom('cvc_sessions').select('cvc_sessions.id').whereRef('cvc_sessions.id', '=', 'cvv_keys.cvc_id')))),
      )
      .executeTakeFirst();
    const n = Number(r.numDeletedRows);
    if (n > 0) this.#afterKeyDelete();
    return n;
  }

  async insertSession(s: SessionRecord, idempotency?: NewIdempotencyRecord): Promise<boolean> {
    const args = {
      id: s.id,
      merchant_id: s.merchantId,
      mode: s.mode,
      card_token: s.cardToken,
      operations: JSON.stringify(s.operations),
      amount_value: s.amount?.value ?? null,
      amount_currency: s.amount?.currency ?? null,
      reference: s.reference,
      require_3ds: s.require3DS ? 1 : 0,
      require_cvv: s.requireCvv ? 1 : 0,
      max_attempts: s.maxAttempts,
      cvv_retention: s.cvvRetention,
      form: s.form,
      return_url: s.returnUrl,
      metadata: s.metadata === null ? null : JSON.stringify(s.metadata),
      status: s.status,
      jti: s.jti,
      seq: s.seq,
      token_hash: s.tokenHash,
      att_collect: s.attempts.collectCvv,
      att_threeds: s.attempts.threeDS,
      att_charge: s.attempts.charge,
      results: JSON.stringify(s.results),
      replay_jti: null,
      replay_hash: null,
      replay_sealed: null,
      replay_at: null,
      charge_id: null,
      charge_at: null,
      expires_at: s.expiresAt,
      created_at: s.createdAt,
      updated_at: s.updatedAt,
    };
    if (!idempotency) {
      await this.#exec('insertSession', args, (a) => this.db.insertInto('sessions').values(a));
      return true;
    }
    const db = this.db;
    const i = idempotency;
    const key = { merchantId: s.merchantId, endpoint: i.endpoint, key: i.key };
    const steps: Step[] = [
      prepared('unit:dropExpiredIdempotency', { ...key, now: i.now }, (a) =>
        db
          .deleteFrom('idempotency_keys')
          .where('merchant_id', '=', a.merchantId)
          .where('endpoint', '=', a.endpoint)
          .where('idem_key', '=', a.key)
          .where('expires_at', '<=', a.now),
      ),
      // The key taken by this request, or the unit is undone (another request holds it).
      guarded(
        prepared(
          'unit:insertIdempotency',
          {
            merchant_id: s.merchantId,
            endpoint: i.endpoint,
            idem_key: i.key,
            request_hash: i.requestHash,
            status: i.status,
            response_sealed: pack(i.responseSealed),
            created_at: i.now,
            expires_at: i.expiresAt,
          },
          (a) =>
            db
              .insertInto('idempotency_keys')
              .values(a)
              .onConflict((oc) => oc.columns(['merchant_id', 'endpoint', 'idem_key']).doNothing())
              .returning(ONE),
        ),
        false,
      ),
      prepared('unit:insertSession', args, (a) => db.insertInto('sessions').values(a)),
    ];
    return this.#transaction(function* (): Unit<boolean> {
      yield* send(steps, { final: true });
      return true;
    });
  }

  async getCreateContext(p: Parameters<Store['getCreateContext']>[0]): ReturnType<Store['getCreateContext']> {
    const i = p.idempotency;
    const args = { token: p.cardToken, merchantId: p.merchantId, mode: p.mode, ...(i ? { endpoint: i.endpoint, key: i.key, now: i.now } : {}) };
    const {
      rows: [r],
    } = await this.#exec(`getCreateContext:${!!i}`, args, (a) => ({
      compile: () =>
        sql<Record<string, any>>`
        SELECT c.*, ${i ? sql`k.request_hash AS k_request_hash, k.status AS k_status, k.response_sealed AS k_response_sealed` : sql`NULL AS k_request_hash`}
        FROM (SELECT 1 AS one) o
        LEFT JOIN cards c ON c.token = ${a.token} AND c.merchant_id = ${a.merchantId} AND c.mode = ${a.mode}
        ${i ? sql`LEFT JOIN idempotency_keys k ON k.merchant_id = ${a.merchantId} AND k.endpoint = ${a.endpoint} AND k.idem_key = ${a.key} AND k.expires_at > ${a.now}` : sql``}`.compile(
          this.db,
        ),
    }));
    const card = r && r.token !== null ? toCard(r as Selectable<CardsTable>) : null;
    const idempotency =
      r && r.k_request_hash !== null
        ? {
            requestHash: r.k_request_hash as string,
            status: r.k_status === null ? null : Number(r.k_status),
            responseSealed: r.k_response_sealed ? unpack(r.k_response_sealed) : null,
          }
        : null;
    return { card, idempotency };
  }

  async getSession(merchantId: string, mode: Mode, id: string): Promise<SessionRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('getSession', { id, merchantId, mode }, (a) =>
      this.db.selectFrom('sessions').selectAll().where('id', '=', a.id).where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode),
    );
    return r ? toSession(r) : null;
  }

  async getSessionById(id: string): Promise<SessionRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('getSessionById', { id }, (a) => this.db.selectFrom('sessions').selectAll().where('id', '=', a.id));
    return r ? toSession(r) : null;
  }

  async getOperationContext(id: string, now: number, chargeKey?: string): Promise<OperationContextRecord | null> {
    // One statement, prepared once: the joins are one-row lookups by key (the latest 3DS transaction and the
    // usable CVC session through indexed ORDER BY … LIMIT 1 subqueries).
    const keyed = chargeKey !== undefined;
    const {
      rows: [r],
    } = await this.#exec(`getOperationContext:${keyed}`, { id, now, ...(keyed ? { chargeKey } : {}) }, (a) => ({
      compile: () =>
        sql<Record<string, any>>`
        SELECT s.*,
          c.token AS c_token, c.brand AS c_brand, c.last4 AS c_last4, c.bin AS c_bin, c.exp_month AS c_exp_month, c.exp_year AS c_exp_year,
          c.fingerprint AS c_fingerprint, c.number_sealed AS c_number_sealed, c.holder_sealed AS c_holder_sealed, c.created_at AS c_created_at,
          m.name AS m_name, m.created_at AS m_created_at,
          ms.allowed_origins AS m_allowed_origins, ms.allowed_proxy_targets AS m_allowed_proxy_targets, ms.processor AS m_processor,
          ms.cvv_block_threshold AS m_cvv_block_threshold, ms.cvc_session_ttl_seconds AS m_cvc_session_ttl_seconds, ms.updated_at AS m_updated_at,
          st.failed_attempts AS st_failed_attempts, st.blocked AS st_blocked, st.updated_at AS st_updated_at,
          t.id AS t_id, t.status AS t_status, t.ds_transaction_id AS t_ds_transaction_id, t.version AS t_version, t.result_status AS t_result_status,
          t.eci AS t_eci, t.cavv_sealed AS t_cavv_sealed, t.created_at AS t_created_at, t.expires_at AS t_expires_at, t.completed_at AS t_completed_at,
          v.id AS v_id, v.session_id AS v_session_id, v.sealed AS v_sealed, v.retention AS v_retention, v.expires_at AS v_expires_at,
          v.first_used_at AS v_first_used_at, v.created_at AS v_created_at, v.card_token AS v_card_token,
          ${keyed ? sql`k.id` : sql`NULL`} AS k_id
        FROM sessions s
        LEFT JOIN cards c ON c.token = s.card_token AND c.merchant_id = s.merchant_id AND c.mode = s.mode
        LEFT JOIN merchants m ON m.id = s.merchant_id
        LEFT JOIN merchant_settings ms ON ms.merchant_id = s.merchant_id AND ms.mode = s.mode
        LEFT JOIN cvv_status st ON st.merchant_id = s.merchant_id AND st.fingerprint = c.fingerprint
        LEFT JOIN tds_transactions t ON t.id = (
          SELECT t2.id FROM tds_transactions t2 WHERE t2.session_id = s.id ORDER BY t2.created_at DESC, t2.id DESC LIMIT 1)
        LEFT JOIN cvc_sessions v ON v.id = COALESCE(
          (SELECT v1.id FROM cvc_sessions v1 WHERE v1.session_id = s.id AND v1.merchant_id = s.merchant_id AND v1.card_token = s.card_token
            AND v1.expires_at > ${a.now} ORDER BY v1.created_at DESC LIMIT 1),
          (SELECT v2.id FROM cvc_sessions v2 WHERE v2.card_token = s.card_token AND v2.session_id IS NULL AND v2.merchant_id = s.merchant_id
            AND v2.expires_at > ${a.now} ORDER BY v2.created_at DESC LIMIT 1))
        ${keyed ? sql`LEFT JOIN charges k ON k.merchant_id = s.merchant_id AND k.mode = s.mode AND k.idempotency_key = ${a.chargeKey}` : sql``}
        WHERE s.id = ${a.id}`.compile(this.db),
    }));
    if (!r) return null;
    const session = toSession(r as Selectable<SessionsTable>);
    const card =
      r.c_token === null
        ? null
        : toCard({
            token: r.c_token,
            merchant_id: r.merchant_id,
            mode: r.mode,
            brand: r.c_brand,
            last4: r.c_last4,
            bin: r.c_bin,
            exp_month: r.c_exp_month,
            exp_year: r.c_exp_year,
            fingerprint: r.c_fingerprint,
            number_sealed: r.c_number_sealed,
            holder_sealed: r.c_holder_sealed,
            key_version: 0,
            created_at: r.c_created_at,
          });
    const merchant =
      r.m_allowed_origins === null || r.m_name === null
        ? null
        : (Object.freeze(
            toMerchant({
              id: r.merchant_id,
              name: r.m_name,
              created_at: r.m_created_at,
              merchant_id: r.merchant_id,
              mode: r.mode,
              allowed_origins: r.m_allowed_origins,
              allowed_proxy_targets: r.m_allowed_proxy_targets,
              processor: r.m_processor,
              cvv_block_threshold: r.m_cvv_block_threshold,
              cvc_session_ttl_seconds: r.m_cvc_session_ttl_seconds,
              updated_at: r.m_updated_at,
            }),
          ) as MerchantRecord);
    const cvvStatus =
      r.st_failed_attempts === null || r.st_failed_attempts === undefined
        ? null
        : {
            merchantId: r.merchant_id,
            fingerprint: r.c_fingerprint,
            failedAttempts: Number(r.st_failed_attempts),
            blocked: Number(r.st_blocked) === 1,
            updatedAt: Number(r.st_updated_at),
          };
    const latestTds =
      r.t_id === null
        ? null
        : this.#toTds({
            id: r.t_id,
            merchant_id: r.merchant_id,
            session_id: r.id,
            mode: r.mode,
            status: r.t_status,
            ds_transaction_id: r.t_ds_transaction_id,
            version: r.t_version,
            result_status: r.t_result_status,
            eci: r.t_eci,
            cavv_sealed: r.t_cavv_sealed,
            created_at: r.t_created_at,
            expires_at: r.t_expires_at,
            completed_at: r.t_completed_at,
          });
    const usableCvc =
      r.v_id === null
        ? null
        : toCvc({
            id: r.v_id,
            merchant_id: r.merchant_id,
            mode: r.mode,
            card_token: r.v_card_token,
            session_id: r.v_session_id,
            sealed: r.v_sealed,
            key_version: 0,
            retention: r.v_retention,
            expires_at: r.v_expires_at,
            first_used_at: r.v_first_used_at,
            created_at: r.v_created_at,
          });
    return { session, card, merchant, cvvStatus, latestTds, usableCvc, keyedChargeId: r.k_id ?? null };
  }

  async commitOperation(p: Parameters<Store['commitOperation']>[0]): Promise<boolean> {
    const db = this.db;
    const col = ATTEMPT_COLUMN[p.op];
    const rotation = { ...finishArgs(p, p.now), newJti: p.newJti };
    // The token rotation first, guarded: a token already used (or a session no longer active) undoes the unit.
    const steps: Step[] = [
      guarded(
        prepared(`unit:commit:${p.op}:${p.countAttempt}:${p.complete}`, rotation, (a) => {
          const q = db
            .updateTable('sessions')
            .set((eb) => ({
              jti: a.newJti,
              seq: eb('seq', '+', 1),
              ...(p.countAttempt ? { [col]: eb(col, '+', 1) } : {}),
              ...outcomeSet(a),
              ...(p.complete ? { status: 'completed' } : {}),
            }))
            .where('id', '=', a.id)
            .where('jti', '=', a.jti)
            .where('status', '=', 'active')
            .where('expires_at', '>', a.now)
            .where('charge_id', 'is', null);
          return (p.countAttempt ? q.whereRef(col, '<', 'max_attempts') : q).returning(ONE);
        }),
        false,
      ),
    ];
    const cvcDrops: number[] = [];
    for (const w of p.writes) {
      if (w.kind === 'cvc') {
        const c = w.record;
        if (w.replace && c.sessionId !== null) {
          const of = { sessionId: c.sessionId };
          steps.push(
            prepared('unit:dropKeysOfSession', of, (a) =>
              db.deleteFrom('cvv_keys').where('cvc_id', 'in', db.selectFrom('cvc_sessions').select('id').where('session_id', '=', a.sessionId)),
            ),
          );
          cvcDrops.push(steps.push(prepared('unit:dropCvcOfSession', of, (a) => db.deleteFrom('cvc_sessions').where('session_id', '=', a.sessionId))) - 1);
        }
        steps.push(prepared('unit:insertCvvKey', { cvc_id: c.id, share: w.share, created_at: c.createdAt }, (a) => db.insertInto('cvv_keys').values(a)));
        steps.push(prepared('unit:insertCvc', cvcRow(c), (a) => db.insertInto('cvc_sessions').values(a)));
      } else {
        steps.push(prepared('unit:insertTds', tdsRow(w.record), (a) => db.insertInto('tds_transactions').values(a)));
      }
    }
    steps.push(...eventSteps(db, p.events));
    let cvvDeleted = false;
    const done = await this.#transaction(function* (): Unit<boolean> {
      const r = yield* send(steps, { final: true });
      cvvDeleted = cvcDrops.some((i) => r[i]!.affected > 0);
      return true;
    });
    if (cvvDeleted) {
      this.#afterKeyDelete();
      this.#afterCvvDelete();
    }
    return done;
  }

  async finishOperation(p: Parameters<Store['finishOperation']>[0]): Promise<boolean> {
    const { affected } = await this.#exec(`finishOperation:${p.complete}`, finishArgs(p, p.now), (a) =>
      this.db.updateTable('sessions').set(finishSet(a, p.complete)).where('id', '=', a.id).where('jti', '=', a.jti).where('status', '=', 'active'),
    );
    return affected === 1;
  }

  async rotateToken(p: { id: string; jti: string; newJti: string; tokenHash: string; now: number }): Promise<boolean> {
    const r = await this.db
      .updateTable('sessions')
      .set((eb) => ({
        jti: p.newJti,
        seq: eb('seq', '+', 1),
        token_hash: p.tokenHash,
        updated_at: p.now,
        replay_jti: null,
        replay_hash: null,
        replay_sealed: null,
        replay_at: null,
      }))
      .where('id', '=', p.id)
      .where('jti', '=', p.jti)
      .where('status', '=', 'active')
      .where('expires_at', '>', p.now)
      .where('charge_id', 'is', null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async listExpiredSessions(now: number, limit: number): Promise<Array<{ id: string; merchantId: string; mode: Mode }>> {
    // A session a charge owns expires only once its outcome is recorded (crash recovery settles it first).
    const rows = await this.db
      .selectFrom('sessions')
      .select(['id', 'merchant_id', 'mode'])
      .where('status', '=', 'active')
      .where('expires_at', '<=', now)
      .where('charge_id', 'is', null)
      .orderBy('expires_at')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ id: r.id, merchantId: r.merchant_id, mode: r.mode as Mode }));
  }

  async expireSession(id: string, now: number, events: EventWrite[]): Promise<boolean> {
    return this.#endSession(id, events, (db) =>
      db
        .updateTable('sessions')
        .set({ status: 'expired', updated_at: now, replay_sealed: null, replay_jti: null, replay_hash: null, replay_at: null })
        .where('id', '=', id)
        .where('status', '=', 'active')
        .where('expires_at', '<=', now)
        .where('charge_id', 'is', null),
    );
  }

  async cancelSession(merchantId: string, mode: Mode, id: string, now: number, events: EventWrite[] = []): Promise<boolean> {
    return this.#endSession(id, events, (db) =>
      db
        .updateTable('sessions')
        .set({ status: 'canceled', updated_at: now, replay_jti: null, replay_hash: null, replay_sealed: null, replay_at: null })
        .where('id', '=', id)
        .where('merchant_id', '=', merchantId)
        .where('mode', '=', mode)
        .where('status', '=', 'active')
        .where('expires_at', '>', now)
        .where('charge_id', 'is', null),
    );
  }

  /**
   * A session's end (canceled, expired), in one transaction: `change` (one
   * conditional update; nothing else happens unless it changed the row), the
   * session's CVV deleted (API.md: at once), its webhook events written.
   */
  async #endSession(
    id: string,
    events: EventWrite[],
    change: (db: Kysely<Database>) => UpdateQueryBuilder<Database, 'sessions', 'sessions', UpdateResult>,
  ): Promise<boolean> {
    const db = this.db;
    const steps: Step[] = [
      guarded(change(db).returning(ONE), false),
      db.deleteFrom('cvv_keys').where('cvc_id', 'in', db.selectFrom('cvc_sessions').select('id').where('session_id', '=', id)),
      db.deleteFrom('cvc_sessions').where('session_id', '=', id),
      ...eventSteps(db, events),
    ];
    let cvvDeleted = false;
    const done = await this.#transaction(function* (): Unit<boolean> {
      cvvDeleted = (yield* send(steps, { final: true }))[2]!.affected > 0;
      return true;
    });
    if (cvvDeleted) {
      this.#afterKeyDelete();
      this.#afterCvvDelete();
    }
    return done;
  }

  async reserveIdempotencyKey(p: Parameters<Store['reserveIdempotencyKey']>[0]): Promise<IdempotencyRecord | null> {
    const where = { merchant_id: p.merchantId, endpoint: p.endpoint, idem_key: p.key };
    await this.db
      .deleteFrom('idempotency_keys')
      .where('merchant_id', '=', where.merchant_id)
      .where('endpoint', '=', where.endpoint)
      .where('idem_key', '=', where.idem_key)
      .where('expires_at', '<=', p.now)
      .execute();
    const ins = await this.db
      .insertInto('idempotency_keys')
      .values({ ...where, request_hash: p.requestHash, status: null, response_sealed: null, created_at: p.now, expires_at: p.expiresAt })
      .onConflict((oc) => oc.columns(['merchant_id', 'endpoint', 'idem_key']).doNothing())
      .executeTakeFirst();
    if (Number(ins.numInsertedOrUpdatedRows ?? 0n) === 1) return null;
    const r = await this.db
      .selectFrom('idempotency_keys')
      .select(['request_hash', 'status', 'response_sealed'])
      .where('merchant_id', '=', where.merchant_id)
      .where('endpoint', '=', where.endpoint)
      .where('idem_key', '=', where.idem_key)
      .executeTakeFirst();
    if (!r) return this.reserveIdempotencyKey(p);
    return {
      requestHash: r.request_hash,
      status: r.status === null ? null : Number(r.status),
      responseSealed: r.response_sealed ? unpack(r.response_sealed) : null,
    };
  }

  async completeIdempotencyKey(p: Parameters<Store['completeIdempotencyKey']>[0]): Promise<void> {
    await this.db
      .updateTable('idempotency_keys')
      .set({ status: p.status, response_sealed: pack(p.responseSealed) })
      .where('merchant_id', '=', p.merchantId)
      .where('endpoint', '=', p.endpoint)
      .where('idem_key', '=', p.key)
      .execute();
  }

  async releaseIdempotencyKey(p: Parameters<Store['releaseIdempotencyKey']>[0]): Promise<void> {
    await this.db
      .deleteFrom('idempotency_keys')
      .where('merchant_id', '=', p.merchantId)
      .where('endpoint', '=', p.endpoint)
      .where('idem_key', '=', p.key)
      .where('status', 'is', null)
      .execute();
  }

  async deleteExpiredIdempotencyKeys(now: number, limit: number): Promise<number> {
    const keys = await this.db
      .selectFrom('idempotency_keys')
      .select(['merchant_id', 'endpoint', 'idem_key'])
      .where('expires_at', '<=', now)
      .limit(limit)
      .execute();
    let n = 0;
    for (const k of keys) {
      const r = await this.db
        .deleteFrom('idempotency_keys')
        .where('merchant_id', '=', k.merchant_id)
        .where('endpoint', '=', k.endpoint)
        .where('idem_key', '=', k.idem_key)
        .where('expires_at', '<=', now)
        .executeTakeFirst();
      n += Number(r.numDeletedRows);
    }
    return n;
  }

  /**
   * Keyset pagination, newest first (creation time, then id): the rows
   * before the one `after` names, or null when that row is not this
   * merchant's and mode's (the page is then empty).
   */
  async #before(table: 'sessions' | 'events', merchantId: string, mode: Mode, after: string) {
    const c = await this.db
      .selectFrom(table)
      .select(['created_at', 'id'])
      .where('id', '=', after)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return c ? sql<boolean>`(created_at < ${c.created_at} OR (created_at = ${c.created_at} AND id < ${c.id}))` : null;
  }

  async listSessions(merchantId: string, mode: Mode, q: Parameters<Store['listSessions']>[2]): Promise<SessionRecord[]> {
    let query = this.db.selectFrom('sessions').selectAll().where('merchant_id', '=', merchantId).where('mode', '=', mode);
    if (q.after !== undefined) {
      const before = await this.#before('sessions', merchantId, mode, q.after);
      if (!before) return [];
      query = query.where(before);
    }
    if (q.card !== undefined) query = query.where('card_token', '=', q.card);
    if (q.createdGte !== undefined) query = query.where('created_at', '>=', q.createdGte);
    if (q.createdLt !== undefined) query = query.where('created_at', '<', q.createdLt);
    if (q.status === 'active') query = query.where('status', '=', 'active').where('expires_at', '>', q.now);
    else if (q.status === 'expired')
      query = query.where((eb) => eb.or([eb('status', '=', 'expired'), eb.and([eb('status', '=', 'active'), eb('expires_at', '<=', q.now)])]));
    else if (q.status !== undefined) query = query.where('status', '=', q.status);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute();
    return rows.map(toSession);
  }

  async dropReplaysBefore(before: number, limit: number): Promise<number> {
    const r = await this.db
      .updateTable('sessions')
      .set({ replay_jti: null, replay_hash: null, replay_sealed: null, replay_at: null })
      .where(
        'id',
        'in',
        this.db
          .selectFrom('sessions')
          .select('id')
          .where('status', '=', COMPLETED)
          .where('replay_at', 'is not', null)
          .where('replay_at', '<', before)
          .limit(limit),
      )
      .where('replay_at', '<', before)
      .executeTakeFirst();
    return Number(r.numUpdatedRows);
  }

  async deleteOldOutbox(deliveredBefore: number, failedBefore: number, limit: number): Promise<number> {
    const old = (status: 'delivered' | 'failed', column: 'delivered_at' | 'next_attempt_at', before: number) =>
      this.db.selectFrom('webhook_outbox').select('id').where('status', '=', status).where(column, '<', before).limit(limit);
    const a = await this.db
      .deleteFrom('webhook_outbox')
      .where('id', 'in', old('delivered', 'delivered_at', deliveredBefore))
      .executeTakeFirst();
    // A failed row's next_attempt_at is its last try (WebhookService: nothing is scheduled after giving up).
    const b = await this.db
      .deleteFrom('webhook_outbox')
      .where('id', 'in', old('failed', 'next_attempt_at', failedBefore))
      .executeTakeFirst();
    return Number(a.numDeletedRows) + Number(b.numDeletedRows);
  }

  async deleteEndedSessions(before: number, limit: number): Promise<number> {
    const ENDED = ['completed', 'canceled', 'expired'];
    const ids = (
      await this.db
        .selectFrom('sessions')
        .select('id')
        .where('status', 'in', ENDED)
        .where('expires_at', '<', before)
        .where('charge_id', 'is', null)
        .orderBy('expires_at')
        .limit(limit)
        .execute()
    ).map((r) => r.id);
    if (ids.length === 0) return 0;
    const db = this.db;
    const steps: Step[] = [
      db.deleteFrom('tds_transactions').where('session_id', 'in', ids),
      db.deleteFrom('charges').where('session_id', 'in', ids).where('status', '!=', PENDING),
      db.deleteFrom('cvv_keys').where('cvc_id', 'in', db.selectFrom('cvc_sessions').select('id').where('session_id', 'in', ids)),
      db.deleteFrom('cvc_sessions').where('session_id', 'in', ids),
      db
        .deleteFrom('sessions')
        .where('id', 'in', ids)
        .where('status', 'in', ENDED)
        .where('charge_id', 'is', null)
        .where((eb) =>
          eb.not(eb.exists(db.selectFrom('charges').select('id').where('charges.session_id', '=', eb.ref('sessions.id')).where('status', '=', PENDING))),
        ),
    ];
    let cvvDeleted = false;
    const n = await this.#transaction(function* (): Unit<number> {
      const r = yield* send(steps, { final: true });
      cvvDeleted = r[3]!.affected > 0;
      return r[4]!.affected;
    });
    if (cvvDeleted) {
      this.#afterKeyDelete();
      this.#afterCvvDelete();
    }
    return n;
  }

  async takeLease(name: string, holder: string, now: number, until: number): Promise<boolean> {
    const r = await sql<{ holder: string }>`INSERT INTO leases (name, holder, until) VALUES (${name}, ${holder}, ${until})
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
      WHERE leases.until <= ${now} OR leases.holder = excluded.holder
      RETURNING holder`.execute(this.db);
    return r.rows.length === 1;
  }

  async takeCvcSession(id: string, now: number): Promise<CvcSessionRecord | null> {
    const { rows } = await this.#exec('takeCvcSession', { id, now }, (a) =>
      this.db.deleteFrom('cvc_sessions').where('id', '=', a.id).where('expires_at', '>', a.now).returningAll(),
    );
    if (rows.length === 0) return null;
    // Only the caller that deleted the row gets here: it takes the key share with it.
    const { rows: keys } = await this.#exec('takeCvvKeyShare', { id }, (a) => this.db.deleteFrom('cvv_keys').where('cvc_id', '=', a.id).returning('share'));
    this.#afterCvvDelete();
    this.#afterKeyDelete();
    return { ...toCvc(rows[0]!), keyShare: keys[0] ? Buffer.from(keys[0].share) : null };
  }

  async startCvcCacheWindow(id: string, now: number, until: number): Promise<void> {
    const row = await this.db.selectFrom('cvc_sessions').select(['expires_at']).where('id', '=', id).where('first_used_at', 'is', null).executeTakeFirst();
    if (!row) return;
    const expiresAt = Math.min(Number(row.expires_at), until);
    await this.db
      .updateTable('cvc_sessions')
      .set({ first_used_at: now, expires_at: expiresAt })
      .where('id', '=', id)
      .where('first_used_at', 'is', null)
      .where('expires_at', '=', row.expires_at)
      .execute();
  }

  async getCvcSessionById(id: string, now: number): Promise<CvcSessionRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('getCvcSessionById', { id, now }, (a) =>
      this.db.selectFrom('cvc_sessions').selectAll().where('id', '=', a.id).where('expires_at', '>', a.now),
    );
    return r ? toCvc(r) : null;
  }

  async findLiveCvcSessionOfCard(merchantId: string, cardToken: string, now: number): Promise<CvcSessionRecord | null> {
    const r = await this.db
      .selectFrom('cvc_sessions')
      .selectAll()
      .where('merchant_id', '=', merchantId)
      .where('card_token', '=', cardToken)
      .where('expires_at', '>', now)
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return r ? toCvc(r) : null;
  }

  async recordCvvFailure(merchantId: string, fingerprint: string, threshold: number, now: number): Promise<CvvStatusRecord> {
    // RETURNING: the status this failure produced. A separate read afterwards
    // could see later concurrent failures too, so two callers got the same
    // count and the one that reached the threshold could not tell.
    const r = await this.db
      .insertInto('cvv_status')
      .values({ merchant_id: merchantId, fingerprint, failed_attempts: 1, blocked: threshold <= 1 ? 1 : 0, updated_at: now })
      .onConflict((oc) =>
        oc.columns(['merchant_id', 'fingerprint']).doUpdateSet({
          failed_attempts: sql`cvv_status.failed_attempts + 1`,
          blocked: sql`CASE WHEN cvv_status.failed_attempts + 1 >= ${threshold} THEN 1 ELSE cvv_status.blocked END`,
          updated_at: now,
        }),
      )
      .returningAll()
      .executeTakeFirstOrThrow();
    return {
      merchantId: r.merchant_id,
      fingerprint: r.fingerprint,
      failedAttempts: Number(r.failed_attempts),
      blocked: Number(r.blocked) === 1,
      updatedAt: Number(r.updated_at),
    };
  }

  async resetCvvStatus(merchantId: string, fingerprint: string, now: number): Promise<void> {
    // Only a status with something to reset is written: a match after a match changes nothing.
    await this.#exec('resetCvvStatus', { merchantId, fingerprint, now }, (a) =>
      this.db
        .updateTable('cvv_status')
        .set({ failed_attempts: 0, blocked: 0, updated_at: a.now })
        .where('merchant_id', '=', a.merchantId)
        .where('fingerprint', '=', a.fingerprint)
        .where((eb) => eb.or([eb('failed_attempts', '>', 0), eb('blocked', '=', 1)])),
    );
  }

  async updateMerchant(id: string, mode: Mode, patch: Parameters<Store['updateMerchant']>[2], now: number): Promise<MerchantRecord | null> {
    const set: Updateable<MerchantSettingsTable> = { updated_at: now };
    if (patch.allowedOrigins) set.allowed_origins = JSON.stringify(patch.allowedOrigins);
    if (patch.allowedProxyTargets) set.allowed_proxy_targets = JSON.stringify(patch.allowedProxyTargets);
    if (patch.processor) set.processor = JSON.stringify(patch.processor);
    if (patch.cvvBlockThreshold !== undefined) set.cvv_block_threshold = patch.cvvBlockThreshold;
    if (patch.cvcSessionTtlSeconds !== undefined) set.cvc_session_ttl_seconds = patch.cvcSessionTtlSeconds;
    await this.db.updateTable('merchant_settings').set(set).where('merchant_id', '=', id).where('mode', '=', mode).execute();
    this.#merchants.delete(`${id}|${mode}`);
    return this.getMerchant(id, mode);
  }

  /**
   * Money writes (charge intents and outcomes) are durable before the
   * processor is called and before the response is sent. PostgreSQL commits
   * synchronously by default. On SQLite (WAL) `synchronous=FULL` means: the
   * WAL is fsync'ed after the commit. We do exactly that, but in the thread
   * pool and shared: the write commits (at the connection's setting), then
   * its caller waits for an fdatasync of the WAL file that started after
   * the commit. Concurrent charges share one fdatasync (group commit), and
   * the event loop, and the write lock other processes wait for, are not
   * held during the disk flush (the profile showed FULL commits at ~10 % of
   * the server's time, all of it waiting on the disk).
   */
  async #durable(): Promise<void> {
    if (this.#walPath && this.#opts.synchronous !== 'FULL') await this.#syncWal();
  }

  /** The SQLite WAL file (null for PostgreSQL and in-memory databases). */
  get #walPath(): string | null {
    if (!this.#sqlite || this.#sqlite.memory) return null;
    return `${this.#sqlite.name}-wal`;
  }

  #walFd: number | null = null;
  #walSyncing: Promise<void> | null = null;
  #walSyncNext: Promise<void> | null = null;
  /** How many WAL flushes this store made (tests observe that money writes wait for one). */
  walSyncs = 0;

  /** Resolves once everything committed before the call is on disk: a flush that starts now, or the next one if one is already running. */
  #syncWal(): Promise<void> {
    if (!this.#walSyncing) {
      this.#walSyncing = this.#flushWal().finally(() => {
        this.#walSyncing = null;
      });
      return this.#walSyncing;
    }
    // The running flush may have started before this caller's commit: wait for the one after it.
    this.#walSyncNext ??= this.#walSyncing.then(() => {
      this.#walSyncNext = null;
      return this.#syncWal();
    });
    return this.#walSyncNext;
  }

  async #flushWal(): Promise<void> {
    // The WAL stays the same file while this connection is open; reopened should it ever have been unlinked.
    if (this.#walFd !== null && fstatSync(this.#walFd).nlink === 0) {
      closeSync(this.#walFd);
      this.#walFd = null;
    }
    this.#walFd ??= openSync(this.#walPath!, 'r');
    const fd = this.#walFd;
    await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    this.walSyncs++;
  }

  async insertTds(t: TdsRecord): Promise<void> {
    await this.#exec('insertTds', tdsRow(t), (a) => this.db.insertInto('tds_transactions').values(a));
  }

  #toTds(r: Selectable<Database['tds_transactions']>): TdsRecord {
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

  async getTds(id: string): Promise<TdsRecord | null> {
    const r = await this.db.selectFrom('tds_transactions').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.#toTds(r) : null;
  }

  async completeTds(id: string, result: NonNullable<TdsRecord['result']>, now: number): Promise<boolean> {
    const r = await this.db
      .updateTable('tds_transactions')
      .set({
        status: 'completed',
        result_status: result.status,
        eci: result.eci,
        cavv_sealed: result.cavvSealed ? pack(result.cavvSealed) : null,
        completed_at: now,
      })
      .where('id', '=', id)
      .where('status', '=', 'challenge')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async setChargeResponse(id: string, sealed: Sealed): Promise<void> {
    await this.#exec('setChargeResponse', { id, sealed: pack(sealed) }, (a) =>
      this.db.updateTable('charges').set({ response_sealed: a.sealed }).where('id', '=', a.id),
    );
  }

  async getCharge(id: string): Promise<ChargeRecord | null> {
    const r = await this.db.selectFrom('charges').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toCharge(r) : null;
  }

  async findChargeByIdempotencyKey(merchantId: string, mode: Mode, key: string): Promise<ChargeRecord | null> {
    const {
      rows: [r],
    } = await this.#exec('findChargeByIdempotencyKey', { merchantId, mode, key }, (a) =>
      this.db.selectFrom('charges').selectAll().where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode).where('idempotency_key', '=', a.key),
    );
    return r ? toCharge(r) : null;
  }

  async insertWebhookEndpoint(e: WebhookEndpointRecord): Promise<void> {
    await this.db
      .insertInto('webhook_endpoints')
      .values({
        id: e.id,
        merchant_id: e.merchantId,
        mode: e.mode,
        url: e.url,
        events: JSON.stringify(e.events),
        secret_sealed: pack(e.secretSealed),
        created_at: e.createdAt,
      })
      .execute();
  }

  async listWebhookEndpoints(merchantId: string, mode: Mode): Promise<WebhookEndpointRecord[]> {
    const { rows } = await this.#exec('listWebhookEndpoints', { merchantId, mode }, (a) =>
      this.db.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode).orderBy('created_at'),
    );
    return rows.map(toEndpoint);
  }

  async getWebhookEndpoint(id: string): Promise<WebhookEndpointRecord | null> {
    const r = await this.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toEndpoint(r) : null;
  }

  async deleteWebhookEndpoint(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const r = await this.db
      .deleteFrom('webhook_endpoints')
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }

  async enqueueWebhooks(rows: EventWrite[]): Promise<void> {
    if (rows.length === 0) return;
    const steps = eventSteps(this.db, rows);
    await this.#transaction(function* (): Unit<void> {
      yield* send(steps, { final: true });
    });
  }

  async listEvents(merchantId: string, mode: Mode, q: { limit: number; after?: string; type?: string }): Promise<EventRecord[]> {
    let query = this.db.selectFrom('events').selectAll().where('merchant_id', '=', merchantId).where('mode', '=', mode);
    if (q.after !== undefined) {
      const before = await this.#before('events', merchantId, mode, q.after);
      if (!before) return [];
      query = query.where(before);
    }
    if (q.type !== undefined) query = query.where('type', '=', q.type);
    return (await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute()).map(toEvent);
  }

  async listDeliveries(endpointId: string, q: { limit: number; after?: string }): Promise<OutboxRecord[]> {
    let query = this.db.selectFrom('webhook_outbox').selectAll().where('endpoint_id', '=', endpointId);
    if (q.after !== undefined) {
      const c = await this.db
        .selectFrom('webhook_outbox')
        .select(['created_at', 'id'])
        .where('id', '=', q.after)
        .where('endpoint_id', '=', endpointId)
        .executeTakeFirst();
      if (!c) return [];
      query = query.where(sql<boolean>`(created_at < ${c.created_at} OR (created_at = ${c.created_at} AND id < ${c.id}))`);
    }
    return (await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute()).map(toOutbox);
  }

  async getEvent(merchantId: string, mode: Mode, id: string): Promise<EventRecord | null> {
    const r = await this.db
      .selectFrom('events')
      .selectAll()
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return r ? toEvent(r) : null;
  }

  async deleteOldEvents(before: number, limit: number): Promise<number> {
    const r = await this.db
      .deleteFrom('events')
      .where('id', 'in', this.db.selectFrom('events').select('id').where('created_at', '<', before).limit(limit))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async claimDueWebhooks(now: number, lockMs: number, limit: number): Promise<OutboxRecord[]> {
    // The due rows are picked once, in a MATERIALIZED CTE. As a plain
    // `id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL may plan the
    // sub-select as the inner side of a nested-loop semi join and rescan it
    // for every outer row; each rescan skips the rows this statement has just
    // updated and locks the next ones, so one call claimed (and the worker
    // then delivered at once) every due row, whatever the limit.
    // (SQLite ≥ 3.35 takes the same statement, without the row locks.)
    const rows = await this.db
      .with(
        (cte) => cte('due').materialized(),
        (db) => {
          const q = db
            .selectFrom('webhook_outbox')
            .select('id')
            .where('status', '=', 'pending')
            .where('next_attempt_at', '<=', now)
            .where('locked_until', '<=', now)
            .orderBy('next_attempt_at')
            .orderBy('id')
            .limit(limit);
          return this.engine === 'postgres' ? q.forUpdate().skipLocked() : q;
        },
      )
      .updateTable('webhook_outbox')
      .set({ locked_until: now + lockMs })
      .where('id', 'in', (eb) => eb.selectFrom('due').select('due.id'))
      .where('locked_until', '<=', now)
      .where('status', '=', 'pending')
      .returningAll()
      .execute();
    return rows.map(toOutbox);
  }

  async settleWebhook(id: string, p: Parameters<Store['settleWebhook']>[1]): Promise<void> {
    await this.db
      .updateTable('webhook_outbox')
      .set({
        status: p.status,
        attempts: p.attempts,
        next_attempt_at: p.nextAttemptAt,
        last_status: p.lastStatus,
        locked_until: 0,
        ...(p.status === 'delivered' ? { delivered_at: p.now } : {}),
      })
      .where('id', '=', id)
      .execute();
  }

  async listOutbox(merchantId: string): Promise<OutboxRecord[]> {
    const rows = await this.db.selectFrom('webhook_outbox').selectAll().where('merchant_id', '=', merchantId).orderBy('created_at').execute();
    return rows.map(toOutbox);
  }

  #toForm(r: Selectable<Database['custom_forms']>): CustomFormRecord {
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

  async insertCustomForm(f: CustomFormRecord): Promise<void> {
    await this.db
      .insertInto('custom_forms')
      .values({
        id: f.id,
        merchant_id: f.merchantId,
        mode: f.mode,
        name: f.name,
        html: f.html,
        css: f.css,
        created_at: f.createdAt,
        updated_at: f.updatedAt,
      })
      .execute();
  }

  async getCustomForm(id: string): Promise<CustomFormRecord | null> {
    const r = await this.db.selectFrom('custom_forms').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.#toForm(r) : null;
  }

  async listCustomForms(merchantId: string, mode: Mode): Promise<CustomFormRecord[]> {
    const rows = await this.db
      .selectFrom('custom_forms')
      .selectAll()
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map((r) => this.#toForm(r));
  }

  async updateCustomForm(merchantId: string, mode: Mode, id: string, p: { name: string; html: string; css: string; now: number }): Promise<boolean> {
    const r = await this.db
      .updateTable('custom_forms')
      .set({ name: p.name, html: p.html, css: p.css, updated_at: p.now })
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async deleteCustomForm(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom('custom_forms').where('id', '=', id).where('merchant_id', '=', merchantId).where('mode', '=', mode).executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }

  /**
   * Runs `unit` as one transaction. The unit yields the statements it needs,
   * one by one or in batches, and gets their results back, so one body serves
   * both engines: on SQLite it runs synchronously inside BEGIN IMMEDIATE
   * (nothing else can interleave on the connection, and no await sits inside
   * the transaction); on PostgreSQL on one pooled client in pipeline mode, one
   * round trip per batch: the BEGIN goes with the first batch and the COMMIT
   * with the final one, so a unit of one final batch is one round trip. A
   * `Rollback` thrown by the unit, or a guard's refusal, undoes it and returns
   * its value. `durable`: a money write, on disk before this resolves (#durable).
   */
  async #transaction<T>(unit: () => Unit<T>, opts: { durable?: boolean } = {}): Promise<T> {
    this.#statements.trips++;
    if (this.#sqlite) {
      const run = this.#sqlite.transaction(() => {
        const g = unit();
        let step = g.next();
        let ended = false;
        while (!step.done) {
          if (ended) throw new Error('a transaction unit went on after its final batch');
          const v = step.value;
          if (v instanceof Batch) {
            ended = v.final;
            step = g.next(v.steps.map((s) => this.#runSqlite(s)));
          } else step = g.next(this.#runSqlite(v));
        }
        return step.value;
      });
      let out: T;
      try {
        out = run.immediate();
      } catch (e) {
        if (e instanceof Rollback) return e.value as T;
        throw e;
      }
      if (opts.durable) await this.#durable();
      return out;
    }
    type Result = { rows: any[]; rowCount: number | null; command?: string };
    const pool = this.pgPool as { connect(): Promise<{ query(q: { name?: string; text: string; values?: unknown[] }): Promise<Result>; release(): void }> };
    const client = await pool.connect();
    // Sent at once, without waiting for the one before (pipeline mode); each result is awaited with its batch.
    const query = (text: string, values?: unknown[], name?: string): Promise<Result> => {
      const r = client.query(name ? { name, text, values } : { text, values });
      r.catch(() => undefined); // awaited below; a rejection before that is not unhandled
      return r;
    };
    let leading: Array<Promise<Result>> = [query('BEGIN')];
    let ended = false; // the COMMIT (or the ROLLBACK a failed statement turns it into) has run
    let refusal: Rollback<unknown> | null = null;
    try {
      const g = unit();
      let step = g.next();
      let first = true;
      while (!step.done) {
        if (ended) throw new Error('a transaction unit went on after its final batch');
        const v = step.value;
        const steps = v instanceof Batch ? v.steps : [v];
        const final = v instanceof Batch && v.final;
        // Every statement is bound before any is sent: nothing can fail half-sent in JavaScript.
        const bound = steps.map((s) => this.#bind(s));
        if (!first) this.#statements.trips++;
        first = false;
        const sent = [...leading, ...bound.map((b) => query(b.sql, b.params, b.name)), ...(final ? [query('COMMIT')] : [])];
        const settled = await Promise.allSettled(sent);
        this.#statements.n += steps.length;
        ended = final;
        const failed = settled.findIndex((x) => x.status === 'rejected');
        if (failed >= 0) {
          const err: unknown = (settled[failed] as PromiseRejectedResult).reason;
          const s = steps[failed - leading.length];
          if (s && isGuarded(s) && (err as { code?: unknown } | null)?.code === REFUSED) {
            const r = new Rollback(s.refuse);
            refusal = r;
            throw r;
          }
          throw err;
        }
        const results = settled.map((x) => (x as PromiseFulfilledResult<Result>).value);
        if (final && results.at(-1)?.command !== 'COMMIT') throw new Error(`the transaction ended with ${results.at(-1)?.command}, not COMMIT`);
        const mine = results.slice(leading.length, leading.length + steps.length).map((r) => ({ rows: r.rows, affected: r.rowCount ?? 0 }));
        leading = [];
        step = g.next(v instanceof Batch ? mine : mine[0]);
      }
      if (!ended) {
        this.#statements.trips++;
        await Promise.all([...leading, query('COMMIT')]);
        ended = true;
      }
      return step.value;
    } catch (e) {
      if (!ended) await query('ROLLBACK').catch(() => undefined);
      if (e instanceof Rollback) {
        // After its final batch a unit may read results, not refuse: its writes are committed.
        if (ended && e !== refusal) throw new Error('a transaction unit refused after its final batch');
        return e.value as T;
      }
      throw e;
    } finally {
      client.release();
    }
  }

  /** SQLite: one statement of a unit, run now; a guard's refusal undoes the unit (see Guarded). */
  #runSqlite(s: Step): StepResult {
    const { sql: text, params } = this.#bind(s);
    const st = this.#prepare!(text);
    this.#statements.n++;
    const r = st.reader ? { rows: st.all(params), affected: 0 } : { rows: [], affected: st.run(params).changes };
    if (isGuarded(s) && r.rows.length !== 1) throw new Rollback(s.refuse);
    return r;
  }

  /** PostgreSQL: the row read is locked until the transaction ends (SQLite's BEGIN IMMEDIATE already serializes writers). */
  #locked<Q extends SelectQueryBuilder<Database, any, any>>(q: Q): Q {
    return (this.engine === 'postgres' ? q.forUpdate() : q) as Q;
  }

  async beginCharge(p: Parameters<Store['beginCharge']>[0]): ReturnType<Store['beginCharge']> {
    const { claim, charge: c, cvv, take } = p;
    const db = this.db;
    const locked = this.#locked.bind(this);
    type Out = Awaited<ReturnType<Store['beginCharge']>>;
    // One batch; each refusal is a guard on the statement that finds it, in this order.
    const steps: Step[] = [
      guarded(
        prepared('unit:claimCharge', { id: claim.id, jti: claim.jti, newJti: claim.newJti, chargeId: c.id, now: claim.now }, (a) =>
          db
            .updateTable('sessions')
            .set((eb) => ({
              jti: a.newJti,
              seq: eb('seq', '+', 1),
              att_charge: eb('att_charge', '+', 1),
              charge_id: a.chargeId,
              charge_at: a.now,
              updated_at: a.now,
            }))
            .where('id', '=', a.id)
            .where('jti', '=', a.jti)
            .where('status', '=', 'active')
            .where('expires_at', '>', a.now)
            .where('charge_id', 'is', null)
            .whereRef('att_charge', '<', 'max_attempts')
            .returning(ONE),
        ),
        { status: 'lost' } satisfies Out,
      ),
    ];
    if (cvv) {
      const card = { merchantId: c.merchantId, fp: cvv.fingerprint, threshold: cvv.threshold };
      steps.push(
        prepared('unit:cvvStatusRow', { merchantId: card.merchantId, fp: card.fp, now: claim.now }, (a) =>
          db
            .insertInto('cvv_status')
            .values({ merchant_id: a.merchantId, fingerprint: a.fp, failed_attempts: 0, blocked: 0, updated_at: a.now })
            .onConflict((oc) => oc.columns(['merchant_id', 'fingerprint']).doNothing()),
        ),
        // The card number's status row, locked (PostgreSQL): concurrent charges of this number reserve one after
        // another. Blocked, or as many failures as the threshold: refused.
        guarded(
          prepared('unit:cvvStatusOpen', card, (a) =>
            locked(
              db
                .selectFrom('cvv_status')
                .select(ONE)
                .where('merchant_id', '=', a.merchantId)
                .where('fingerprint', '=', a.fp)
                .where('blocked', '=', 0)
                .where('failed_attempts', '<', a.threshold),
            ),
          ),
          { status: 'cvv_blocked' } satisfies Out,
        ),
        // Its own statement, so that on PostgreSQL it reads after the lock is held (a new snapshot): the failures
        // plus the CVV attempts in flight stay below the threshold, or the charge must wait.
        guarded(
          prepared('unit:cvvRoom', card, (a) =>
            db
              .selectFrom('cvv_status')
              .select(ONE)
              .where('merchant_id', '=', a.merchantId)
              .where('fingerprint', '=', a.fp)
              .where(
                sql<boolean>`failed_attempts + (SELECT count(*) FROM charges WHERE merchant_id = ${a.merchantId} AND cvv_fingerprint = ${a.fp} AND status = ${PENDING}) < ${a.threshold}`,
              ),
          ),
          { status: 'cvv_busy' } satisfies Out,
        ),
      );
    }
    steps.push(
      guarded(
        prepared(
          'unit:insertCharge',
          {
            id: c.id,
            merchant_id: c.merchantId,
            session_id: c.sessionId,
            mode: c.mode,
            idempotency_key: c.idempotencyKey,
            request_hash: c.requestHash,
            provider_key: c.providerKey,
            processor: c.processor,
            amount_value: c.amount.value,
            currency: c.amount.currency,
            created_at: c.createdAt,
            updated_at: c.updatedAt,
            cvv_fingerprint: cvv?.fingerprint ?? null,
          },
          (a) =>
            db
              .insertInto('charges')
              .values({
                ...a,
                status: 'pending',
                authorization_code: null,
                decline_code: null,
                cvv_result: null,
                avs_result: null,
                network_transaction_id: null,
                response_sealed: null,
              })
              .onConflict((oc) => oc.doNothing())
              .returning(ONE),
        ),
        { status: 'key_reused' } satisfies Out,
      ),
    );
    // The CVV the charge sends, taken now: gone or expired, the whole charge is refused (410) and nothing changes.
    let cvcAt = -1;
    if (take) {
      const cvc = { id: take.id, now: claim.now };
      const key = { id: take.id };
      const gone = { status: 'cvc_gone' } satisfies Out;
      if (take.retention === 'single_use') {
        cvcAt =
          steps.push(
            guarded(
              prepared('unit:takeCvc', cvc, (a) => db.deleteFrom('cvc_sessions').where('id', '=', a.id).where('expires_at', '>', a.now).returningAll()),
              gone,
            ),
            guarded(
              prepared('unit:takeKey', key, (a) => db.deleteFrom('cvv_keys').where('cvc_id', '=', a.id).returning('share')),
              gone,
            ),
          ) - 2;
      } else {
        if (take.retention === 'cache') {
          // The one cache window starts at the first use and never reaches past the CVV's lifetime.
          steps.push(
            prepared('unit:startCacheWindow', { ...cvc, until: take.cacheUntil }, (a) =>
              db
                .updateTable('cvc_sessions')
                .set({ first_used_at: a.now, expires_at: sql<number>`CASE WHEN expires_at < ${a.until} THEN expires_at ELSE ${a.until} END` })
                .where('id', '=', a.id)
                .where('first_used_at', 'is', null)
                .where('expires_at', '>', a.now),
            ),
          );
        }
        cvcAt =
          steps.push(
            guarded(
              prepared('unit:readCvc', cvc, (a) => db.selectFrom('cvc_sessions').selectAll().where('id', '=', a.id).where('expires_at', '>', a.now)),
              gone,
            ),
            guarded(
              prepared('unit:readKey', key, (a) => db.selectFrom('cvv_keys').select('share').where('cvc_id', '=', a.id)),
              gone,
            ),
          ) - 2;
      }
    }
    const out = await this.#transaction(
      function* (): Unit<Out> {
        const r = yield* send(steps, { final: true });
        if (cvcAt < 0) return { status: 'ok', cvc: null };
        const row = r[cvcAt]!.rows[0] as Selectable<CvcSessionsTable>;
        const share = r[cvcAt + 1]!.rows[0] as { share: Buffer };
        return { status: 'ok', cvc: { ...toCvc(row), keyShare: Buffer.from(share.share) } };
      },
      { durable: true },
    );
    if (out.status === 'ok' && take?.retention === 'single_use') {
      this.#afterCvvDelete();
      this.#afterKeyDelete();
    }
    return out;
  }

  async completeCharge(p: Parameters<Store['completeCharge']>[0]): Promise<{ recorded: boolean; cvvBlocked: boolean }> {
    const db = this.db;
    const f = p.finish;
    const refused = { recorded: false, cvvBlocked: false };
    const outcome = outcomeSteps(db, p.chargeId, p.outcome, p.now, p.threshold, refused);
    const steps = [...outcome.steps];
    if (p.responseSealed) {
      steps.push(
        prepared('unit:chargeResponse', { id: p.chargeId, sealed: pack(p.responseSealed) }, (a) =>
          db.updateTable('charges').set({ response_sealed: a.sealed }).where('id', '=', a.id),
        ),
      );
    }
    let dropAt = -1;
    if (p.destroyCvc) {
      const cvc = { id: p.destroyCvc };
      steps.push(prepared('unit:dropKey', cvc, (a) => db.deleteFrom('cvv_keys').where('cvc_id', '=', a.id)));
      dropAt = steps.push(prepared('unit:dropCvc', cvc, (a) => db.deleteFrom('cvc_sessions').where('id', '=', a.id))) - 1;
    }
    const finish = { ...finishArgs(f, p.now), chargeId: p.chargeId };
    steps.push(
      guarded(
        prepared(`unit:finishCharge:${f.complete}`, finish, (a) =>
          db
            .updateTable('sessions')
            .set(finishSet(a, f.complete))
            .where('id', '=', a.id)
            .where('jti', '=', a.jti)
            .where('charge_id', '=', a.chargeId)
            .returning(ONE),
        ),
        refused,
      ),
    );
    // Whether this outcome blocks the card number is known from its results only: then the events follow in a
    // second batch (a wrong CVV); otherwise they ride in the one batch.
    const mayBlock = p.ifBlocked.length > 0 && p.outcome.declineCode === 'incorrect_cvc';
    let destroyed = false;
    const out = await this.#transaction(
      function* (): Unit<{ recorded: boolean; cvvBlocked: boolean }> {
        const r = yield* send(mayBlock ? steps : [...steps, ...eventSteps(db, p.events)], { final: !mayBlock });
        destroyed = dropAt >= 0 && r[dropAt]!.affected > 0;
        const cvvBlocked = outcome.blocked(r);
        if (mayBlock) yield* send(eventSteps(db, cvvBlocked ? [...p.ifBlocked, ...p.events] : p.events), { final: true });
        return { recorded: true, cvvBlocked };
      },
      { durable: true },
    );
    if (destroyed) {
      this.#afterKeyDelete();
      this.#afterCvvDelete();
    }
    return out;
  }

  async abortCharge(p: Parameters<Store['abortCharge']>[0]): Promise<boolean> {
    const db = this.db;
    return this.#transaction(function* (): Unit<boolean> {
      const back = yield db
        .updateTable('sessions')
        .set((eb) => ({ jti: p.oldJti, seq: eb('seq', '-', 1), att_charge: eb('att_charge', '-', 1), charge_id: null, charge_at: null, updated_at: p.now }))
        .where('id', '=', p.id)
        .where('jti', '=', p.jti)
        .where('charge_id', '=', p.chargeId);
      if (back.affected !== 1) throw new Rollback(false);
      // It never reached the processor: no record of a charge that was not made (and its CVV reservation goes with it).
      yield db.deleteFrom('charges').where('id', '=', p.chargeId).where('status', '=', PENDING);
      return true;
    });
  }

  async recordChargeOutcome(
    id: string,
    o: Parameters<Store['recordChargeOutcome']>[1],
    now: number,
    threshold: number,
  ): Promise<{ recorded: boolean; cvvBlocked: boolean }> {
    const { steps, blocked } = outcomeSteps(this.db, id, o, now, threshold, { recorded: false, cvvBlocked: false });
    return this.#transaction(
      function* (): Unit<{ recorded: boolean; cvvBlocked: boolean }> {
        return { recorded: true, cvvBlocked: blocked(yield* send(steps, { final: true })) };
      },
      { durable: true },
    );
  }

  async settleChargeLock(p: Parameters<Store['settleChargeLock']>[0]): Promise<boolean> {
    const r = await this.db
      .updateTable('sessions')
      .set((eb) => ({
        jti: p.newJti,
        seq: eb('seq', '+', 1),
        token_hash: p.tokenHash,
        results: JSON.stringify(p.results),
        updated_at: p.now,
        charge_id: null,
        charge_at: null,
        replay_jti: null,
        replay_hash: null,
        replay_sealed: null,
        replay_at: null,
        ...(p.complete ? { status: 'completed' } : {}),
      }))
      .where('id', '=', p.id)
      .where('charge_id', '=', p.chargeId)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async leaseChargeRecovery(p: Parameters<Store['leaseChargeRecovery']>[0]): Promise<boolean> {
    const r = await this.db
      .updateTable('sessions')
      .set({ charge_at: p.now })
      .where('id', '=', p.id)
      .where('charge_id', '=', p.chargeId)
      .where('charge_at', '=', p.since)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async listChargeLocks(since: number, limit: number): Promise<Array<{ sessionId: string; chargeId: string; since: number; merchantId: string; mode: Mode }>> {
    const rows = await this.db
      .selectFrom('sessions')
      .select(['id', 'charge_id', 'charge_at', 'merchant_id', 'mode'])
      .where('charge_id', 'is not', null)
      .where('charge_at', '<', since)
      .orderBy('charge_at')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ sessionId: r.id, chargeId: r.charge_id!, since: Number(r.charge_at), merchantId: r.merchant_id, mode: r.mode as Mode }));
  }

  async deleteSessionCvvUnlessCharging(sessionId: string): Promise<number | null> {
    const db = this.db;
    const locked = this.#locked.bind(this);
    const n = await this.#transaction(function* (): Unit<number | null> {
      const s = (yield locked(db.selectFrom('sessions').select('charge_id').where('id', '=', sessionId))).rows[0] as { charge_id: string | null } | undefined;
      if (s && s.charge_id !== null) return null;
      yield db.deleteFrom('cvv_keys').where('cvc_id', 'in', db.selectFrom('cvc_sessions').select('id').where('session_id', '=', sessionId));
      return (yield db.deleteFrom('cvc_sessions').where('session_id', '=', sessionId)).affected;
    });
    if (n) {
      this.#afterKeyDelete();
      this.#afterCvvDelete();
    }
    return n;
  }

  async deleteCvcSessionUnlessCharging(merchantId: string, mode: Mode, id: string, now: number): Promise<'deleted' | 'gone' | 'charging'> {
    const db = this.db;
    const locked = this.#locked.bind(this);
    const out = await this.#transaction(function* (): Unit<'deleted' | 'gone' | 'charging'> {
      const row = (yield locked(
        db
          .selectFrom('cvc_sessions')
          .select(['session_id', 'card_token', 'expires_at'])
          .where('id', '=', id)
          .where('merchant_id', '=', merchantId)
          .where('mode', '=', mode),
      )).rows[0] as { session_id: string | null; card_token: string; expires_at: number } | undefined;
      if (!row) return 'gone';
      // Its own session, or for a card-level CVV any session of its card: owned by a charge, it stays.
      const busy =
        row.session_id !== null
          ? (yield locked(db.selectFrom('sessions').select('id').where('id', '=', row.session_id).where('charge_id', 'is not', null))).rows.length > 0
          : (yield db
              .selectFrom('sessions')
              .select('id')
              .where('charge_id', 'is not', null)
              .where('card_token', '=', row.card_token)
              .where('merchant_id', '=', merchantId)
              .limit(1)).rows.length > 0;
      if (busy) return 'charging';
      yield db.deleteFrom('cvv_keys').where('cvc_id', '=', id);
      yield db.deleteFrom('cvc_sessions').where('id', '=', id);
      return Number(row.expires_at) > now ? 'deleted' : 'gone';
    });
    if (out !== 'charging') {
      this.#afterKeyDelete();
      this.#afterCvvDelete();
    }
    return out;
  }

  async putCvvKeyShare(cvcId: string, share: Buffer, now: number): Promise<void> {
    await this.#exec('putCvvKeyShare', { cvc_id: cvcId, share, created_at: now }, (a) => this.db.insertInto('cvv_keys').values(a));
  }

  async getCvvKeyShare(cvcId: string): Promise<Buffer | null> {
    const {
      rows: [r],
    } = await this.#exec('getCvvKeyShare', { cvcId }, (a) => this.db.selectFrom('cvv_keys').select('share').where('cvc_id', '=', a.cvcId));
    return r ? Buffer.from(r.share) : null;
  }

  /** Deletes the key shares of these CVC sessions (before their rows): what makes their ciphertext useless. */
  async #dropKeys(ids: string[] | SelectQueryBuilder<Database, any, { id: string }>): Promise<void> {
    if (Array.isArray(ids) && ids.length === 0) return;
    const r = await this.db
      .deleteFrom('cvv_keys')
      .where('cvc_id', 'in', ids as never)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) > 0) this.#afterKeyDelete();
  }

  #vacuumTimer: NodeJS.Timeout | null = null;
  /**
   * PostgreSQL keeps deleted rows until vacuum: the small, unlogged key-share
   * table is vacuumed right after deletions (batched within 50 ms), so a
   * destroyed CVV's share does not linger as a dead tuple. SQLite overwrites
   * deleted content itself (secure_delete) and checkpoints its WAL.
   */
  #afterKeyDelete(): void {
    if (this.engine !== 'postgres' || this.#vacuumTimer) return;
    this.#vacuumTimer = setTimeout(() => {
      this.#vacuumTimer = null;
      void sql`VACUUM cvv_keys`.execute(this.db).then(
        () => this.#opts.onCheckpoint?.(0),
        () => undefined,
      );
    }, 50);
    this.#vacuumTimer.unref();
  }
}
