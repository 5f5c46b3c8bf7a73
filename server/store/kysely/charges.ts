import { Kysely, type Selectable, sql } from 'kysely';
import type { Sealed } from '../../types/shared.js';
import type { CvcSessionsTable, Database } from '../schema.js';
import type { ChargeRecord, ChargeStore, EventWrite, Mode } from '../store.js';
import { pack, StepResult, prepared, guarded, Step, Unit, send, Rollback, ONE, PENDING, KyselyEngine } from './engine.js';
import { eventSteps, toCharge, toCvc } from './rows.js';
import { finishArgs, finishSet } from './sessions.js';

/**
 * A charge's outcome (only from pending: a charge already settled refuses the
 * unit with `refuse`) and what it says about the CVV it sent: `incorrect_cvc`
 * counts a failure (blocking at `threshold`), a match resets the count. The
 * card number is the charge's (a subquery), so the statements need nothing
 * from each other and go in one batch. `blocked(results)`: this very outcome
 * blocked the card number. Steps of a transaction unit (recordOutcome,
 * complete), first in their batch.
 */
export function outcomeSteps(
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

export class KyselyChargeStore implements ChargeStore {
  constructor(private readonly e: KyselyEngine) {}

  async begin(p: Parameters<ChargeStore['begin']>[0]): ReturnType<ChargeStore['begin']> {
    const { claim, charge: c, cvv, take } = p;
    const db = this.e.db;
    const locked = this.e.locked.bind(this.e);
    type Out = Awaited<ReturnType<ChargeStore['begin']>>;
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
    const out = await this.e.transaction(
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
      this.e.afterCvvDelete();
      this.e.afterKeyDelete();
    }
    return out;
  }

  async complete(p: Parameters<ChargeStore['complete']>[0]): Promise<{ recorded: boolean; cvvBlocked: boolean }> {
    const db = this.e.db;
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
    const out = await this.e.transaction(
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
      this.e.afterKeyDelete();
      this.e.afterCvvDelete();
    }
    return out;
  }

  async abort(p: Parameters<ChargeStore['abort']>[0]): Promise<boolean> {
    const db = this.e.db;
    return this.e.transaction(function* (): Unit<boolean> {
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

  async recordOutcome(
    id: string,
    o: Parameters<ChargeStore['recordOutcome']>[1],
    now: number,
    threshold: number,
    ev: { events: EventWrite[]; ifBlocked: EventWrite[] } = { events: [], ifBlocked: [] },
  ): Promise<{ recorded: boolean; cvvBlocked: boolean }> {
    const db = this.e.db;
    const { steps, blocked } = outcomeSteps(db, id, o, now, threshold, { recorded: false, cvvBlocked: false });
    const mayBlock = ev.ifBlocked.length > 0 && o.declineCode === 'incorrect_cvc';
    return this.e.transaction(
      function* (): Unit<{ recorded: boolean; cvvBlocked: boolean }> {
        // As complete: the events in the one batch, unless whether this outcome blocks is to be learnt first.
        const cvvBlocked = blocked(yield* send(mayBlock ? steps : [...steps, ...eventSteps(db, ev.events)], { final: !mayBlock }));
        if (mayBlock) yield* send(eventSteps(db, cvvBlocked ? [...ev.ifBlocked, ...ev.events] : ev.events), { final: true });
        return { recorded: true, cvvBlocked };
      },
      { durable: true },
    );
  }

  async settleLock(p: Parameters<ChargeStore['settleLock']>[0]): Promise<boolean> {
    const r = await this.e.db
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

  async leaseRecovery(p: Parameters<ChargeStore['leaseRecovery']>[0]): Promise<boolean> {
    const r = await this.e.db
      .updateTable('sessions')
      .set({ charge_at: p.now })
      .where('id', '=', p.id)
      .where('charge_id', '=', p.chargeId)
      .where('charge_at', '=', p.since)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async listLocks(since: number, limit: number): Promise<Array<{ sessionId: string; chargeId: string; since: number; merchantId: string; mode: Mode }>> {
    const rows = await this.e.db
      .selectFrom('sessions')
      .select(['id', 'charge_id', 'charge_at', 'merchant_id', 'mode'])
      .where('charge_id', 'is not', null)
      .where('charge_at', '<', since)
      .orderBy('charge_at')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ sessionId: r.id, chargeId: r.charge_id!, since: Number(r.charge_at), merchantId: r.merchant_id, mode: r.mode as Mode }));
  }

  async setResponse(id: string, sealed: Sealed): Promise<void> {
    await this.e.exec('setChargeResponse', { id, sealed: pack(sealed) }, (a) =>
      this.e.db.updateTable('charges').set({ response_sealed: a.sealed }).where('id', '=', a.id),
    );
  }

  async get(id: string): Promise<ChargeRecord | null> {
    const r = await this.e.db.selectFrom('charges').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toCharge(r) : null;
  }

  async findByIdempotencyKey(merchantId: string, mode: Mode, key: string): Promise<ChargeRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('findChargeByIdempotencyKey', { merchantId, mode, key }, (a) =>
      this.e.db.selectFrom('charges').selectAll().where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode).where('idempotency_key', '=', a.key),
    );
    return r ? toCharge(r) : null;
  }
}
