import { hash } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type {
  CardRecord,
  CvcSessionRecord,
  IdempotencyRecord,
  CvvRetention,
  CvvStatusRecord,
  Mode,
  Operation,
  OperationContextRecord,
  OperationResults,
  OperationWrite,
  EventWrite,
  HistoryRecord,
  SessionRecord,
  SessionStatus,
  Store,
  TdsRecord,
  MerchantRecord,
} from '../store/store.js';
import type { WebhookEvent } from './webhooks.js';
import { cvvLengthFor } from './cards.js';
import { claimOutcome, historyEntry, historyView } from './history.js';
import { type Clock, epochSeconds, isoTime } from './clock.js';
import { newId } from './ids.js';
import type { Keyring, Sealed } from './keyring.js';
import type { MerchantContext } from './merchants.js';
import { newJti, type SessionClaims, tokenHash, type TokenFailure, type TokenService } from './tokens.js';
import type { Vault } from './vault.js';
import type { IdempotencyService } from './idempotency.js';

/** The endpoint an Idempotency-Key of create is scoped to (as the HTTP middleware scopes the others). */
const CREATE_ENDPOINT = 'POST /CvvOperations';

/** An operation needs the session's card: once deleted, nothing more can run (412). */
function present(card: CardRecord | null): CardRecord {
  if (!card) throw new AppError('precondition_failed', "The session's card has been deleted.");
  return card;
}

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
  /** Rows to write with the token rotation, in the same transaction (not for a charge). */
  writes?: OperationWrite[];
  /** Webhook events of the operation, written to the outbox in the same transaction (not for a charge). */
  events?: PendingEvent[];
  /** Runs once the transaction has committed (audit lines of what it wrote). */
  afterCommit?: () => void;
}

/** What finishes an operation whose token was won first (a charge): the session's new state under the token it produced. */
export interface FinishUnit {
  jti: string;
  results: OperationResults;
  tokenHash: string;
  now: number;
  complete: boolean;
  replay: { jti: string; hash: string; sealed: Sealed; at: number };
  /** The response this call answers with (a keyed charge keeps it with its outcome). */
  response: OperationResponse;
  /** The operation's trail entry, for `finish` to write with the outcome. */
  history: HistoryRecord;
}

/** A webhook event an operation raises: written to the outbox with the state change that raised it. */
export interface PendingEvent {
  type: WebhookEvent;
  data: Record<string, unknown>;
}

/** What an operation read before anything was written (Store.getOperationContext), checked. */
export interface ReadContext {
  session: SessionRecord;
  claims: SessionClaims;
  card: CardRecord;
  merchant: MerchantContext['merchant'];
  cvvStatus: CvvStatusRecord | null;
  latestTds: TdsRecord | null;
  usableCvc: CvcSessionRecord | null;
}

export interface OperationContext extends ReadContext {
  /** The jti the new token will carry. */
  newJti: string;
}

export type ValidateResult =
  { valid: true; current: boolean; claims: SessionClaims; session: Record<string, unknown> } | { valid: false; reason: TokenFailure | 'wrong_merchant' };

/**
 * Operations sessions: the state machine behind POST /CvvOperations and the
 * operation endpoints. A token is good only while its jti is the session's
 * current one; winning it is one conditional write, the first statement of
 * the operation's transaction (Store.sessions.commitOperation, or Store.charges.begin for a charge).
 */
export class SessionService {
  constructor(
    private readonly store: Pick<Store, 'cards' | 'charges' | 'cvc' | 'forms' | 'merchants' | 'sessions'>,
    private readonly tokens: TokenService,
    private readonly vault: Vault,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly opts: {
      publicBaseUrl: string;
      publicOrigin: string;
      log?: Logger;
      /** Idempotency-Key on create: the record is read with the card and written with the session. */
      idempotency?: IdempotencyService;
      /** Outbox rows for an operation's events (wired to WebhookService.prepare in deps.ts), written in its transaction. */
      prepareEvents?: (merchantId: string, mode: Mode, events: PendingEvent[]) => Promise<EventWrite[]>;
    },
  ) {}

  status(s: SessionRecord): PublicStatus {
    return s.status === 'active' && s.expiresAt <= this.clock.now() ? 'expired' : s.status;
  }

  /**
   * POST /CvvOperations: one read (the card and, with an Idempotency-Key, the
   * key's record) and one write (the session and the key's record with the
   * response, in one transaction). A repeat of a keyed request gets the first
   * response (`replayed`).
   */
  async create(
    m: MerchantContext,
    input: CreateSessionInput,
    opts: { idempotencyKey?: string; requestId?: string } = {},
  ): Promise<{ status: number; body: Record<string, unknown>; replayed: boolean }> {
    const idem = opts.idempotencyKey !== undefined ? this.#keyed(m, opts.idempotencyKey, input) : null;
    const read = () =>
      this.store.sessions.getCreateContext({
        merchantId: m.merchant.id,
        mode: m.mode,
        cardToken: input.card,
        ...(idem ? { idempotency: { endpoint: idem.endpoint, key: idem.key, now: this.clock.now() } } : {}),
      });
    const { card, idempotency: found } = await read();
    if (idem && found) return { ...idem.replay(found), replayed: true };
    if (!card) throw new AppError('invalid_card', 'No such card.');
    const ops = input.operations;
    if (ops.includes('charge') && !input.amount) throw new AppError('invalid_amount', 'An amount is required when charge is allowed.');
    if (input.returnUrl !== undefined) {
      const origin = new URL(input.returnUrl).origin;
      if (!m.merchant.allowedOrigins.includes(origin)) throw new AppError('invalid_request', "returnUrl must be on one of the merchant's allowed origins.");
    }
    const form = input.form ?? 'hosted';
    if (form !== 'hosted') {
      const f = await this.store.forms.get(form);
      if (!f || f.merchantId !== m.merchant.id || f.mode !== m.mode) throw new AppError('invalid_request', 'No such custom form.');
    }
    const now = this.clock.now();
    const ttl = input.ttlSeconds ?? 900;
    const s: SessionRecord = {
      id: newId('cvo'),
      merchantId: m.merchant.id,
      mode: m.mode,
      cardToken: card.token,
      operations: [...ops],
      amount: input.amount ?? null,
      reference: input.reference ?? null,
      require3DS: input.require3DS ?? false,
      requireCvv: input.requireCvv ?? true,
      maxAttempts: input.maxAttempts ?? 3,
      cvvRetention: input.cvvRetention ?? 'single_use',
      form,
      returnUrl: input.returnUrl ?? null,
      metadata: input.metadata ?? null,
      status: 'active',
      jti: newJti(),
      seq: 0,
      tokenHash: '',
      attempts: { collectCvv: 0, threeDS: 0, charge: 0 },
      results: {},
      replay: null,
      chargeInFlight: null,
      // Token claims carry whole seconds; the session ends exactly when its tokens do.
      expiresAt: (epochSeconds(now) + ttl) * 1000,
      createdAt: now,
      updatedAt: now,
    };
    const token = await this.tokens.sign(this.claimsFor(s, card, s.jti, 0, undefined, {}));
    s.tokenHash = tokenHash(token);
    const view = await this.view(s, card, false);
    const { results: _r, attempts: _a, cvv: _c, ...rest } = view;
    const body = {
      ...rest,
      token,
      formUrl: `${this.opts.publicBaseUrl}${form === 'hosted' ? '/hosted/cvv' : `/hosted/forms/${form}`}?session=${s.id}#token=${token}`,
    };
    const created = historyEntry({ session: s, type: 'created', requestId: opts.requestId, at: now });
    if (!(await this.store.sessions.insert(s, idem?.record(201, body), [created]))) {
      // A concurrent request with the same key was written first: its response, or 409.
      const again = (await read()).idempotency;
      if (!idem || !again) throw new AppError('idempotency_key_reused', 'A request with this Idempotency-Key is still in progress.', { retryAfter: 1 });
      return { ...idem.replay(again), replayed: true };
    }
    this.opts.log?.info({ audit: true, event: 'session.created', merchantId: m.merchant.id, session: s.id, jti: s.jti, mode: m.mode }, 'session created');
    return { status: 201, body, replayed: false };
  }

  /** An Idempotency-Key of create: its scope (merchant, mode and endpoint), the request's fingerprint, and how to replay or record it. */
  #keyed(m: MerchantContext, key: string, input: CreateSessionInput) {
    const svc = this.opts.idempotency;
    if (!svc) throw new Error('SessionService: an Idempotency-Key needs the IdempotencyService');
    const endpoint = `${m.mode}:${CREATE_ENDPOINT}`;
    const requestHash = svc.fingerprint(CREATE_ENDPOINT, input);
    return {
      endpoint,
      key,
      replay: (found: IdempotencyRecord) => svc.replay(found, m.merchant.id, endpoint, key, requestHash) as { status: number; body: Record<string, unknown> },
      record: (status: number, body: unknown) => svc.record(m.merchant.id, endpoint, key, requestHash, status, body),
    };
  }

  claimsFor(s: SessionRecord, card: CardRecord, jti: string, seq: number, prev: string | undefined, res: OperationResults): SessionClaims {
    return {
      iss: this.opts.publicBaseUrl,
      aud: s.merchantId,
      sub: s.id,
      jti,
      iat: epochSeconds(this.clock.now()),
      exp: epochSeconds(s.expiresAt),
      seq,
      mode: s.mode,
      ops: s.operations,
      ...(s.amount ? { amt: s.amount } : {}),
      card: { token: card.token, brand: card.brand, last4: card.last4, cvvLength: cvvLengthFor(card.brand) },
      ...(prev ? { prev } : {}),
      form: s.form,
      res,
    };
  }

  /** The session as GET /CvvOperations/{id} shows it. */
  /** `usableCvc`: the CVC session a charge would use, when the caller read it already (undefined: read it here). */
  async view(
    s: SessionRecord,
    card?: CardRecord | null,
    withCvv = true,
    usableCvc?: CvcSessionRecord | null,
  ): Promise<Record<string, unknown> & { results: unknown; attempts: unknown; cvv: unknown }> {
    const c = card === undefined ? await this.store.cards.get(s.merchantId, s.mode, s.cardToken) : card;
    const status = this.status(s);
    const cvv =
      !withCvv || status !== 'active'
        ? { available: false }
        : usableCvc !== undefined
          ? usableCvc
            ? { available: true, id: usableCvc.id, expiresAt: isoTime(usableCvc.expiresAt) }
            : { available: false }
          : await this.vault.cvvState(s.merchantId, s.cardToken, s.id);
    const { id: _id, ...cvvView } = cvv as { id?: string };
    const attempts = Object.fromEntries(s.operations.map((op) => [op, { used: s.attempts[op], max: s.maxAttempts }]));
    // A charge at the processor right now is shown as such: its outcome replaces this once recorded.
    const results = s.chargeInFlight ? { ...s.results, charge: { status: 'pending', chargeId: s.chargeInFlight.chargeId } } : s.results;
    return {
      id: s.id,
      object: 'cvv_operations',
      status,
      mode: s.mode,
      expiresAt: isoTime(s.expiresAt),
      operations: s.operations,
      amount: s.amount,
      card: c ? { token: c.token, brand: c.brand, last4: c.last4, expMonth: c.expMonth, expYear: c.expYear } : { token: s.cardToken, deleted: true },
      reference: s.reference,
      require3DS: s.require3DS,
      requireCvv: s.requireCvv,
      maxAttempts: s.maxAttempts,
      cvvRetention: s.cvvRetention,
      form: s.form,
      returnUrl: s.returnUrl,
      metadata: s.metadata ?? {},
      results,
      attempts,
      cvv: cvvView,
      createdAt: isoTime(s.createdAt),
      updatedAt: isoTime(s.updatedAt),
    };
  }

  /**
   * A session by its id alone, with its merchant's settings in the session's
   * mode: for the hosted pages, whose URL carries the id. Null when either is
   * gone.
   */
  async hostedContext(id: string): Promise<{ session: SessionRecord; merchant: MerchantRecord } | null> {
    const session = await this.store.sessions.getById(id);
    const merchant = session ? await this.store.merchants.get(session.merchantId, session.mode) : null;
    return session && merchant ? { session, merchant } : null;
  }

  /**
   * GET /CvvOperations: the key's merchant's sessions in its mode, newest
   * first, Stripe-style pages (`limit`, `starting_after`), as GET
   * /CvvOperations/{id} shows each one, without the CVV's state (ask for the
   * session itself for that).
   */
  async list(
    m: MerchantContext,
    q: {
      limit?: number;
      startingAfter?: string;
      status?: 'active' | 'completed' | 'canceled' | 'expired';
      card?: string;
      createdGte?: number;
      createdLt?: number;
    },
  ): Promise<{ object: 'list'; data: unknown[]; hasMore: boolean }> {
    const limit = q.limit ?? 10;
    const rows = await this.store.sessions.list(m.merchant.id, m.mode, {
      limit: limit + 1,
      now: this.clock.now(),
      ...(q.startingAfter !== undefined ? { after: q.startingAfter } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.card !== undefined ? { card: q.card } : {}),
      ...(q.createdGte !== undefined ? { createdGte: q.createdGte } : {}),
      ...(q.createdLt !== undefined ? { createdLt: q.createdLt } : {}),
    });
    const page = rows.slice(0, limit);
    const cards = new Map<string, Promise<CardRecord | null>>();
    const cardOf = (s: SessionRecord) => {
      let c = cards.get(s.cardToken);
      if (!c) cards.set(s.cardToken, (c = this.store.cards.get(s.merchantId, s.mode, s.cardToken)));
      return c;
    };
    const data = await Promise.all(page.map(async (s) => this.view(s, await cardOf(s), false)));
    return { object: 'list', data, hasMore: rows.length > limit };
  }

  /**
   * GET /CvvOperations/{id}/history: the session's trail, oldest first, in
   * pages (`limit`, `starting_after`: the entries after that one). 404 for
   * another merchant's or mode's session, as for an unknown one.
   */
  async history(m: MerchantContext, id: string, q: { limit?: number; startingAfter?: string }) {
    await this.get(m, id);
    const limit = q.limit ?? 100;
    const rows = await this.store.sessions.history(m.merchant.id, m.mode, id, {
      limit: limit + 1,
      ...(q.startingAfter !== undefined ? { after: q.startingAfter } : {}),
    });
    return { object: 'list' as const, data: rows.slice(0, limit).map(historyView), hasMore: rows.length > limit };
  }

  /**
   * A refused call on a session, for its trail (the errorHandler reports every
   * 4xx whose session it knows: from a verified token, or from the path of a
   * merchant call). A session the caller could not see (404) gets nothing.
   * Never throws: the refusal is answered whatever happens here.
   */
  async recordRefusal(p: { sessionId: string; merchantId: string; mode: Mode; operation: string; code: string; requestId: string }): Promise<void> {
    if (p.code === 'not_found') return;
    try {
      // Only a session of that merchant and mode: a refused call naming someone else's (or no) session leaves no trace there.
      if (!(await this.store.sessions.get(p.merchantId, p.mode, p.sessionId))) return;
      const entry = historyEntry({
        session: { id: p.sessionId, merchantId: p.merchantId, mode: p.mode },
        type: 'refused',
        operation: p.operation,
        code: p.code,
        requestId: p.requestId,
        at: this.clock.now(),
      });
      await this.store.sessions.appendHistory([entry]);
    } catch (err) {
      this.opts.log?.warn({ session: p.sessionId, err: err instanceof Error ? err.message : String(err) }, 'a refused call could not be added to its history');
    }
  }

  /** The session of this merchant and mode, or 404 (another merchant's answers exactly like an unknown one). */
  async get(m: MerchantContext, id: string): Promise<SessionRecord> {
    const s = await this.store.sessions.get(m.merchant.id, m.mode, id);
    if (!s) throw new AppError('not_found', 'No such session.');
    return s;
  }

  async validateToken(m: MerchantContext, token: string): Promise<ValidateResult> {
    const out = await this.tokens.verify(token);
    if (!out.ok && out.reason !== 'expired') return { valid: false, reason: out.reason };
    const claims = out.claims!;
    if (claims.aud !== m.merchant.id || claims.mode !== m.mode) return { valid: false, reason: 'wrong_merchant' };
    if (!out.ok) return { valid: false, reason: 'expired' };
    const found = await this.store.sessions.getOperationContext(claims.sub, this.clock.now());
    const s = found?.session;
    if (!found || !s || s.merchantId !== m.merchant.id || s.mode !== m.mode) return { valid: false, reason: 'wrong_merchant' };
    return {
      valid: true,
      current: s.jti === claims.jti && this.status(s) !== 'expired',
      claims: profileClaims(claims),
      session: await this.view(s, found.card, true, found.usableCvc),
    };
  }

  #assertOpen(s: SessionRecord): void {
    const st = this.status(s);
    if (st === 'completed') throw new AppError('session_completed');
    if (st === 'canceled') throw new AppError('session_canceled');
    if (st === 'expired') throw new AppError('session_expired');
  }

  /** POST /CvvOperations/{id}/token: a new current token; every earlier token stops working. */
  async reissue(m: MerchantContext, id: string, requestId?: string): Promise<{ token: string }> {
    for (let i = 0; i < 5; i++) {
      const s = await this.get(m, id);
      this.#assertOpen(s);
      if (s.chargeInFlight) throw chargeInProgress();
      const card = await this.#card(s);
      const jti = newJti();
      const token = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, s.tokenHash, s.results));
      const now = this.clock.now();
      if (await this.store.sessions.rotateToken({ id: s.id, jti: s.jti, newJti: jti, tokenHash: tokenHash(token), now })) {
        await this.store.sessions.appendHistory([historyEntry({ session: s, type: 'reissued', requestId, at: now })]);
        this.opts.log?.info({ audit: true, event: 'token.reissued', merchantId: m.merchant.id, session: s.id, jti, seq: s.seq + 1 }, 'token reissued');
        return { token };
      }
    }
    throw new AppError('token_superseded', 'The session changed while reissuing; try again.');
  }

  async cancel(m: MerchantContext, id: string, requestId?: string): Promise<SessionRecord> {
    const s = await this.get(m, id);
    if (s.status !== 'canceled') {
      this.#assertOpen(s);
      if (s.chargeInFlight) throw chargeInProgress();
      const now = this.clock.now();
      const events: EventWrite[] = [...((await this.opts.prepareEvents?.(m.merchant.id, m.mode, [{ type: 'session.canceled', data: { session: id } }])) ?? [])];
      events.push(historyEntry({ session: s, type: 'canceled', requestId, at: now }));
      if (!(await this.store.sessions.cancel(m.merchant.id, m.mode, id, now, events))) {
        const again = await this.get(m, id);
        if (again.status !== 'canceled') this.#assertOpen(again);
        if (again.chargeInFlight) throw chargeInProgress();
      } else {
        this.opts.log?.info({ audit: true, event: 'session.canceled', merchantId: m.merchant.id, session: id }, 'session canceled');
      }
    }
    await this.vault.destroySessionCvv(m.merchant.id, id, 'session_canceled');
    return this.get(m, id);
  }

  async deleteCvv(m: MerchantContext, id: string): Promise<void> {
    await this.get(m, id);
    const n = await this.store.cvc.deleteOfSessionUnlessCharging(id);
    if (n === null) throw chargeInProgress();
    if (n === 0) throw new AppError('cvc_session_not_found');
    this.opts.log?.info(
      { audit: true, event: 'cvv.destroyed', merchantId: m.merchant.id, session: id, count: n, reason: 'deleted_by_merchant' },
      'CVV destroyed',
    );
  }

  async #card(s: SessionRecord): Promise<CardRecord> {
    return present(await this.store.cards.get(s.merchantId, s.mode, s.cardToken));
  }

  /** The hash that decides whether an operation call is the exact repeat of an earlier one. */
  static requestHash(op: Operation, body: unknown): string {
    return hash('sha256', `${op}\n${JSON.stringify(body ?? {})}`, 'base64url');
  }

  /**
   * The rotation machinery every operation goes through (API.md section 4).
   * One read (Store.getOperationContext: the session, its card, the
   * merchant's settings for its mode, the CVV status, the latest 3DS
   * transaction, the usable CVC session); then the token must be current (or
   * the call the exact repeat of its first one), the operation allowed, the
   * session open and within its attempts; `prepare` may refuse with a 4xx.
   *
   * Then, for every operation but a charge, `work` computes its outcome
   * without writing (the rows it needs written, and its webhook events, come
   * back with it), the next token is signed, and one transaction
   * (Store.sessions.commitOperation) wins the token and writes everything: rotation,
   * results, replay record, the rows, the events. Of two calls with one token
   * only one commits; nothing of the other is kept.
   *
   * A charge (`claim`) wins the token first, in the unit that makes it the
   * session's owner and stores its intent, since the processor must be called
   * at most once; its outcome is recorded after (finishOperation), and an
   * error before the processor was called puts everything back (`unclaim`).
   * Only a 200 rotates.
   */
  async runOperation(p: {
    op: Operation;
    /** The bearer token, already verified (TokenService.verify) by the caller. */
    token: string;
    claims: SessionClaims;
    body: unknown;
    origin: string | undefined;
    /** The request's id, for the session's history. */
    requestId?: string | undefined;
    /** false for a call that only fetches an outcome (threeDS/result): no attempt is counted. */
    countAttempt?: boolean;
    /** What the caller already read (Store.getOperationContext for claims.sub, just now); read here when absent. */
    read?: OperationContextRecord | null;
    prepare?: (ctx: ReadContext) => Promise<void>;
    /**
     * A charge: wins the token in one unit with whatever must commit with it
     * (its intent and ownership of the session) before `work` runs. False when
     * the token was not won; a 4xx thrown here leaves it untouched.
     */
    claim?: (ctx: ReadContext, c: { id: string; jti: string; newJti: string; now: number }) => Promise<boolean>;
    work: (ctx: OperationContext) => Promise<OperationWork>;
    /** With `claim`: undoes it after `work` failed (the charge decides what can be undone). */
    unclaim?: (c: { id: string; jti: string; oldJti: string; now: number }) => Promise<void>;
    /** With `claim`: records the outcome and finishes the session in one unit (the charge's outcome transaction); false: settled elsewhere. */
    finish?: (f: FinishUnit) => Promise<boolean>;
  }): Promise<OperationResponse> {
    const claims = p.claims;
    const read = p.read !== undefined ? p.read : await this.store.sessions.getOperationContext(claims.sub, this.clock.now());
    const s = read?.session;
    if (!read || !s || s.merchantId !== claims.aud || s.mode !== claims.mode) throw new AppError('invalid_token');
    const merchant = read.merchant;
    if (!merchant) throw new AppError('invalid_token');
    if (p.origin !== undefined && p.origin !== this.opts.publicOrigin && !merchant.allowedOrigins.includes(p.origin)) {
      throw new AppError(
        'origin_not_allowed',
        `The origin ${p.origin.slice(0, 200)} is not one of this merchant's allowed origins in ${s.mode} mode: add it to allowedOrigins with PATCH /Merchant (a ${s.mode} key).`,
      );
    }
    const hash = SessionService.requestHash(p.op, p.body);
    if (s.chargeInFlight) throw chargeInProgress();
    if (claims.jti !== s.jti) return this.#replayOrSuperseded(s, claims, hash);
    if (!claims.ops.includes(p.op)) throw new AppError('operation_not_allowed');
    this.#assertOpen(s);
    const counts = p.countAttempt !== false;
    if (counts && s.attempts[p.op] >= s.maxAttempts) throw new AppError('attempts_exhausted');
    const card = present(read.card);
    const ctx: ReadContext = { session: s, claims, card, merchant, cvvStatus: read.cvvStatus, latestTds: read.latestTds, usableCvc: read.usableCvc };
    await p.prepare?.(ctx);

    const jti = newJti();
    /** The token was not won: the replay of the call that won it (if this is its exact repeat), or why not. */
    const lost = async (): Promise<OperationResponse> => {
      const again = await this.store.sessions.getById(s.id);
      if (!again) throw new AppError('invalid_token');
      if (again.chargeInFlight) throw chargeInProgress();
      if (again.jti !== claims.jti) return this.#replayOrSuperseded(again, claims, hash);
      this.#assertOpen(again);
      if (counts && again.attempts[p.op] >= again.maxAttempts) throw new AppError('attempts_exhausted');
      throw new AppError('token_superseded');
    };

    /** The trail entry of this operation, once it has its outcome. */
    const entry = (work: OperationWork, at: number) =>
      historyEntry({
        session: s,
        type: 'operation',
        operation: p.op === 'threeDS' && !counts ? 'threeDS/result' : p.op,
        ...claimOutcome(work.claim),
        requestId: p.requestId,
        at,
      });

    if (!p.claim) {
      const work = await p.work({ ...ctx, newJti: jti });
      const results: OperationResults = { ...s.results, [p.op]: work.claim };
      const response = await this.#respond(s, card, p.token, jti, results, work);
      const now = this.clock.now();
      const events: EventWrite[] = work.events?.length ? [...((await this.opts.prepareEvents?.(s.merchantId, s.mode, work.events)) ?? [])] : [];
      events.push(entry(work, now));
      const done = await this.store.sessions.commitOperation({
        id: s.id,
        jti: claims.jti,
        newJti: jti,
        op: p.op,
        countAttempt: counts,
        now,
        results,
        tokenHash: tokenHash(response.token),
        complete: work.complete === true,
        replay: this.#replayRecord(s.id, claims.jti, hash, jti, response, now),
        writes: work.writes ?? [],
        events,
      });
      // Not committed: another call with this token committed first, or the session changed meanwhile.
      if (!done) return lost();
      work.afterCommit?.();
      this.#logOperation(s, p.op, work, claims.jti, jti);
      return response;
    }

    const now = this.clock.now();
    if (!(await p.claim(ctx, { id: s.id, jti: claims.jti, newJti: jti, now }))) return lost();
    let work: OperationWork;
    try {
      work = await p.work({ ...ctx, newJti: jti });
    } catch (err) {
      await p.unclaim?.({ id: s.id, jti, oldJti: claims.jti, now: this.clock.now() });
      throw err;
    }
    const results: OperationResults = { ...s.results, [p.op]: work.claim };
    const response = await this.#respond(s, card, p.token, jti, results, work);
    const at = this.clock.now();
    const unit: FinishUnit = {
      jti,
      results,
      tokenHash: tokenHash(response.token),
      now: at,
      complete: work.complete === true,
      replay: this.#replayRecord(s.id, claims.jti, hash, jti, response, at),
      response,
      history: entry(work, at),
    };
    const done = p.finish ? await p.finish(unit) : await this.store.sessions.finishOperation({ id: s.id, ...unit });
    if (!done) {
      // Settled meanwhile by crash recovery (this call outlived its time): its outcome stands, but no token is handed out.
      const again = await this.store.sessions.getById(s.id);
      if (again) this.#assertOpen(again);
      throw new AppError('token_superseded');
    }
    this.#logOperation(s, p.op, work, claims.jti, jti);
    return response;
  }

  /** The operation's response: its result, the next token (signed now), the session's status. */
  async #respond(s: SessionRecord, card: CardRecord, token: string, jti: string, results: OperationResults, work: OperationWork): Promise<OperationResponse> {
    const next = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, tokenHash(token), results));
    return { result: work.result, token: next, session: { status: work.complete ? 'completed' : this.status(s) } };
  }

  /** What the exact repeat of this call gets for 60 s (sealed: it holds a token). */
  #replayRecord(sessionId: string, fromJti: string, hash: string, producedJti: string, response: OperationResponse, at: number) {
    return { jti: fromJti, hash, sealed: this.keyring.seal('replay', JSON.stringify({ producedJti, response }), `replay|${sessionId}|${fromJti}`), at };
  }

  #logOperation(s: SessionRecord, op: Operation, work: OperationWork, fromJti: string, jti: string): void {
    this.opts.log?.info(
      { audit: true, event: 'operation', merchantId: s.merchantId, session: s.id, op, outcome: work.claim.status, fromJti, jti, seq: s.seq + 1 },
      'operation ran; token rotated',
    );
  }

  /**
   * Hands out a new current token carrying an outcome that was settled
   * outside an operation call (a charge reconciled after a crash): one
   * conditional rotation from whatever token is current.
   */
  async rotateWithResult(
    sessionId: string,
    op: Operation,
    result: Record<string, unknown>,
    claim: Record<string, unknown>,
    complete: boolean,
  ): Promise<OperationResponse> {
    for (let i = 0; i < 5; i++) {
      const s = await this.store.sessions.getById(sessionId);
      if (!s) throw new AppError('invalid_token');
      this.#assertOpen(s);
      if (s.chargeInFlight) throw chargeInProgress();
      const card = await this.#card(s);
      const jti = newJti();
      const results: OperationResults = { ...s.results, [op]: claim };
      const token = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, s.tokenHash, results));
      const now = this.clock.now();
      if (!(await this.store.sessions.rotateToken({ id: s.id, jti: s.jti, newJti: jti, tokenHash: tokenHash(token), now }))) continue;
      const response: OperationResponse = { result, token, session: { status: complete ? 'completed' : 'active' } };
      const sealed = this.keyring.seal('replay', JSON.stringify({ producedJti: jti, response }), `replay|${s.id}|-`);
      await this.store.sessions.finishOperation({
        id: s.id,
        jti,
        results,
        tokenHash: tokenHash(token),
        now,
        complete,
        replay: { jti: '-', hash: '-', sealed, at: now },
      });
      this.opts.log?.info(
        { audit: true, event: 'operation.reconciled', merchantId: s.merchantId, session: s.id, op, jti, seq: s.seq + 1 },
        'outcome settled; token rotated',
      );
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
  async settleCharge(
    sessionId: string,
    chargeId: string,
    result: Record<string, unknown>,
    claim: Record<string, unknown>,
    complete: boolean,
  ): Promise<OperationResponse | null> {
    const s = await this.store.sessions.getById(sessionId);
    if (!s || s.chargeInFlight?.chargeId !== chargeId) return null;
    const card = await this.#card(s);
    const jti = newJti();
    const results: OperationResults = { ...s.results, charge: claim };
    const token = await this.tokens.sign(this.claimsFor(s, card, jti, s.seq + 1, s.tokenHash, results));
    const now = this.clock.now();
    if (!(await this.store.charges.settleLock({ id: s.id, chargeId, newJti: jti, tokenHash: tokenHash(token), results, complete, now }))) return null;
    await this.store.sessions.appendHistory([historyEntry({ session: s, type: 'reconciled', operation: 'charge', ...claimOutcome(claim), at: now })]);
    this.opts.log?.info(
      { audit: true, event: 'operation.reconciled', merchantId: s.merchantId, session: s.id, op: 'charge', chargeId, jti, seq: s.seq + 1 },
      'charge outcome settled; token rotated',
    );
    return { result, token, session: { status: complete ? 'completed' : this.status(s) } };
  }

  /** An old token: the exact repeat of its call within 60 s gets the same response, while the token it produced is current. */
  async #replayOrSuperseded(s: SessionRecord, claims: SessionClaims, hash: string): Promise<OperationResponse> {
    const r = s.replay;
    if (r && r.jti === claims.jti && r.hash === hash && this.clock.now() - r.at <= REPLAY_WINDOW_MS) {
      try {
        const stored = JSON.parse(this.keyring.open('replay', r.sealed, `replay|${s.id}|${claims.jti}`).toString('utf8')) as {
          producedJti: string;
          response: OperationResponse;
        };
        if (stored.producedJti === s.jti) {
          this.opts.log?.info(
            { audit: true, event: 'operation.replayed', merchantId: s.merchantId, session: s.id, fromJti: claims.jti },
            'operation response replayed',
          );
          return stored.response;
        }
      } catch {
        // An unreadable replay record is no replay.
      }
    }
    throw new AppError('token_superseded');
  }
}

/** The claims a session token of ours carries (API.md section 10): what validateToken answers, and nothing a token could add. */
const CLAIMS = ['iss', 'aud', 'sub', 'jti', 'iat', 'exp', 'nbf', 'seq', 'mode', 'ops', 'amt', 'card', 'prev', 'form', 'res'] as const;
function profileClaims(c: SessionClaims): SessionClaims {
  return Object.fromEntries(CLAIMS.filter((k) => k in c).map((k) => [k, c[k]])) as unknown as SessionClaims;
}
