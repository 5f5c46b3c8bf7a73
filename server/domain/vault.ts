import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import { Secret } from '../secret.js';
import type { CardRecord, CvcRetention, CvcSessionRecord, CvvRetention, CvvStatusRecord, MerchantRecord, Mode, OperationWrite, Store } from '../store/store.js';
import { type Clock, isoTime } from './clock.js';
import { newId } from './ids.js';
import { secureRandom } from './random.js';
import type { Keyring } from './keyring.js';

export interface CvcSessionView {
  id: string;
  expiresAt: string;
}

/** `cache` retention: the first use opens a window of five minutes, once. */
export const CACHE_WINDOW_MS = 5 * 60 * 1000;

export type CvvStatusView = {
  status: 'Unblocked' | 'Blocked';
  failedAttempts: number;
  cvcSession: { available: true; id: string; expiresAt: string } | { available: false };
};

/** Test-mode CVC sessions (test cards only) live one year and are never destroyed by use. */
export const TEST_CVC_LIFETIME_MS = 365 * 24 * 3600 * 1000;

const CVV_SHAPE = /^[0-9]+$/;

/**
 * The CVV vault: CVVs enter only through here, are stored only AES-256-GCM
 * encrypted (bound to merchant and record), only for their lifetime, and
 * leave only through here.
 */
export class Vault {
  constructor(
    private readonly store: Pick<Store, 'cards' | 'cvc'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly log?: Logger,
  ) {}

  /** ASCII digits only; exactly 3, or 4 for American Express. Anything else is invalid_cvv. */
  checkCvv(value: unknown, brand: string): Secret<string> {
    const raw: unknown = value instanceof Secret ? (value as Secret<unknown>).expose() : value;
    const len = brand === 'amex' ? 4 : 3;
    if (typeof raw !== 'string') throw new AppError('invalid_cvv', 'The CVV must be a string of digits.');
    if (raw.length !== len || !CVV_SHAPE.test(raw)) {
      throw new AppError('invalid_cvv', `The CVV must be exactly ${len} ASCII digits for this card.`);
    }
    return value instanceof Secret ? (value as Secret<string>) : new Secret(raw);
  }

  /** 423 cvv_blocked for a blocked card number, from a status already read. */
  static assertUnblocked(st: CvvStatusRecord | null): void {
    if (st?.blocked) throw new AppError('cvv_blocked');
  }

  /** 423 cvv_blocked for a blocked card number; otherwise its CVV status as read (null: never failed). */
  async assertNotBlocked(merchantId: string, fingerprint: string): Promise<CvvStatusRecord | null> {
    const st = await this.store.cards.getCvvStatus(merchantId, fingerprint);
    if (st?.blocked) throw new AppError('cvv_blocked');
    return st;
  }

  /**
   * A CVV sealed in a new CVC session, not yet stored: the rows for the
   * collectCvv transaction (Store.sessions.commitOperation), which also replaces the
   * operations session's earlier CVC session. `logStored` writes the audit
   * line once they are committed.
   */
  sealCvv(p: { merchant: MerchantRecord; card: CardRecord; sessionId: string | null; cvv: Secret<string>; retention: CvvRetention; firstInSession: boolean }): {
    view: CvcSessionView;
    write: OperationWrite;
    logStored: () => void;
  } {
    const now = this.clock.now();
    const id = newId('cvc');
    const testMode = p.card.mode === 'test';
    const retention: CvcRetention = testMode ? 'reusable' : p.retention;
    const expiresAt = now + (testMode ? TEST_CVC_LIFETIME_MS : p.merchant.cvcSessionTtlSeconds * 1000);
    // A fresh key share per CVV, stored apart from the ciphertext and destroyed with it.
    const share = secureRandom(32);
    const record: CvcSessionRecord = {
      id,
      merchantId: p.merchant.id,
      mode: p.card.mode,
      cardToken: p.card.token,
      sessionId: p.sessionId,
      sealed: this.keyring.sealWithShare('cvv', share, p.cvv.expose(), `cvv|${p.merchant.id}|${id}`),
      retention,
      expiresAt,
      firstUsedAt: null,
      createdAt: now,
    };
    return {
      view: { id, expiresAt: isoTime(expiresAt) },
      // Nothing to replace before the session's first collection (attempts count every collection).
      write: { kind: 'cvc', record, share, replace: !p.firstInSession },
      logStored: () =>
        this.log?.info(
          { audit: true, event: 'cvv.collected', merchantId: p.merchant.id, cvcSession: id, card: p.card.token, session: p.sessionId },
          'CVV stored',
        ),
    };
  }

  /** Stores a CVV in a new CVC session at once (POST /Cards with a cvv: the card's, no operations session). */
  async storeCvv(p: { merchant: MerchantRecord; card: CardRecord; cvv: Secret<string>; retention: CvvRetention }): Promise<CvcSessionView> {
    const sealed = this.sealCvv({ ...p, sessionId: null, firstInSession: true });
    if (sealed.write.kind !== 'cvc') throw new Error('a sealed CVV is a CVC session');
    await this.store.cvc.putKeyShare(sealed.view.id, sealed.write.share, sealed.write.record.createdAt);
    await this.store.cvc.insert(sealed.write.record, { replace: false });
    sealed.logStored();
    return sealed.view;
  }

  /**
   * The CVV for one use (a charge attempt or a proxy forward), following the
   * CVC session's retention: `single_use` is read once (DELETE … RETURNING),
   * `cache` opens its five-minute window at the first use and never extends
   * it, `reusable` (test mode) is left as it is. 410 cvc_session_not_found if
   * it is gone by now.
   */
  async useCvv(cvc: CvcSessionRecord, reason: string): Promise<Secret<string>> {
    const now = this.clock.now();
    let row: CvcSessionRecord | null;
    if (cvc.retention === 'single_use') {
      row = await this.store.cvc.take(cvc.id, now);
      if (row)
        this.log?.info(
          { audit: true, event: 'cvv.destroyed', merchantId: cvc.merchantId, cvcSession: cvc.id, reason: `used:${reason}` },
          'CVV destroyed by use',
        );
    } else {
      if (cvc.retention === 'cache' && cvc.firstUsedAt === null) await this.store.cvc.startCacheWindow(cvc.id, now, now + CACHE_WINDOW_MS);
      row = await this.store.cvc.getById(cvc.id, now);
    }
    if (!row || row.merchantId !== cvc.merchantId) throw new AppError('cvc_session_not_found');
    return this.open(row);
  }

  /** Decrypts a CVC session's CVV; without its key share (destroyed) there is nothing to open: 410. */
  async open(row: CvcSessionRecord): Promise<Secret<string>> {
    const share = row.keyShare !== undefined ? row.keyShare : await this.store.cvc.getKeyShare(row.id);
    if (!share) throw new AppError('cvc_session_not_found');
    return new Secret(this.keyring.openWithShare('cvv', share, row.sealed, `cvv|${row.merchantId}|${row.id}`).toString('utf8'));
  }

  /**
   * An authorization response arrived (approved or declined): in live mode the
   * CVV must be unrecoverable at once, whatever the retention (PCI DSS 3.3.1).
   * Test-mode CVC sessions of test cards are never destroyed by use.
   */
  async afterAuthorization(cvc: CvcSessionRecord): Promise<void> {
    if (cvc.mode !== 'live') return;
    const n = await this.store.cvc.delete(cvc.merchantId, cvc.mode, cvc.id, 0);
    if (n)
      this.log?.info(
        { audit: true, event: 'cvv.destroyed', merchantId: cvc.merchantId, cvcSession: cvc.id, reason: 'authorized' },
        'CVV destroyed after authorization',
      );
  }

  /**
   * A charge's CVV verdict for the card number: `incorrect_cvc` counts one
   * failure (blocking at the merchant's threshold), a match resets the count.
   */
  /**
   * Returns true when this very result blocked the card (exactly once per block, even with concurrent declines).
   * `known`: the status read before the charge, if any; a match then writes nothing when it showed nothing to
   * reset (as if the reset happened at that read: a failure recorded since by another charge stays counted).
   */
  async recordCvvResult(
    merchant: MerchantRecord,
    card: CardRecord,
    p: { cvvResult: string | null; declineCode: string | null },
    known?: CvvStatusRecord | null,
  ): Promise<boolean> {
    const now = this.clock.now();
    if (p.declineCode === 'incorrect_cvc') {
      const st = await this.store.cards.recordCvvFailure(merchant.id, card.fingerprint, merchant.cvvBlockThreshold, now);
      if (st.blocked && st.failedAttempts === merchant.cvvBlockThreshold) {
        this.log?.warn({ audit: true, event: 'cvv.blocked', merchantId: merchant.id, card: card.token, failedAttempts: st.failedAttempts }, 'card CVV blocked');
        return true;
      }
    } else if (p.cvvResult === 'M' && (known === undefined || (known !== null && (known.failedAttempts > 0 || known.blocked)))) {
      await this.store.cards.resetCvvStatus(merchant.id, card.fingerprint, now);
    }
    return false;
  }

  async status(merchantId: string, card: CardRecord): Promise<CvvStatusView> {
    const st = await this.store.cards.getCvvStatus(merchantId, card.fingerprint);
    const cvc = await this.store.cvc.findLiveOfCard(merchantId, card.token, this.clock.now());
    return {
      status: st?.blocked ? 'Blocked' : 'Unblocked',
      failedAttempts: st?.failedAttempts ?? 0,
      cvcSession: cvc ? { available: true, id: cvc.id, expiresAt: isoTime(cvc.expiresAt) } : { available: false },
    };
  }

  async unblock(merchantId: string, card: CardRecord): Promise<void> {
    await this.store.cards.resetCvvStatus(merchantId, card.fingerprint, this.clock.now());
    this.log?.info({ audit: true, event: 'cvv.unblocked', merchantId, card: card.token }, 'card CVV unblocked');
  }

  /** What a charge of this session could use now, never the value. */
  async cvvState(merchantId: string, cardToken: string, sessionId: string): Promise<{ available: true; id: string; expiresAt: string } | { available: false }> {
    const c = await this.store.cvc.findUsable(merchantId, cardToken, sessionId, this.clock.now());
    return c ? { available: true, id: c.id, expiresAt: isoTime(c.expiresAt) } : { available: false };
  }

  /** DELETE /CvcSessions/{id}: 410 cvc_session_not_found for expired, used, unknown and foreign alike. */
  async deleteCvcSession(merchantId: string, mode: Mode, id: string, reason: string): Promise<void> {
    const r = await this.store.cvc.deleteUnlessCharging(merchantId, mode, id, this.clock.now());
    if (r === 'charging')
      throw new AppError('precondition_failed', 'A charge using this CVV is in progress; try again once its outcome is recorded.', { retryAfter: 1 });
    if (r === 'gone') throw new AppError('cvc_session_not_found');
    this.log?.info({ audit: true, event: 'cvv.destroyed', merchantId, cvcSession: id, reason }, 'CVV destroyed');
  }

  async destroySessionCvv(merchantId: string, sessionId: string, reason: string): Promise<number> {
    const n = await this.store.cvc.deleteOfSession(sessionId);
    if (n > 0) this.log?.info({ audit: true, event: 'cvv.destroyed', merchantId, session: sessionId, count: n, reason }, 'CVV destroyed');
    return n;
  }
}
