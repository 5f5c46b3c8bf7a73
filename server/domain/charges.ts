import { createHash } from 'node:crypto';
import { type ChargeResult, type Processor, ProcessorError } from '../connectors/processors/processor.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChargeRecord, CvcSessionRecord, CvvStatusRecord, MerchantRecord, Store } from '../store/store.js';
import type { CardService } from './cards.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Keyring } from './keyring.js';
import type { OperationContext, OperationResponse, OperationWork, SessionService } from './sessions.js';
import type { SessionClaims } from './tokens.js';
import type { ThreeDSService } from './three-ds.js';
import type { Vault } from './vault.js';
import type { WebhookService } from './webhooks.js';

export interface ChargeBody {
  amount?: { value: number; currency: string };
}

/** What prepare found, handed to work (read once, before the token was won). */
export interface ChargePlan {
  amount: { value: number; currency: string };
  cvc: CvcSessionRecord | null;
  threeDS: Awaited<ReturnType<ThreeDSService['forCharge']>>;
  /** The card number's CVV status as prepare read it. */
  cvvStatus: CvvStatusRecord | null;
}

type Outcome = Pick<ChargeRecord, 'status' | 'authorizationCode' | 'declineCode' | 'cvvResult' | 'avsResult' | 'networkTransactionId'>;

/** How long a pending charge may be in flight before a retry treats it as interrupted (crash recovery). */
const IN_FLIGHT_MARGIN_MS = 2000;

/**
 * Charges: preconditions, then a durable intent, the CVV used per its
 * retention, the processor called once per attempt, a durable outcome, the
 * CVV destroyed after authorization in live mode, and CVV blocking fed.
 * With an Idempotency-Key a retry gets the first outcome (reconciled with the
 * processor after a crash) and never a second charge.
 */
export class ChargeService {
  constructor(
    private readonly store: Store,
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
    return createHash('sha256').update(JSON.stringify(body.amount ?? null)).digest('base64url');
  }

  /** Checks that must pass before the token is touched (each a 4xx that leaves the token current). */
  async prepare(ctx: Omit<OperationContext, 'newJti'>, body: ChargeBody): Promise<ChargePlan> {
    const { session, merchant, card } = ctx;
    const ceiling = session.amount;
    if (!ceiling) throw new AppError('invalid_amount', 'The session has no amount to charge.');
    const amount = body.amount ?? ceiling;
    if (amount.currency !== ceiling.currency) throw new AppError('invalid_amount', `The currency must be ${ceiling.currency}.`);
    if (amount.value > ceiling.value) throw new AppError('invalid_amount', 'The amount exceeds the session amount.');
    if (session.mode === 'live' && this.opts.production && (merchant.processor as { type?: string }).type !== 'http') {
      throw new AppError('precondition_failed', 'Live charges need an http processor (the simulator is for test mode).');
    }
    const cvvStatus = await this.vault.assertNotBlocked(merchant.id, card.fingerprint);
    const cvc = await this.store.findUsableCvcSession(merchant.id, card.token, session.id, this.clock.now());
    if (session.requireCvv && !cvc) throw new AppError('precondition_failed', 'A CVV must be collected before the charge.');
    const threeDS = await this.threeDS.forCharge(session.id);
    if (session.require3DS && (!threeDS || (threeDS.status !== 'Y' && threeDS.status !== 'A'))) {
      throw new AppError('precondition_failed', 'A successful 3-D Secure authentication (Y or A) is required first.');
    }
    return { amount, cvc, threeDS, cvvStatus };
  }

  /** The operation's work, once the token is won: one processor call for this attempt. */
  async work(ctx: OperationContext, plan: ChargePlan, idempotencyKey: string | null, requestHash: string): Promise<OperationWork & { chargeId: string }> {
    const { session, merchant, card } = ctx;
    const { amount, cvc, threeDS } = plan;
    const { processor } = this.processorFor(merchant);
    const now = this.clock.now();
    const chargeId = newId('ch');
    const charge: ChargeRecord = {
      id: chargeId, merchantId: merchant.id, sessionId: session.id, mode: session.mode, idempotencyKey, requestHash,
      providerKey: idempotencyKey ? `cvvops_${createHash('sha256').update(`${merchant.id}|${session.mode}|${idempotencyKey}`).digest('hex').slice(0, 40)}` : chargeId,
      processor: processor.name, amount, status: 'pending', authorizationCode: null, declineCode: null, cvvResult: null, avsResult: null,
      networkTransactionId: null, responseSealed: null, createdAt: now, updatedAt: now,
    };
    if (!(await this.store.insertChargeIntent(charge))) throw new AppError('idempotency_key_reused', 'This Idempotency-Key is already in use.');
    // The CVC session prepare found is taken now (atomically: gone by now, it is 410 cvc_session_not_found).
    const cvv = cvc ? await this.vault.useCvv(cvc, 'charge') : null;
    const opened = this.cards.open(card);
    let outcome: Outcome;
    try {
      const r = await processor.charge({
        chargeId, idempotencyKey: charge.providerKey, mode: session.mode, amount,
        card: { number: opened.number, brand: card.brand, expMonth: card.expMonth, expYear: card.expYear, holderName: opened.holderName },
        cvv, threeDS: threeDS && (threeDS.status === 'Y' || threeDS.status === 'A') ? threeDS : null, reference: session.reference,
      }, AbortSignal.timeout(this.processorFor(merchant).timeoutMs));
      outcome = fromResult(r);
    } catch (err) {
      if (!(err instanceof ProcessorError)) throw err;
      this.opts.log?.warn({ merchantId: merchant.id, session: session.id, chargeId, err: err.message }, 'processor failed');
      outcome = { status: 'error', authorizationCode: null, declineCode: null, cvvResult: cvv ? 'U' : 'P', avsResult: 'U', networkTransactionId: null };
    }
    await this.store.finishCharge(chargeId, outcome, this.clock.now());
    await this.#after(merchant, session.id, card, cvc, outcome, chargeId, amount, plan.cvvStatus);
    return { ...this.#present(chargeId, amount, outcome, processor.name), complete: outcome.status === 'approved', chargeId };
  }

  async #after(merchant: MerchantRecord, sessionId: string, card: OperationContext['card'], cvc: Awaited<ReturnType<Store['findUsableCvcSession']>>, outcome: Outcome, chargeId: string, amount: { value: number; currency: string }, knownStatus?: CvvStatusRecord | null): Promise<void> {
    if (outcome.status === 'approved' || outcome.status === 'declined') {
      // An authorization response arrived: in live mode the CVV is destroyed now, whatever the retention.
      if (cvc) await this.vault.afterAuthorization(cvc);
      if (await this.vault.recordCvvResult(merchant, card, { cvvResult: outcome.cvvResult, declineCode: outcome.declineCode }, knownStatus)) {
        await this.webhooks.emit(merchant.id, card.mode, 'cvv.blocked', { card: card.token, failedAttempts: merchant.cvvBlockThreshold });
      }
    }
    const data = { session: sessionId, chargeId, status: outcome.status, amount, declineCode: outcome.declineCode, cvvResult: outcome.cvvResult };
    await this.webhooks.emit(merchant.id, card.mode, outcome.status === 'approved' ? 'charge.succeeded' : 'charge.failed', data);
    if (outcome.status === 'approved') await this.webhooks.emit(merchant.id, card.mode, 'session.completed', { session: sessionId, chargeId });
  }

  #present(chargeId: string, amount: { value: number; currency: string }, o: Outcome, processor: string): OperationWork {
    const result = {
      status: o.status, chargeId, amount, authorizationCode: o.authorizationCode, cvvResult: o.cvvResult, avsResult: o.avsResult,
      networkTransactionId: o.networkTransactionId, declineCode: o.declineCode, processor,
    };
    return {
      result,
      claim: { status: o.status, chargeId, amount, authorizationCode: o.authorizationCode, cvvResult: o.cvvResult, declineCode: o.declineCode },
    };
  }

  /** Keeps the response of a keyed charge (encrypted: it holds a token) for retries. */
  async remember(chargeId: string, merchantId: string, response: OperationResponse): Promise<void> {
    await this.store.setChargeResponse(chargeId, this.keyring.seal('replay', JSON.stringify(response), `charge|${merchantId}|${chargeId}`));
  }

  /**
   * A charge request with an Idempotency-Key that was used before in this
   * session: the first outcome, whatever token of the session the retry
   * carries. A charge interrupted by a crash (still pending after its time)
   * is reconciled with the processor, never sent again.
   */
  async replayByKey(claims: SessionClaims, key: string, requestHash: string): Promise<OperationResponse | null> {
    const c = await this.store.findChargeByIdempotencyKey(claims.aud, claims.mode, key);
    if (!c) return null;
    if (c.sessionId !== claims.sub || c.requestHash !== requestHash) throw new AppError('idempotency_key_reused');
    if (c.responseSealed) {
      return JSON.parse(this.keyring.open('replay', c.responseSealed, `charge|${c.merchantId}|${c.id}`).toString('utf8')) as OperationResponse;
    }
    const merchant = await this.store.getMerchant(c.merchantId);
    if (!merchant) throw new AppError('invalid_token');
    const { processor, timeoutMs } = this.processorFor(merchant);
    let outcome: Outcome;
    if (c.status === 'pending') {
      if (this.clock.now() - c.createdAt < timeoutMs + IN_FLIGHT_MARGIN_MS) {
        throw new AppError('precondition_failed', 'A charge with this Idempotency-Key is still in progress.', { retryAfter: 1 });
      }
      let found: ChargeResult | null;
      try {
        found = await processor.lookup(c.providerKey, c.mode, AbortSignal.timeout(timeoutMs));
      } catch (err) {
        throw new AppError('processor_error', 'The outcome of the interrupted charge could not be checked; try again.', { cause: err, retryAfter: 5 });
      }
      // Unknown to the processor: it never charged; the attempt ends as an error and is never resent.
      outcome = found ? fromResult(found) : { status: 'error', authorizationCode: null, declineCode: null, cvvResult: 'U', avsResult: 'U', networkTransactionId: null };
      if (await this.store.finishCharge(c.id, outcome, this.clock.now())) {
        this.opts.log?.warn({ audit: true, event: 'charge.reconciled', merchantId: c.merchantId, session: c.sessionId, chargeId: c.id, status: outcome.status }, 'interrupted charge reconciled with the processor');
        const session = await this.store.getSessionById(c.sessionId);
        const card = session ? await this.store.getCard(session.merchantId, session.mode, session.cardToken) : null;
        if (card) {
          const cvc = await this.store.findUsableCvcSession(c.merchantId, card.token, c.sessionId, this.clock.now());
          await this.#after(merchant, c.sessionId, card, cvc, outcome, c.id, c.amount);
        }
      }
    } else {
      outcome = { status: c.status, authorizationCode: c.authorizationCode, declineCode: c.declineCode, cvvResult: c.cvvResult, avsResult: c.avsResult, networkTransactionId: c.networkTransactionId };
      // Finished but never answered (the server stopped after recording the outcome): its effects may not have run.
      // They are at-least-once: a webhook may repeat, which receivers must tolerate anyway.
      const session = await this.store.getSessionById(c.sessionId);
      const card = session ? await this.store.getCard(session.merchantId, session.mode, session.cardToken) : null;
      if (card && session?.status === 'active') {
        const cvc = await this.store.findUsableCvcSession(c.merchantId, card.token, c.sessionId, this.clock.now());
        await this.#after(merchant, c.sessionId, card, cvc, outcome, c.id, c.amount);
      }
    }
    const w = this.#present(c.id, c.amount, outcome, c.processor);
    const response = await this.sessions.rotateWithResult(c.sessionId, 'charge', w.result, w.claim, outcome.status === 'approved');
    await this.remember(c.id, c.merchantId, response);
    return response;
  }
}

function fromResult(r: ChargeResult): Outcome {
  return {
    status: r.status, authorizationCode: r.authorizationCode, declineCode: r.declineCode, cvvResult: r.cvvResult,
    avsResult: r.avsResult, networkTransactionId: r.networkTransactionId,
  };
}
