import { Kysely, type Selectable, sql, type UpdateQueryBuilder, type UpdateResult } from 'kysely';
import type { Sealed } from '../../types/shared.js';
import type { CardsTable, Database, SessionsTable } from '../schema.js';
import type {
  EventWrite,
  HistoryRecord,
  TdsRecord,
  MerchantRecord,
  Mode,
  NewIdempotencyRecord,
  Operation,
  OperationContextRecord,
  SessionRecord,
  SessionStore,
} from '../store.js';
import { pack, unpack, prepared, guarded, Step, Unit, send, ONE, PENDING, COMPLETED, KyselyEngine, pastCursor } from './engine.js';
import { tdsRow, cvcRow, eventSteps, toHistory, toMerchant, toCard, toCvc, toSession, toTds } from './rows.js';

/** An operation's outcome on its session, as arguments of a prepared statement: results, next token hash, replay record. */
export interface FinishArgs extends Record<string, unknown> {
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
export const finishArgs = (
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
export const outcomeSet = (a: FinishArgs) => ({
  results: a.results,
  token_hash: a.tokenHash,
  updated_at: a.now,
  replay_jti: a.replayJti,
  replay_hash: a.replayHash,
  replay_sealed: a.replaySealed,
  replay_at: a.replayAt,
});
/** The columns such a finish sets; a charge's outcome also ends its ownership of the session (no other operation could have held it). */
export const finishSet = (a: FinishArgs, complete: boolean) => ({
  ...outcomeSet(a),
  charge_id: null,
  charge_at: null,
  ...(complete ? { status: 'completed' } : {}),
});

export const ATTEMPT_COLUMN = { collectCvv: 'att_collect', threeDS: 'att_threeds', charge: 'att_charge' } as const satisfies Record<
  Operation,
  keyof SessionsTable
>;

/** Create's Idempotency-Key record, taken in the unit that stores the session (an expired one of the same key replaced); refused when another request holds the key. */
function idempotencySteps(db: Kysely<Database>, merchantId: string, i: NewIdempotencyRecord): Step[] {
  const key = { merchantId, endpoint: i.endpoint, key: i.key };
  return [
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
          merchant_id: merchantId,
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
  ];
}

export class KyselySessionStore implements SessionStore {
  constructor(private readonly e: KyselyEngine) {}

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
    const db = this.e.db;
    const steps: Step[] = [
      guarded(change(db).returning(ONE), false),
      db.deleteFrom('cvv_keys').where('cvc_id', 'in', db.selectFrom('cvc_sessions').select('id').where('session_id', '=', id)),
      db.deleteFrom('cvc_sessions').where('session_id', '=', id),
      ...eventSteps(db, events),
    ];
    let cvvDeleted = false;
    const done = await this.e.transaction(function* (): Unit<boolean> {
      cvvDeleted = (yield* send(steps, { final: true }))[2]!.affected > 0;
      return true;
    });
    if (cvvDeleted) {
      this.e.afterKeyDelete();
      this.e.afterCvvDelete();
    }
    return done;
  }

  async insert(s: SessionRecord, idempotency?: NewIdempotencyRecord, history: HistoryRecord[] = []): Promise<boolean> {
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
    if (!idempotency && history.length === 0) {
      await this.e.exec('insertSession', args, (a) => this.e.db.insertInto('sessions').values(a));
      return true;
    }
    const db = this.e.db;
    const steps: Step[] = [
      ...(idempotency ? idempotencySteps(db, s.merchantId, idempotency) : []),
      prepared('unit:insertSession', args, (a) => db.insertInto('sessions').values(a)),
      ...eventSteps(db, history),
    ];
    return this.e.transaction(function* (): Unit<boolean> {
      yield* send(steps, { final: true });
      return true;
    });
  }

  async getCreateContext(p: Parameters<SessionStore['getCreateContext']>[0]): ReturnType<SessionStore['getCreateContext']> {
    const i = p.idempotency;
    const args = { token: p.cardToken, merchantId: p.merchantId, mode: p.mode, ...(i ? { endpoint: i.endpoint, key: i.key, now: i.now } : {}) };
    const {
      rows: [r],
    } = await this.e.exec(`getCreateContext:${!!i}`, args, (a) => ({
      compile: () =>
        sql<Record<string, any>>`
        SELECT c.*, ${i ? sql`k.request_hash AS k_request_hash, k.status AS k_status, k.response_sealed AS k_response_sealed` : sql`NULL AS k_request_hash`}
        FROM (SELECT 1 AS one) o
        LEFT JOIN cards c ON c.token = ${a.token} AND c.merchant_id = ${a.merchantId} AND c.mode = ${a.mode}
        ${i ? sql`LEFT JOIN idempotency_keys k ON k.merchant_id = ${a.merchantId} AND k.endpoint = ${a.endpoint} AND k.idem_key = ${a.key} AND k.expires_at > ${a.now}` : sql``}`.compile(
          this.e.db,
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

  async get(merchantId: string, mode: Mode, id: string): Promise<SessionRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('getSession', { id, merchantId, mode }, (a) =>
      this.e.db.selectFrom('sessions').selectAll().where('id', '=', a.id).where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode),
    );
    return r ? toSession(r) : null;
  }

  async getById(id: string): Promise<SessionRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('getSessionById', { id }, (a) => this.e.db.selectFrom('sessions').selectAll().where('id', '=', a.id));
    return r ? toSession(r) : null;
  }

  async getOperationContext(id: string, now: number, chargeKey?: string): Promise<OperationContextRecord | null> {
    // One statement, prepared once: the joins are one-row lookups by key (the latest 3DS transaction and the
    // usable CVC session through indexed ORDER BY … LIMIT 1 subqueries).
    const keyed = chargeKey !== undefined;
    const {
      rows: [r],
    } = await this.e.exec(`getOperationContext:${keyed}`, { id, now, ...(keyed ? { chargeKey } : {}) }, (a) => ({
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
        WHERE s.id = ${a.id}`.compile(this.e.db),
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
        : toTds({
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

  async commitOperation(p: Parameters<SessionStore['commitOperation']>[0]): Promise<boolean> {
    const db = this.e.db;
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
    const done = await this.e.transaction(function* (): Unit<boolean> {
      const r = yield* send(steps, { final: true });
      cvvDeleted = cvcDrops.some((i) => r[i]!.affected > 0);
      return true;
    });
    if (cvvDeleted) {
      this.e.afterKeyDelete();
      this.e.afterCvvDelete();
    }
    return done;
  }

  async finishOperation(p: Parameters<SessionStore['finishOperation']>[0]): Promise<boolean> {
    const { affected } = await this.e.exec(`finishOperation:${p.complete}`, finishArgs(p, p.now), (a) =>
      this.e.db.updateTable('sessions').set(finishSet(a, p.complete)).where('id', '=', a.id).where('jti', '=', a.jti).where('status', '=', 'active'),
    );
    return affected === 1;
  }

  async rotateToken(p: { id: string; jti: string; newJti: string; tokenHash: string; now: number }): Promise<boolean> {
    const r = await this.e.db
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

  async listExpired(now: number, limit: number): Promise<Array<{ id: string; merchantId: string; mode: Mode }>> {
    // A session a charge owns expires only once its outcome is recorded (crash recovery settles it first).
    const rows = await this.e.db
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

  async expire(id: string, now: number, events: EventWrite[]): Promise<boolean> {
    await this.e.backgroundTurn();
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

  async cancel(merchantId: string, mode: Mode, id: string, now: number, events: EventWrite[] = []): Promise<boolean> {
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

  async list(merchantId: string, mode: Mode, q: Parameters<SessionStore['list']>[2]): Promise<SessionRecord[]> {
    let query = this.e.db.selectFrom('sessions').selectAll().where('merchant_id', '=', merchantId).where('mode', '=', mode);
    if (q.after !== undefined) {
      const before = await this.e.before('sessions', merchantId, mode, q.after);
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
    await this.e.backgroundTurn();
    const r = await this.e.db
      .updateTable('sessions')
      .set({ replay_jti: null, replay_hash: null, replay_sealed: null, replay_at: null })
      .where(
        'id',
        'in',
        // SQLite, without statistics, preferred the (status, expires_at) index and walked every completed session
        // to find the few with a record left (12 ms a batch over 100,000 sessions): the partial index is named.
        this.e.engine === 'sqlite'
          ? sql<string>`(SELECT id FROM sessions INDEXED BY sessions_replay_completed
              WHERE status = 'completed' AND replay_at IS NOT NULL AND replay_at < ${before} LIMIT ${limit})`
          : this.e.db
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

  async deleteEnded(before: number, limit: number): Promise<number> {
    await this.e.backgroundTurn();
    const ENDED = ['completed', 'canceled', 'expired'];
    const ids = (
      await this.e.db
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
    const db = this.e.db;
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
      // Their trail, for those deleted (a session kept for its pending charge keeps it).
      db
        .deleteFrom('session_history')
        .where('session_id', 'in', ids)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('sessions').select('sessions.id').whereRef('sessions.id', '=', 'session_history.session_id')))),
    ];
    let cvvDeleted = false;
    const n = await this.e.transaction(function* (): Unit<number> {
      const r = yield* send(steps, { final: true });
      cvvDeleted = r[3]!.affected > 0;
      return r[4]!.affected;
    });
    if (cvvDeleted) {
      this.e.afterKeyDelete();
      this.e.afterCvvDelete();
    }
    return n;
  }

  async appendHistory(rows: HistoryRecord[]): Promise<void> {
    if (rows.length === 0) return;
    const steps = eventSteps(this.e.db, rows);
    await this.e.transaction(function* (): Unit<void> {
      yield* send(steps, { final: true });
    });
  }

  async history(merchantId: string, mode: Mode, sessionId: string, q: { limit: number; after?: string }): Promise<HistoryRecord[]> {
    let query = this.e.db
      .selectFrom('session_history')
      .selectAll()
      .where('session_id', '=', sessionId)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode);
    if (q.after !== undefined) {
      const c = await this.e.db
        .selectFrom('session_history')
        .select(['created_at', 'id'])
        .where('id', '=', q.after)
        .where('session_id', '=', sessionId)
        .where('merchant_id', '=', merchantId)
        .where('mode', '=', mode)
        .executeTakeFirst();
      if (!c) return [];
      query = query.where(pastCursor(c, 'newer'));
    }
    return (await query.orderBy('created_at').orderBy('id').limit(q.limit).execute()).map(toHistory);
  }

  async insertTds(t: TdsRecord): Promise<void> {
    await this.e.exec('insertTds', tdsRow(t), (a) => this.e.db.insertInto('tds_transactions').values(a));
  }

  async getTds(id: string): Promise<TdsRecord | null> {
    const r = await this.e.db.selectFrom('tds_transactions').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toTds(r) : null;
  }

  async completeTds(id: string, result: NonNullable<TdsRecord['result']>, now: number, events: EventWrite[] = []): Promise<boolean> {
    const db = this.e.db;
    const steps: Step[] = [
      guarded(
        db
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
          .returning(ONE),
        false,
      ),
      ...eventSteps(db, events),
    ];
    return this.e.transaction(function* (): Unit<boolean> {
      yield* send(steps, { final: true });
      return true;
    });
  }
}
