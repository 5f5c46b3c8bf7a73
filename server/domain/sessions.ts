import { hash } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type {
  CardRecord, CvvRetention, Mode, Operation, OperationResults, SessionRecord, SessionStatus, Store,
} from '../store/store.js';
import { cvvLengthFor } from './cards.js';
import { type Clock, epochSeconds, isoTime } from './clock.js';
import { newId } from './ids.js';
import type { Keyring } from './keyring.js';
import type { MerchantContext } from './merchants.js';
import { newJti, type SessionClaims, tokenHash, type TokenFailure, type TokenService } from './tokens.js';
import type { Vault } from './vault.js';

/** An operation needs the session's card: once deleted, nothing more can run (412). */
function present(card: CardRecord | null): CardRecord {
  if (!card) throw new AppError('precondition_failed', "The session's card has been deleted.");
  return card;
}

export const OPERATIONS: readonly Operation[] = ['collectCvv', 'threeDS', 'charge'];

/**
 * A charge in flight owns its session (API.md section 2): from the moment it
 * wins its token until its outcome is recorded, every other change to the
 * session is refused with this, and the caller retries shortly.
 */
export function chargeInProgress(): AppError {
  return new AppError('precondition_failed', 'A charge is in progress on this session; try again once its outcome is recorded.', { retryAfter: 1 });
}
/** How long the exact repeat of an operation call is answered with its first response. */
export const REPLAY_WINDOW_MS = 60_000;

export interface CreateSessionInput {
  card: string;
  operations: Operation[];
  amount?: { value: number; currency: string };
  reference?: string;
  require3DS?: boolean;
  requireCvv?: boolean;
  maxAttempts?: number;
  ttlSeconds?: number;
  cvvRetention?: CvvRetention;
  form?: string;
  returnUrl?: string;
  metadata?: Record<string, string>;
}

/** What the session's state machine shows the outside: `expired` is derived from time. */
export type PublicStatus = SessionStatus | 'expired';

export interface OperationResponse {
  result: Record<string, unknown>;
  token: string;
  session: { status: PublicStatus };
}

/** The part of an operation that runs once the token has been won: its result, and the claim kept in `res`. */
export interface OperationWork {
  result: Record<string, unknown>;
  claim: Record<string, unknown>;
  /** A charge that was approved completes the session. */
  complete?: boolean;
}

export interface OperationContext {
  session: SessionRecord;
  claims: SessionClaims;
  card: CardRecord;
  merchant: MerchantContext['merchant'];
  /** The jti the new token will carry (already current once `work` runs). */
  newJti: string;
}

export type ValidateResult =
  | { valid: true; current: boolean; claims: SessionClaims; session: Record<string, unknown> }
  | { valid: false; reason: TokenFailure | 'wrong_merchant' };

/**
 * Operations sessions: the state machine behind POST /CvvOperations and the
 * operation endpoints. A token is good only while its jti is the session's
 * current one; winning it is one conditional write (Store.claimOperation).
 */
export class SessionService {
  constructor(
    private readonly store: Store,
    private readonly tokens: TokenService,
    private readonly vault: Vault,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly opts: {
      publicBaseUrl: string; publicOrigin: string; log?: Logger;
      /** Webhook events of the session's life (wired to the outbox in deps.ts). */
      onEvent?: (merchantId: string, mode: Mode, type: 'session.canceled' | 'cvv.collected', data: Record<string, unknown>) => Promise<unknown>;
    },
  ) {}

  status(s: SessionRecord): PublicStatus {
    return s.status === 'active' && s.expiresAt <= this.clock.now() ? 'expired' : s.status;
  }

  async create(m: MerchantContext, input: CreateSessionInput): Promise<Record<string, unknown>> {
    const card = await this.store.getCard(m.merchant.id, m.mode, input.card);
    if (!card) throw new AppError('invalid_card', 'No such card.');
    const ops = input.operations;
    if (ops.includes('charge') && !input.amount) throw new AppError('invalid_amount', 'An amount is required when charge is allowed.');
    if (input.returnUrl !== undefined) {
      const origin = new URL(input.returnUrl).origin;
      if (!m.merchant.allowedOrigins.includes(origin)) throw new AppError('invalid_request', "returnUrl must be on one of the merchant's allowed origins.");
    }
    const form = input.form ?? 'hosted';
    if (form !== 'hosted') {
      const f = await this.store.getCustomForm(form);
      if (!f || f.merchantId !== m.merchant.id || f.mode !== m.mode) throw new AppError('invalid_request', 'No such custom form.');
    }
    const now = this.clock.now();
    const ttl = input.ttlSeconds ?? 900;
    const s: SessionRecord = {
      id: newId('cvo'), merchantId: m.merchant.id, mode: m.mode, cardToken: card.token, operations: [...ops],
      amount: input.amount ?? null, reference: input.reference ?? null, require3DS: input.require3DS ?? false,
      requireCvv: input.requireCvv ?? true, maxAttempts: input.maxAttempts ?? 3, cvvRetention: input.cvvRetention ?? 'single_use',
      form, returnUrl: input.returnUrl ?? null, metadata: input.metadata ?? null, status: 'active',
      jti: newJti(), seq: 0, tokenHash: '', attempts: { collectCvv: 0, threeDS: 0, charge: 0 }, results: {}, replay: null, chargeInFlight: null,
      // Token claims carry whole seconds; the session ends exactly when its tokens do.
      expiresAt: (epochSeconds(now) + ttl) * 1000, createdAt: now, updatedAt: now,
    };
    const token = await this.tokens.sign(this.claimsFor(s, card, s.jti, 0, undefined, {}));
    s.tokenHash = tokenHash(token);
    await this.store.insertSession(s);
    this.opts.log?.info({ audit: true, event: 'session.created', merchantId: m.merchant.id, session: s.id, jti: s.jti, mode: m.mode }, 'session created');
    const view = await this.view(s, card, false);
    const { results: _r, attempts: _a, cvv: _c, ...rest } = view;
    return {
      ...rest,
      token,
      formUrl: `${this.opts.publicBaseUrl}${form === 'hosted' ? '/hosted/cvv' : `/hosted/forms/${form}`}?session=${s.id}#token=${token}`,
    };
  }

  claimsFor(s: SessionRecord, card: CardRecord, jti: string, seq: number, prev: string | undefined, res: OperationResults): SessionClaims {
    return {
      iss: this.opts.publicBaseUrl, aud: s.merchantId, sub: s.id, jti, iat: epochSeconds(this.clock.now()), exp: epochSeconds(s.expiresAt),
      seq, mode: s.mode, ops: s.operations, ...(s.amount ? { amt: s.amount } : {}),
      card: { token: card.token, brand: card.brand, last4: card.last4, cvvLength: cvvLengthFor(card.brand) },
      ...(prev ? { prev } : {}), form: s.form, res,
    };
  }

  /** The session as GET /CvvOperations/{id} shows it. */
  async view(s: SessionRecord, card?: CardRecord | null, withCvv = true): Promise<Record<string, unknown> & { results: unknown; attempts: unknown; cvv: unknown }> {
    const c = card === undefined ? await this.store.getCard(s.merchantId, s.mode, s.cardToken) : card;
    const status = this.status(s);
    const cvv = withCvv && status === 'active' ? await this.vault.cvvState(s.merchantId, s.cardToken, s.id) : { available: false };
    const { id: _id, ...cvvView } = cvv as { id?: string };
    const attempts = Object.fromEntries(s.operations.map((op) => [op, { used: s.attempts[op], max: s.maxAttempts }]));
    // A charge at the processor right now is shown as such: its outcome replaces this once recorded.
    const results = s.chargeInFlight ? { ...s.results, charge: { status: 'pending', chargeId: s.chargeInFlight.chargeId } } : s.results;
    return {
      id: s.id, object: 'cvv_operations', status, mode: s.mode, expiresAt: isoTime(s.expiresAt), operations: s.operations,
      amount: s.amount,
      card: c ? { token: c.token, brand: c.brand, last4: c.last4, expMonth: c.expMonth, expYear: c.expYear } : { token: s.cardToken, deleted: true },
      reference: s.reference, require3DS: s.require3DS, requireCvv: s.requireCvv, maxAttempts: s.maxAttempts,
      cvvRetention: s.cvvRetention, form: s.form, returnUrl: s.returnUrl, metadata: s.metadata ?? {},
      results, attempts, cvv: cvvView,
      createdAt: isoTime(s.createdAt), updatedAt: isoTime(s.updatedAt),
    };
  }

  /** The session of this merchant and mode, or 404 (another merchant's answers exactly like an unknown one). */
  async get(m: MerchantContext, id: string): Promise<SessionRecord> {
    const s = await this.store.getSession(m.merchant.id, m.mode, id);
    if (!s) throw new AppError('not_found', 'No such session.');
    return s;
  }

  async validateToken(m: MerchantContext, token: string): Promise<ValidateResult> {
    const out = await this.tokens.verify(token);
    if (!out.ok && out.reason !== 'expired') return { valid: false, reason: out.reason };
    const claims = out.claims!;
    if (claims.aud !== m.merchant.id || claims.mode !== m.mode) return { valid: false, reason: 'wrong_merchant' };
    if (!out.ok) return { valid: false, reason: 'expired' };
    const found = await this.store.getSessionWithCard(claims.sub);
    const s = found?.session;
    if (!s || s.merchantId !== m.merchant.id || s.mode !== m.mode) return { valid: false, reason: 'wrong_merchant' };
    return { valid: true, current: s.jti === claims.jti && this.status(s) !== 'expired', claims, session: await this.view(s, found.card) };
  }

  #assertOpen(s: SessionRecord): void {
    const st = this.status(s);
    if (st === 'completed') throw new AppError('session_completed');
    if (st === 'canceled') throw new AppError('session_canceled');
    if (st === 'expired') throw new AppError('session_expired');
  }

  /** POST /CvvOperations/{id}/token: a new current token; every earlier token stops working. */
  async reissue(m: MerchantContext, id: string): Promise<{ token: string }> {
    for (let i = 0; i < 5; i++) {
      const s = await this.get(m, id);
      this.#assertOpen(s);
      if (s.chargeInFlight) throw chargeInProgress();
      const card = await this.#card(s);
      const jti = newJti();
      const token = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, s.tokenHash, s.results));
      if (await this.store.rotateToken({ id: s.id, jti: s.jti, newJti: jti, tokenHash: tokenHash(token), now: this.clock.now() })) {
        this.opts.log?.info({ audit: true, event: 'token.reissued', merchantId: m.merchant.id, session: s.id, jti, seq: s.seq + 1 }, 'token reissued');
        return { token };
      }
    }
    throw new AppError('token_superseded', 'The session changed while reissuing; try again.');
  }

  async cancel(m: MerchantContext, id: string): Promise<SessionRecord> {
    const s = await this.get(m, id);
    if (s.status !== 'canceled') {
      this.#assertOpen(s);
      if (s.chargeInFlight) throw chargeInProgress();
      if (!(await this.store.cancelSession(m.merchant.id, m.mode, id, this.clock.now()))) {
        const again = await this.get(m, id);
        if (again.status !== 'canceled') this.#assertOpen(again);
        if (again.chargeInFlight) throw chargeInProgress();
      } else {
        this.opts.log?.info({ audit: true, event: 'session.canceled', merchantId: m.merchant.id, session: id }, 'session canceled');
        await this.opts.onEvent?.(m.merchant.id, m.mode, 'session.canceled', { session: id });
      }
    }
    await this.vault.destroySessionCvv(m.merchant.id, id, 'session_canceled');
    return this.get(m, id);
  }

  async deleteCvv(m: MerchantContext, id: string): Promise<void> {
    await this.get(m, id);
    const n = await this.store.deleteSessionCvvUnlessCharging(id);
    if (n === null) throw chargeInProgress();
    if (n === 0) throw new AppError('cvc_session_not_found');
    this.opts.log?.info({ audit: true, event: 'cvv.destroyed', merchantId: m.merchant.id, session: id, count: n, reason: 'deleted_by_merchant' }, 'CVV destroyed');
  }

  async #card(s: SessionRecord): Promise<CardRecord> {
    return present(await this.store.getCard(s.merchantId, s.mode, s.cardToken));
  }

  /** The hash that decides whether an operation call is the exact repeat of an earlier one. */
  static requestHash(op: Operation, body: unknown): string {
    return hash('sha256', `${op}\n${JSON.stringify(body ?? {})}`, 'base64url');
  }

  /**
   * The rotation machinery every operation goes through (API.md section 4):
   * given a verified bearer token, insist it is current (or answer the exact
   * repeat of its call), check the operation, the session and the attempts,
   * let `prepare` refuse with a 4xx while the token is still untouched, win
   * the token with one conditional write, run `work`, sign the next token and
   * record the outcome. Only a 200 rotates; an error after the token was won
   * puts it back.
   */
  async runOperation(p: {
    op: Operation;
    /** The bearer token, already verified (TokenService.verify) by the caller. */
    token: string;
    claims: SessionClaims;
    body: unknown;
    origin: string | undefined;
    /** false for a call that only fetches an outcome (threeDS/result): no attempt is counted. */
    countAttempt?: boolean;
    prepare?: (ctx: Omit<OperationContext, 'newJti'>) => Promise<void>;
    /**
     * Wins the token in one unit with whatever must commit with it (a charge's
     * intent and ownership of the session); default: Store.claimOperation.
     * False when the token was not won; a 4xx thrown here leaves it untouched.
     */
    claim?: (ctx: Omit<OperationContext, 'newJti'>, c: { id: string; jti: string; newJti: string; now: number }) => Promise<boolean>;
    work: (ctx: OperationContext) => Promise<OperationWork>;
    /** Undoes the claim after `work` failed; default: Store.unclaimOperation (a charge decides for itself). */
    unclaim?: (c: { id: string; jti: string; oldJti: string; now: number }) => Promise<void>;
  }): Promise<OperationResponse> {
    const claims = p.claims;
    const found = await this.store.getSessionWithCard(claims.sub);
    const s = found?.session;
    if (!s || s.merchantId !== claims.aud || s.mode !== claims.mode) throw new AppError('invalid_token');
    const merchant = await this.store.getMerchant(s.merchantId, s.mode);
    if (!merchant) throw new AppError('invalid_token');
    if (p.origin !== undefined && p.origin !== this.opts.publicOrigin && !merchant.allowedOrigins.includes(p.origin)) {
      throw new AppError('origin_not_allowed');
    }
    const hash = SessionService.requestHash(p.op, p.body);
    if (s.chargeInFlight) throw chargeInProgress();
    if (claims.jti !== s.jti) return this.#replayOrSuperseded(s, claims, hash);
    if (!claims.ops.includes(p.op)) throw new AppError('operation_not_allowed');
    this.#assertOpen(s);
    const counts = p.countAttempt !== false;
    if (counts && s.attempts[p.op] >= s.maxAttempts) throw new AppError('attempts_exhausted');
    const card = present(found.card);
    await p.prepare?.({ session: s, claims, card, merchant });

    const jti = newJti();
    const now = this.clock.now();
    const ctx = { session: s, claims, card, merchant };
    const won = p.claim
      ? await p.claim(ctx, { id: s.id, jti: claims.jti, newJti: jti, now })
      : await this.store.claimOperation({ id: s.id, jti: claims.jti, newJti: jti, op: p.op, now, countAttempt: counts });
    if (!won) {
      const again = await this.store.getSessionById(s.id);
      if (!again) throw new AppError('invalid_token');
      if (again.chargeInFlight) throw chargeInProgress();
      if (again.jti !== claims.jti) return this.#replayOrSuperseded(again, claims, hash);
      this.#assertOpen(again);
      if (again.attempts[p.op] >= again.maxAttempts) throw new AppError('attempts_exhausted');
      throw new AppError('token_superseded');
    }
    let work: OperationWork;
    try {
      work = await p.work({ ...ctx, newJti: jti });
    } catch (err) {
      const back = { id: s.id, jti, oldJti: claims.jti, now: this.clock.now() };
      if (p.unclaim) await p.unclaim(back);
      else await this.store.unclaimOperation({ ...back, op: p.op, countAttempt: counts });
      throw err;
    }
    const results: OperationResults = { ...s.results, [p.op]: work.claim };
    const next = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, tokenHash(p.token), results));
    const status: PublicStatus = work.complete ? 'completed' : this.status(s);
    const response: OperationResponse = { result: work.result, token: next, session: { status } };
    const sealed = this.keyring.seal('replay', JSON.stringify({ producedJti: jti, response }), `replay|${s.id}|${claims.jti}`);
    const done = await this.store.finishOperation({
      id: s.id, jti, results, tokenHash: tokenHash(next), now: this.clock.now(), complete: work.complete === true,
      replay: { jti: claims.jti, hash, sealed, at: this.clock.now() },
    });
    if (!done) {
      // The session was canceled (or expired) while the operation ran: its outcome stands, but no token is handed out.
      const again = await this.store.getSessionById(s.id);
      if (again) this.#assertOpen(again);
      throw new AppError('token_superseded');
    }
    this.opts.log?.info({ audit: true, event: 'operation', merchantId: s.merchantId, session: s.id, op: p.op, outcome: work.claim.status, fromJti: claims.jti, jti, seq: s.seq + 1 }, 'operation ran; token rotated');
    return response;
  }

  /**
   * Hands out a new current token carrying an outcome that was settled
   * outside an operation call (a charge reconciled after a crash): one
   * conditional rotation from whatever token is current.
   */
  async rotateWithResult(sessionId: string, op: Operation, result: Record<string, unknown>, claim: Record<string, unknown>, complete: boolean): Promise<OperationResponse> {
    for (let i = 0; i < 5; i++) {
      const s = await this.store.getSessionById(sessionId);
      if (!s) throw new AppError('invalid_token');
      this.#assertOpen(s);
      if (s.chargeInFlight) throw chargeInProgress();
      const card = await this.#card(s);
      const jti = newJti();
      const results: OperationResults = { ...s.results, [op]: claim };
      const token = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, s.tokenHash, results));
      const now = this.clock.now();
      if (!(await this.store.rotateToken({ id: s.id, jti: s.jti, newJti: jti, tokenHash: tokenHash(token), now }))) continue;
      const response: OperationResponse = { result, token, session: { status: complete ? 'completed' : 'active' } };
      const sealed = this.keyring.seal('replay', JSON.stringify({ producedJti: jti, response }), `replay|${s.id}|-`);
      await this.store.finishOperation({ id: s.id, jti, results, tokenHash: tokenHash(token), now, complete, replay: { jti: '-', hash: '-', sealed, at: now } });
      this.opts.log?.info({ audit: true, event: 'operation.reconciled', merchantId: s.merchantId, session: s.id, op, jti, seq: s.seq + 1 }, 'outcome settled; token rotated');
      return response;
    }
    throw new AppError('token_superseded');
  }

  /**
   * Ends a charge's ownership of its session from outside the operation call
   * (crash recovery, or a keyed retry after one): the outcome recorded in the
   * session's results and a new current token carrying it, in one conditional
   * write. Null when `chargeId` no longer owns the session (settled already).
   */
  async settleCharge(sessionId: string, chargeId: string, result: Record<string, unknown>, claim: Record<string, unknown>, complete: boolean): Promise<OperationResponse | null> {
    const s = await this.store.getSessionById(sessionId);
    if (!s || s.chargeInFlight?.chargeId !== chargeId) return null;
    const card = await this.#card(s);
    const jti = newJti();
    const results: OperationResults = { ...s.results, charge: claim };
    const token = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, s.tokenHash, results));
    if (!(await this.store.settleChargeLock({ id: s.id, chargeId, newJti: jti, tokenHash: tokenHash(token), results, complete, now: this.clock.now() }))) return null;
    this.opts.log?.info({ audit: true, event: 'operation.reconciled', merchantId: s.merchantId, session: s.id, op: 'charge', chargeId, jti, seq: s.seq + 1 }, 'charge outcome settled; token rotated');
    return { result, token, session: { status: complete ? 'completed' : this.status(s) } };
  }

  /** An old token: the exact repeat of its call within 60 s gets the same response, while the token it produced is current. */
  async #replayOrSuperseded(s: SessionRecord, claims: SessionClaims, hash: string): Promise<OperationResponse> {
    const r = s.replay;
    if (r && r.jti === claims.jti && r.hash === hash && this.clock.now() - r.at <= REPLAY_WINDOW_MS) {
      try {
        const stored = JSON.parse(this.keyring.open('replay', r.sealed, `replay|${s.id}|${claims.jti}`).toString('utf8')) as { producedJti: string; response: OperationResponse };
        if (stored.producedJti === s.jti) {
          this.opts.log?.info({ audit: true, event: 'operation.replayed', merchantId: s.merchantId, session: s.id, fromJti: claims.jti }, 'operation response replayed');
          return stored.response;
        }
      } catch {
        // An unreadable replay record is no replay.
      }
    }
    throw new AppError('token_superseded');
  }
}
