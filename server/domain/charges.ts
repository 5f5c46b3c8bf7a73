import { createHash } from 'node:crypto';
import { type ChargeResult, type Processor, ProcessorError } from '../connectors/processors/processor.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChargeRecord, CvcSessionRecord, CvvStatusRecord, EventWrite, MerchantRecord, Mode, Store } from '../store/store.js';
import { NO_OUTCOME } from '../store/store.js';
import type { CardService } from './cards.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Keyring, Sealed } from './keyring.js';
import type { FinishUnit, OperationContext, OperationResponse, OperationWork, ReadContext, SessionService } from './sessions.js';
import type { SessionClaims } from './tokens.js';
import type { ThreeDSService } from './three-ds.js';
import { CACHE_WINDOW_MS, Vault } from './vault.js';
import type { WebhookService } from './webhooks.js';

export interface ChargeBody {
  amount?: { value: number; currency: string };
}

/** What prepare found, handed to work (read once, before the token was won). */
export interface ChargePlan {
  amount: { value: number; currency: string };
  cvc: CvcSessionRecord | null;
  threeDS: ReturnType<ThreeDSService['forCharge']>;
  /** The card number's CVV status as prepare read it. */
  cvvStatus: CvvStatusRecord | null;
}

type Outcome = Pick<ChargeRecord, 'status' | 'authorizationCode' | 'declineCode' | 'cvvResult' | 'avsResult' | 'networkTransactionId'>;

/** How long a pending charge may be in flight beyond its processor's timeout before it is treated as interrupted (crash recovery). */
const IN_FLIGHT_MARGIN_MS = 2000;
/** The one question asked after a transport failure: does the processor know this charge? */
const LOOKUP_TIMEOUT_MS = 5000;

/**
 * Charges: preconditions, then a durable intent, the CVV used per its
 * retention, the processor called once per attempt, a durable outcome, the
 * CVV destroyed after authorization in live mode, and CVV blocking fed.
 * With an Idempotency-Key a retry gets the first outcome (reconciled with the
 * processor after a crash) and never a second charge.
 */
export class ChargeService {
  constructor(
    private readonly store: Pick<Store, 'cards' | 'charges' | 'cvc' | 'merchants' | 'sessions'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly cards: CardService,
    private readonly vault: Vault,
    private readonly threeDS: ThreeDSService,
    private readonly sessions: SessionService,
    private readonly webhooks: WebhookService,
    private readonly processorFor: (m: MerchantRecord) => { processor: Processor; timeoutMs: number },
    private readonly opts: { production: boolean; log?: Logger },
  ) {}

  static requestHash(body: ChargeBody): string {
    return createHash('sha256')
      .update(JSON.stringify(body.amount ?? null))
      .digest('base64url');
  }

  /** Checks that must pass before the token is touched (each a 4xx that leaves the token current). */
  async prepare(ctx: ReadContext, body: ChargeBody): Promise<ChargePlan> {
    const { session, merchant } = ctx;
    const ceiling = session.amount;
    if (!ceiling) throw new AppError('invalid_amount', 'The session has no amount to charge.');
    const amount = body.amount ?? ceiling;
    if (amount.currency !== ceiling.currency) throw new AppError('invalid_amount', `The currency must be ${ceiling.currency}.`);
    if (amount.value > ceiling.value) throw new AppError('invalid_amount', 'The amount exceeds the session amount.');
    if (session.mode === 'live' && this.opts.production && (merchant.processor as { type?: string }).type !== 'http') {
      throw new AppError('precondition_failed', 'Live charges need an http processor (the simulator is for test mode).');
    }
    // Everything here was read with the session, in one statement (Store.getOperationContext).
    const cvvStatus = ctx.cvvStatus;
    Vault.assertUnblocked(cvvStatus);
    const cvc = ctx.usableCvc;
    if (session.requireCvv && !cvc) throw new AppError('precondition_failed', 'A CVV must be collected before the charge.');
    const threeDS = this.threeDS.forCharge(ctx.latestTds);
    if (session.require3DS && (!threeDS || (threeDS.status !== 'Y' && threeDS.status !== 'A'))) {
      throw new AppError('precondition_failed', 'A successful 3-D Secure authentication (Y or A) is required first.');
    }
    return { amount, cvc, threeDS, cvvStatus };
  }

  /**
   * POST /CvvOperations/charge, whole: a keyed retry gets the first outcome;
   * otherwise the preconditions, then one unit that wins the token, makes the
   * charge the session's owner, reserves the CVV attempt and stores the intent;
   * then the processor, once; then the outcome. `replayed`: the first response
   * of an earlier request with this Idempotency-Key.
   */
  async charge(p: {
    token: string;
    claims: SessionClaims;
    body: ChargeBody;
    origin: string | undefined;
    idempotencyKey?: string | undefined;
    requestId?: string | undefined;
  }): Promise<{ response: OperationResponse; replayed: boolean }> {
    const hash = ChargeService.requestHash(p.body);
    const key = p.idempotencyKey ?? null;
    // One read: the operation's context and, for a keyed charge, whether that key was used before.
    const read = await this.store.sessions.getOperationContext(p.claims.sub, this.clock.now(), key ?? undefined);
    if (key !== null) {
      const used = read
        ? read.keyedChargeId !== null
          ? await this.store.charges.get(read.keyedChargeId)
          : null
        : await this.store.charges.findByIdempotencyKey(p.claims.aud, p.claims.mode, key);
      const first = used ? await this.#replayOf(used, p.claims, hash) : null;
      if (first) return { response: first, replayed: true };
    }
    let plan!: ChargePlan;
    let charge!: ChargeRecord;
    /** The CVC session the intent unit took for this charge (with its key share). */
    let taken: CvcSessionRecord | null = null;
    /** The processor's answer, for the outcome unit. */
    let outcome!: Outcome;
    let ctxOf!: OperationContext;
    /** Set just before the processor is called: from then on the outcome may exist at the processor. */
    let sent = false;
    const response = await this.sessions.runOperation({
      op: 'charge',
      token: p.token,
      claims: p.claims,
      origin: p.origin,
      requestId: p.requestId,
      body: p.body,
      read,
      prepare: async (ctx) => {
        plan = await this.prepare(ctx, p.body);
      },
      claim: async (ctx, c) => {
        charge = this.#intent(ctx, plan, key, hash, c.now);
        const cvv = plan.cvc ? { fingerprint: ctx.card.fingerprint, threshold: ctx.merchant.cvvBlockThreshold } : null;
        const take = plan.cvc ? { id: plan.cvc.id, retention: plan.cvc.retention, cacheUntil: c.now + CACHE_WINDOW_MS } : null;
        const r = await this.store.charges.begin({ claim: c, charge, cvv, take });
        if (r.status === 'cvv_blocked') throw new AppError('cvv_blocked');
        if (r.status === 'cvv_busy') {
          throw new AppError('precondition_failed', 'Other charges of this card are checking its CVV at the processor; try again once they have answered.', {
            retryAfter: 1,
          });
        }
        if (r.status === 'key_reused') throw new AppError('idempotency_key_reused', 'This Idempotency-Key is already in use.');
        // The CVC session was gone by the time the charge took it (expired, deleted, used): nothing happened.
        if (r.status === 'cvc_gone') throw new AppError('cvc_session_not_found');
        if (r.status !== 'ok') return false;
        taken = r.cvc;
        if (taken && taken.retention === 'single_use') {
          this.opts.log?.info(
            { audit: true, event: 'cvv.destroyed', merchantId: taken.merchantId, cvcSession: taken.id, reason: 'used:charge' },
            'CVV destroyed by use',
          );
        }
        return true;
      },
      work: async (ctx) => {
        ctxOf = ctx;
        const w = await this.#work(ctx, plan, charge, taken, () => {
          sent = true;
        });
        outcome = w.outcome;
        return w.work;
      },
      // A keyed charge keeps its response for retries in the outcome transaction.
      finish: (f) => this.#complete(ctxOf, plan, charge, taken, outcome, f, key !== null ? this.#sealResponse(charge.id, p.claims.aud, f.response) : null),
      unclaim: async (c) => {
        // Before the processor was called nothing happened: the attempt is undone. After, the outcome is
        // unknown: the intent stays pending and the session owned until recovery asks the processor.
        if (!sent) await this.store.charges.abort({ ...c, chargeId: charge.id });
      },
    });
    return { response, replayed: false };
  }

  #intent(ctx: ReadContext, plan: ChargePlan, idempotencyKey: string | null, requestHash: string, now: number): ChargeRecord {
    const { session, merchant } = ctx;
    const id = newId('ch');
    return {
      id,
      merchantId: merchant.id,
      sessionId: session.id,
      mode: session.mode,
      idempotencyKey,
      requestHash,
      providerKey: idempotencyKey ? `cvvops_${createHash('sha256').update(`${merchant.id}|${session.mode}|${idempotencyKey}`).digest('hex').slice(0, 40)}` : id,
      processor: this.processorFor(merchant).processor.name,
      amount: plan.amount,
      ...NO_OUTCOME,
      createdAt: now,
      updatedAt: now,
    };
  }

  /** The operation's work, once the token is won and the intent stored: one processor call for this attempt. */
  async #work(
    ctx: OperationContext,
    plan: ChargePlan,
    charge: ChargeRecord,
    taken: CvcSessionRecord | null,
    markSent: () => void,
  ): Promise<{ work: OperationWork; outcome: Outcome }> {
    const { session, merchant, card } = ctx;
    const { amount, threeDS } = plan;
    const { processor, timeoutMs } = this.processorFor(merchant);
    // The CVC session the intent unit took (its key share with it): decrypted here, without another read.
    const cvv = taken ? await this.vault.open(taken) : null;
    const opened = this.cards.open(card);
    let outcome: Outcome;
    markSent();
    try {
      const r = await processor.charge(
        {
          chargeId: charge.id,
          idempotencyKey: charge.providerKey,
          mode: session.mode,
          amount,
          card: { number: opened.number, brand: card.brand, expMonth: card.expMonth, expYear: card.expYear, holderName: opened.holderName },
          cvv,
          threeDS: threeDS && (threeDS.status === 'Y' || threeDS.status === 'A') ? threeDS : null,
          reference: session.reference,
        },
        AbortSignal.timeout(timeoutMs),
      );
      outcome = fromResult(r);
    } catch (err) {
      // Anything but a transport or protocol failure leaves the outcome unknown: rethrown, the intent stays
      // pending and the session owned, and recovery asks the processor (never a second charge).
      if (!(err instanceof ProcessorError)) throw err;
      this.opts.log?.warn({ merchantId: merchant.id, session: session.id, chargeId: charge.id, err: err.message }, 'processor failed');
      outcome = await this.#afterFailure(processor, charge, err, cvv !== null);
    }
    return { work: this.#present(charge.id, amount, outcome, processor.name, outcome.status === 'approved'), outcome };
  }

  /**
   * The outcome unit: the outcome, the CVV count, the live CVV destroyed after
   * an authorization, the session finished under the token the charge
   * produced (its ownership released) and the webhook events, in one
   * transaction (Store.charges.complete).
   */
  async #complete(
    ctx: OperationContext,
    plan: ChargePlan,
    charge: ChargeRecord,
    cvc: CvcSessionRecord | null,
    outcome: Outcome,
    f: FinishUnit,
    responseSealed: Sealed | null,
  ): Promise<boolean> {
    const { session, merchant, card } = ctx;
    const authorized = outcome.status === 'approved' || outcome.status === 'declined';
    // An authorization response arrived: in live mode the CVV is destroyed now, whatever the retention (PCI DSS 3.3.1).
    const destroyCvc = authorized && cvc && cvc.mode === 'live' && cvc.retention !== 'single_use' ? cvc.id : null;
    const { events, ifBlocked } = await this.#outcomeEvents(merchant, session.mode, session.id, card.token, charge.id, plan.amount, outcome, cvc !== null);
    events.push(f.history);
    const rec = await this.store.charges.complete({
      chargeId: charge.id,
      outcome,
      threshold: merchant.cvvBlockThreshold,
      destroyCvc,
      now: f.now,
      events,
      ifBlocked,
      responseSealed,
      finish: { id: session.id, jti: f.jti, results: f.results, tokenHash: f.tokenHash, complete: f.complete, replay: f.replay },
    });
    if (!rec.recorded) {
      // Recovery settled this charge first (this call outlived its time): its outcome stands, and it ran the effects.
      const s = await this.store.sessions.getById(session.id);
      if (s?.status === 'completed') throw new AppError('session_completed');
      throw new AppError('token_superseded', 'The outcome of this charge was settled by recovery; validate the session from your server.');
    }
    if (destroyCvc)
      this.opts.log?.info(
        { audit: true, event: 'cvv.destroyed', merchantId: merchant.id, cvcSession: destroyCvc, reason: 'authorized' },
        'CVV destroyed after authorization',
      );
    if (rec.cvvBlocked) {
      this.opts.log?.warn(
        { audit: true, event: 'cvv.blocked', merchantId: merchant.id, card: card.token, failedAttempts: merchant.cvvBlockThreshold },
        'card CVV blocked',
      );
    }
    return true;
  }

  /**
   * A processor call that failed in transport may still have reached it: ask
   * once whether it knows the charge, so a timeout after an approval is not
   * shown as an error (and never charged again). A refusal before sending
   * (`retryable` false) needs no question.
   */
  async #afterFailure(processor: Processor, charge: ChargeRecord, err: ProcessorError, withCvv: boolean): Promise<Outcome> {
    const failed: Outcome = {
      status: 'error',
      authorizationCode: null,
      declineCode: null,
      cvvResult: withCvv ? 'U' : 'P',
      avsResult: 'U',
      networkTransactionId: null,
    };
    if (!err.retryable) return failed;
    try {
      const found = await processor.lookup(charge.providerKey, charge.mode, AbortSignal.timeout(LOOKUP_TIMEOUT_MS));
      return found ? fromResult(found) : failed;
    } catch {
      return failed;
    }
  }

  /**
   * The webhook events of a charge's outcome, written with it: charge.succeeded or charge.failed,
   * session.completed when approved, and cvv.blocked (`ifBlocked`: written only when this very
   * outcome blocks the card number) when a CVV was sent and found wrong.
   */
  async #outcomeEvents(
    merchant: MerchantRecord,
    mode: Mode,
    sessionId: string,
    cardToken: string,
    chargeId: string,
    amount: { value: number; currency: string },
    outcome: Outcome,
    cvvSent: boolean,
  ): Promise<{ events: EventWrite[]; ifBlocked: EventWrite[] }> {
    const data = { session: sessionId, chargeId, status: outcome.status, amount, declineCode: outcome.declineCode, cvvResult: outcome.cvvResult };
    const events = await this.webhooks.prepare(merchant.id, mode, [
      { type: outcome.status === 'approved' ? 'charge.succeeded' : 'charge.failed', data },
      ...(outcome.status === 'approved' ? [{ type: 'session.completed' as const, data: { session: sessionId, chargeId } }] : []),
    ]);
    const ifBlocked =
      outcome.declineCode === 'incorrect_cvc' && cvvSent
        ? await this.webhooks.prepare(merchant.id, mode, [{ type: 'cvv.blocked', data: { card: cardToken, failedAttempts: merchant.cvvBlockThreshold } }])
        : [];
    return { events, ifBlocked };
  }

  /** Effects of an outcome recorded by recovery, run at least once: the live CVV destroyed after authorization. (Its events were written with it.) */
  async #after(merchant: MerchantRecord, card: OperationContext['card'], cvc: CvcSessionRecord | null, outcome: Outcome, cvvBlocked: boolean): Promise<void> {
    if (outcome.status === 'approved' || outcome.status === 'declined') {
      // An authorization response arrived: in live mode the CVV is destroyed now, whatever the retention.
      if (cvc) await this.vault.afterAuthorization(cvc);
    }
    if (cvvBlocked) {
      this.opts.log?.warn(
        { audit: true, event: 'cvv.blocked', merchantId: merchant.id, card: card.token, failedAttempts: merchant.cvvBlockThreshold },
        'card CVV blocked',
      );
    }
  }

  #present(chargeId: string, amount: { value: number; currency: string }, o: Outcome, processor: string, complete = false): OperationWork {
    const result = {
      status: o.status,
      chargeId,
      amount,
      authorizationCode: o.authorizationCode,
      cvvResult: o.cvvResult,
      avsResult: o.avsResult,
      networkTransactionId: o.networkTransactionId,
      declineCode: o.declineCode,
      processor,
    };
    return {
      result,
      claim: { status: o.status, chargeId, amount, authorizationCode: o.authorizationCode, cvvResult: o.cvvResult, declineCode: o.declineCode },
      complete,
    };
  }

  /** Keeps the response of a keyed charge (encrypted: it holds a token) for retries. */
  async remember(chargeId: string, merchantId: string, response: OperationResponse): Promise<void> {
    await this.store.charges.setResponse(chargeId, this.#sealResponse(chargeId, merchantId, response));
  }

  #sealResponse(chargeId: string, merchantId: string, response: OperationResponse): Sealed {
    return this.keyring.seal('replay', JSON.stringify(response), `charge|${merchantId}|${chargeId}`);
  }

  /**
   * Crash recovery (the sweeper, every instance): sessions a charge has owned
   * for longer than its processor's timeout allows were left by a server that
   * stopped. Each is settled from what the processor says: the outcome is
   * recorded, its effects run, the session freed.
   */
  async recoverInFlight(limit = 20): Promise<number> {
    const now = this.clock.now();
    let settled = 0;
    for (const l of await this.store.charges.listLocks(now - IN_FLIGHT_MARGIN_MS, limit)) {
      const merchant = await this.store.merchants.get(l.merchantId, l.mode);
      if (!merchant) continue;
      if (now - l.since < this.processorFor(merchant).timeoutMs + IN_FLIGHT_MARGIN_MS) continue;
      try {
        if (await this.#settle(l.chargeId, l.sessionId, l.since, merchant)) settled++;
      } catch (err) {
        this.opts.log?.warn(
          { merchantId: l.merchantId, session: l.sessionId, chargeId: l.chargeId, err: err instanceof Error ? err.message : String(err) },
          'an interrupted charge could not be settled yet; retrying',
        );
      }
    }
    return settled;
  }

  /**
   * Settles an interrupted charge that owns its session since `since`. One
   * settler at a time, across instances: it first takes a lease (the
   * ownership's time moved to now, conditionally), which also spaces out
   * retries when the processor cannot be reached. A pending charge is looked
   * up at the processor (never sent again; unknown to it, it never charged:
   * `error`); then its effects run and the session is freed with a new token
   * carrying the outcome. Null when another settler has it. When the
   * processor cannot be asked, the session stays owned until it has expired
   * (no charge can follow then), and the charge ends as `error`.
   */
  async #settle(chargeId: string, sessionId: string, since: number, merchant: MerchantRecord): Promise<OperationResponse | null> {
    if (!(await this.store.charges.leaseRecovery({ id: sessionId, chargeId, since, now: this.clock.now() }))) return null;
    const session = await this.store.sessions.getById(sessionId);
    if (!session || session.chargeInFlight?.chargeId !== chargeId) return null;
    let c = await this.store.charges.get(chargeId);
    let cvvBlocked = false;
    if (!c || c.status === 'pending') {
      const { processor, timeoutMs } = this.processorFor(merchant);
      let outcome: Outcome;
      try {
        const found = c ? await processor.lookup(c.providerKey, c.mode, AbortSignal.timeout(timeoutMs)) : null;
        outcome = found ? fromResult(found) : FAILED;
      } catch (err) {
        if (this.clock.now() < session.expiresAt) throw err;
        this.opts.log?.warn(
          { audit: true, event: 'charge.unknown', merchantId: merchant.id, session: sessionId, chargeId },
          'the outcome of an interrupted charge is unknown: recorded as error; reconcile it with the processor',
        );
        outcome = FAILED;
      }
      if (c) {
        // The outcome and its events in one transaction: a settler that stops after it leaves nothing to send again.
        const ev = await this.#outcomeEvents(merchant, c.mode, sessionId, session.cardToken, c.id, c.amount, outcome, true);
        const rec = await this.store.charges.recordOutcome(c.id, outcome, this.clock.now(), merchant.cvvBlockThreshold, ev);
        cvvBlocked = rec.cvvBlocked;
        if (rec.recorded) {
          this.opts.log?.warn(
            { audit: true, event: 'charge.reconciled', merchantId: c.merchantId, session: c.sessionId, chargeId: c.id, status: outcome.status },
            'interrupted charge reconciled with the processor',
          );
        }
        c = await this.store.charges.get(chargeId);
      }
    }
    const outcome: Outcome = c ? outcomeOf(c) : FAILED;
    const amount = c?.amount ?? session.amount ?? { value: 0, currency: 'EUR' };
    const card = await this.store.cards.get(session.merchantId, session.mode, session.cardToken);
    // Its effects may not have run (the server stopped after recording the outcome): at least once.
    if (card) {
      const cvc = await this.store.cvc.findUsable(session.merchantId, card.token, sessionId, this.clock.now());
      await this.#after(merchant, card, cvc, outcome, cvvBlocked);
    }
    const w = this.#present(chargeId, amount, outcome, c?.processor ?? this.processorFor(merchant).processor.name);
    const response = await this.sessions.settleCharge(sessionId, chargeId, w.result, w.claim, outcome.status === 'approved');
    if (response && c) await this.remember(c.id, c.merchantId, response);
    return response;
  }

  /**
   * A charge request with an Idempotency-Key that was used before in this
   * session: the first outcome, whatever token of the session the retry
   * carries. A charge interrupted by a crash (its session still owned after
   * its time) is reconciled with the processor, never sent again.
   */
  async #replayOf(c: ChargeRecord, claims: SessionClaims, requestHash: string): Promise<OperationResponse> {
    if (c.sessionId !== claims.sub || c.requestHash !== requestHash) throw new AppError('idempotency_key_reused');
    if (c.responseSealed) return this.#opened(c);
    const inProgress = () => new AppError('precondition_failed', 'A charge with this Idempotency-Key is still in progress.', { retryAfter: 1 });
    const session = await this.store.sessions.getById(c.sessionId);
    const lock = session?.chargeInFlight?.chargeId === c.id ? session.chargeInFlight : null;
    if (lock) {
      const merchant = await this.store.merchants.get(c.merchantId, c.mode);
      if (!merchant) throw new AppError('invalid_token');
      if (this.clock.now() - lock.since < this.processorFor(merchant).timeoutMs + IN_FLIGHT_MARGIN_MS) throw inProgress();
      let settled: OperationResponse | null;
      try {
        settled = await this.#settle(c.id, c.sessionId, lock.since, merchant);
      } catch (err) {
        if (err instanceof AppError) throw err;
        throw new AppError('processor_error', 'The outcome of the interrupted charge could not be checked; try again.', { cause: err, retryAfter: 5 });
      }
      // Null: another instance is settling it right now; its response is kept for this key in a moment.
      if (!settled) throw inProgress();
      return settled;
    }
    const again = await this.store.charges.get(c.id);
    if (again?.responseSealed) return this.#opened(again);
    if (!again || again.status === 'pending') throw inProgress();
    // Recorded and settled, but its response was never kept (the server stopped in between): the outcome with a new token.
    const w = this.#present(again.id, again.amount, outcomeOf(again), again.processor);
    const response = await this.sessions.rotateWithResult(again.sessionId, 'charge', w.result, w.claim, again.status === 'approved');
    await this.remember(again.id, again.merchantId, response);
    return response;
  }

  #opened(c: ChargeRecord): OperationResponse {
    return JSON.parse(this.keyring.open('replay', c.responseSealed!, `charge|${c.merchantId}|${c.id}`).toString('utf8')) as OperationResponse;
  }
}

/** No authorization: the processor failed, or never saw the charge. */
const FAILED: Outcome = { status: 'error', authorizationCode: null, declineCode: null, cvvResult: 'U', avsResult: 'U', networkTransactionId: null };

function outcomeOf(c: ChargeRecord): Outcome {
  return {
    status: c.status,
    authorizationCode: c.authorizationCode,
    declineCode: c.declineCode,
    cvvResult: c.cvvResult,
    avsResult: c.avsResult,
    networkTransactionId: c.networkTransactionId,
  };
}

function fromResult(r: ChargeResult): Outcome {
  return {
    status: r.status,
    authorizationCode: r.authorizationCode,
    declineCode: r.declineCode,
    cvvResult: r.cvvResult,
    avsResult: r.avsResult,
    networkTransactionId: r.networkTransactionId,
  };
}
