import type { AuthenticateOutcome, ThreeDSProvider, ThreeDSResult } from '../connectors/three-ds/provider.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import { Secret } from '../secret.js';
import type { CardRecord, SessionRecord, Store, TdsRecord } from '../store/store.js';
import type { CardService } from './cards.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Keyring } from './keyring.js';
import type { OperationWork } from './sessions.js';
import type { WebhookService } from './webhooks.js';

/** A challenge stays open this long. */
export const CHALLENGE_TTL_MS = 10 * 60 * 1000;
const PROVIDER_TIMEOUT_MS = 15_000;

/** The operation result of API.md section 4 for a final 3DS outcome (the CAVV shown once, to the page that asked). */
function resultOf(tds: { id: string; dsTransactionId: string; version: string }, r: { status: string; eci: string | null; cavv: string | null }) {
  return {
    status: r.status,
    transactionId: tds.id,
    eci: r.eci,
    authenticationValue: r.cavv,
    dsTransactionId: tds.dsTransactionId,
    version: tds.version,
  };
}

/**
 * 3-D Secure behind a ThreeDSProvider: frictionless outcomes at once, a
 * hosted challenge page otherwise. The CAVV is stored only encrypted, for the
 * charge that follows.
 */
export class ThreeDSService {
  constructor(
    private readonly store: Pick<Store, 'cards' | 'sessions'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly cards: CardService,
    private readonly provider: ThreeDSProvider,
    private readonly webhooks: WebhookService,
    private readonly opts: { publicBaseUrl: string; log?: Logger },
  ) {}

  #request(session: SessionRecord, card: CardRecord, transactionId: string, browser: Record<string, unknown>) {
    return {
      transactionId,
      mode: session.mode,
      amount: session.amount,
      browser,
      card: { number: this.cards.open(card).number, brand: card.brand, expMonth: card.expMonth, expYear: card.expYear },
    };
  }

  #seal(tdsId: string, merchantId: string, r: ThreeDSResult) {
    return r.authenticationValue ? this.keyring.seal('cavv', r.authenticationValue.expose(), `cavv|${merchantId}|${tdsId}`) : null;
  }

  /** The operation's work: authenticate, store the transaction, answer with the result (or the challenge). */
  /** `previous`: the session's latest transaction so far (this one must sort after it: threeDS/result answers the latest). */
  async authenticate(session: SessionRecord, card: CardRecord, browser: Record<string, unknown>, previous: TdsRecord | null = null): Promise<OperationWork> {
    const id = newId('tds');
    let outcome: AuthenticateOutcome;
    try {
      outcome = await this.provider.authenticate(this.#request(session, card, id, browser), AbortSignal.timeout(PROVIDER_TIMEOUT_MS));
    } catch (err) {
      throw new AppError('threeds_provider_error', undefined, { cause: err });
    }
    // Strictly after the session's previous transaction, even within one millisecond (or a clock that stands still):
    // "the latest" is decided by this time, and a challenge the shopper abandoned must never be taken for it.
    const now = Math.max(this.clock.now(), (previous?.createdAt ?? 0) + 1);
    // The transaction is written with the operation's token rotation (Store.sessions.commitOperation), not here.
    if (outcome.kind === 'challenge') {
      return {
        result: {
          status: 'C',
          transactionId: id,
          challengeUrl: `${this.opts.publicBaseUrl}/hosted/3ds/${id}`,
          dsTransactionId: outcome.dsTransactionId,
          version: outcome.version,
        },
        claim: { status: 'C', eci: null, transactionId: id },
        writes: [
          {
            kind: 'tds',
            record: {
              id,
              merchantId: session.merchantId,
              sessionId: session.id,
              mode: session.mode,
              status: 'challenge',
              dsTransactionId: outcome.dsTransactionId,
              version: outcome.version,
              result: null,
              createdAt: now,
              expiresAt: now + CHALLENGE_TTL_MS,
              completedAt: null,
            },
          },
        ],
      };
    }
    const r = outcome.result;
    const tds: TdsRecord = {
      id,
      merchantId: session.merchantId,
      sessionId: session.id,
      mode: session.mode,
      status: 'completed',
      dsTransactionId: r.dsTransactionId,
      version: r.version,
      result: { status: r.status, eci: r.eci, cavvSealed: this.#seal(id, session.merchantId, r) },
      createdAt: now,
      expiresAt: now + CHALLENGE_TTL_MS,
      completedAt: now,
    };
    return {
      result: resultOf(tds, { status: r.status, eci: r.eci, cavv: r.authenticationValue?.expose() ?? null }),
      claim: { status: r.status, eci: r.eci, transactionId: id },
      writes: [{ kind: 'tds', record: tds }],
      events: [{ type: 'threeds.completed', data: { session: session.id, transactionId: id, status: r.status, eci: r.eci } }],
    };
  }

  /** The challenge page's transaction; 404 when unknown. */
  async challenge(id: string): Promise<TdsRecord> {
    const t = await this.store.sessions.getTds(id);
    if (!t) throw new AppError('not_found', 'No such 3-D Secure transaction.');
    return t;
  }

  /** The cardholder submitted the challenge form. Settles the transaction once. */
  async submitChallenge(id: string, code: string): Promise<TdsRecord> {
    const t = await this.challenge(id);
    if (t.status === 'completed') return t;
    const now = this.clock.now();
    const session = await this.store.sessions.getById(t.sessionId);
    const card = session ? await this.store.cards.get(session.merchantId, session.mode, session.cardToken) : null;
    let r: ThreeDSResult;
    if (!session || !card || t.expiresAt <= now) {
      r = { status: 'U', eci: null, authenticationValue: null, dsTransactionId: t.dsTransactionId, version: t.version };
    } else {
      try {
        r = await this.provider.completeChallenge(
          { ...this.#request(session, card, id, {}), dsTransactionId: t.dsTransactionId, code },
          AbortSignal.timeout(PROVIDER_TIMEOUT_MS),
        );
      } catch (err) {
        throw new AppError('threeds_provider_error', undefined, { cause: err });
      }
    }
    // The outcome and its event in one transaction: no event without its state change, and no state change without its event.
    const events = await this.webhooks.prepare(t.merchantId, t.mode, [
      { type: 'threeds.completed', data: { session: t.sessionId, transactionId: id, status: r.status, eci: r.eci } },
    ]);
    if (await this.store.sessions.completeTds(id, { status: r.status, eci: r.eci, cavvSealed: this.#seal(id, t.merchantId, r) }, now, events)) {
      this.opts.log?.info(
        { audit: true, event: 'threeds.challenge_completed', merchantId: t.merchantId, session: t.sessionId, transactionId: id, status: r.status },
        '3DS challenge completed',
      );
    }
    return (await this.store.sessions.getTds(id))!;
  }

  /** threeDS/result: the session's latest transaction (as read with the operation), refused (409) while its challenge is open. */
  static latestFinal(t: TdsRecord | null): TdsRecord {
    if (!t) throw new AppError('precondition_failed', 'No 3-D Secure transaction has been started in this session.');
    if (t.status !== 'completed' || !t.result) throw new AppError('precondition_failed', 'The 3-D Secure challenge is still open.');
    return t;
  }

  resultWork(t: TdsRecord): OperationWork {
    const r = t.result!;
    const cavv = r.cavvSealed ? this.keyring.open('cavv', r.cavvSealed, `cavv|${t.merchantId}|${t.id}`).toString('utf8') : null;
    return { result: resultOf(t, { status: r.status, eci: r.eci, cavv }), claim: { status: r.status, eci: r.eci, transactionId: t.id } };
  }

  /** The 3DS data a charge sends to the processor: the session's latest transaction (as read with the operation), if final. */
  forCharge(t: TdsRecord | null): { status: string; eci: string | null; authenticationValue: Secret<string> | null; dsTransactionId: string } | null {
    if (!t || t.status !== 'completed' || !t.result) return null;
    const cavv = t.result.cavvSealed ? new Secret(this.keyring.open('cavv', t.result.cavvSealed, `cavv|${t.merchantId}|${t.id}`).toString('utf8')) : null;
    return { status: t.result.status, eci: t.result.eci, authenticationValue: cavv, dsTransactionId: t.dsTransactionId };
  }
}
