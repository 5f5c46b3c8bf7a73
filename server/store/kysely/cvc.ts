import type { CvcSessionRecord, Mode, CvcStore } from '../store.js';
import { Unit, KyselyEngine } from './engine.js';
import { cvcRow, toCvc } from './rows.js';

export class KyselyCvcStore implements CvcStore {
  constructor(private readonly e: KyselyEngine) {}

  async putKeyShare(cvcId: string, share: Buffer, now: number): Promise<void> {
    await this.e.exec('putCvvKeyShare', { cvc_id: cvcId, share, created_at: now }, (a) => this.e.db.insertInto('cvv_keys').values(a));
  }

  async getKeyShare(cvcId: string): Promise<Buffer | null> {
    const {
      rows: [r],
    } = await this.e.exec('getCvvKeyShare', { cvcId }, (a) => this.e.db.selectFrom('cvv_keys').select('share').where('cvc_id', '=', a.cvcId));
    return r ? Buffer.from(r.share) : null;
  }

  async insert(c: CvcSessionRecord, opts: { replace?: boolean } = {}): Promise<void> {
    if (c.sessionId !== null && opts.replace !== false) await this.deleteOfSession(c.sessionId);
    await this.e.exec('insertCvcSession', cvcRow(c), (a) => this.e.db.insertInto('cvc_sessions').values(a));
  }

  async findUsable(merchantId: string, cardToken: string, sessionId: string, now: number): Promise<CvcSessionRecord | null> {
    // Two indexed lookups of one row each (a card may hold many CVC sessions: test mode keeps them a year).
    const args = { sessionId, merchantId, cardToken, now };
    const {
      rows: [own],
    } = await this.e.exec('findUsableCvcSession:own', args, (a) =>
      this.e.db
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
    } = await this.e.exec('findUsableCvcSession:card', { merchantId, cardToken, now }, (a) =>
      this.e.db
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

  async getLive(merchantId: string, mode: Mode, id: string, now: number): Promise<CvcSessionRecord | null> {
    const r = await this.e.db
      .selectFrom('cvc_sessions')
      .selectAll()
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return r ? toCvc(r) : null;
  }

  async getById(id: string, now: number): Promise<CvcSessionRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('getCvcSessionById', { id, now }, (a) =>
      this.e.db.selectFrom('cvc_sessions').selectAll().where('id', '=', a.id).where('expires_at', '>', a.now),
    );
    return r ? toCvc(r) : null;
  }

  async findLiveOfCard(merchantId: string, cardToken: string, now: number): Promise<CvcSessionRecord | null> {
    const r = await this.e.db
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

  async take(id: string, now: number): Promise<CvcSessionRecord | null> {
    const { rows } = await this.e.exec('takeCvcSession', { id, now }, (a) =>
      this.e.db.deleteFrom('cvc_sessions').where('id', '=', a.id).where('expires_at', '>', a.now).returningAll(),
    );
    if (rows.length === 0) return null;
    // Only the caller that deleted the row gets here: it takes the key share with it.
    const { rows: keys } = await this.e.exec('takeCvvKeyShare', { id }, (a) => this.e.db.deleteFrom('cvv_keys').where('cvc_id', '=', a.id).returning('share'));
    this.e.afterCvvDelete();
    this.e.afterKeyDelete();
    return { ...toCvc(rows[0]!), keyShare: keys[0] ? Buffer.from(keys[0].share) : null };
  }

  async startCacheWindow(id: string, now: number, until: number): Promise<void> {
    const row = await this.e.db.selectFrom('cvc_sessions').select(['expires_at']).where('id', '=', id).where('first_used_at', 'is', null).executeTakeFirst();
    if (!row) return;
    const expiresAt = Math.min(Number(row.expires_at), until);
    await this.e.db
      .updateTable('cvc_sessions')
      .set({ first_used_at: now, expires_at: expiresAt })
      .where('id', '=', id)
      .where('first_used_at', 'is', null)
      .where('expires_at', '=', row.expires_at)
      .execute();
  }

  async delete(merchantId: string, mode: Mode, id: string, now: number): Promise<boolean> {
    await this.e.dropKeys(
      this.e.db.selectFrom('cvc_sessions').select('id').where('id', '=', id).where('merchant_id', '=', merchantId).where('mode', '=', mode),
    );
    const r = await this.e.db
      .deleteFrom('cvc_sessions')
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .returning(['expires_at'])
      .execute();
    if (r.length === 0) return false;
    this.e.afterCvvDelete();
    return Number(r[0]!.expires_at) > now;
  }

  async deleteOfSession(sessionId: string): Promise<number> {
    const { affected: keys } = await this.e.exec('dropKeysOfSession', { sessionId }, (a) =>
      this.e.db.deleteFrom('cvv_keys').where('cvc_id', 'in', this.e.db.selectFrom('cvc_sessions').select('id').where('session_id', '=', a.sessionId)),
    );
    if (keys > 0) this.e.afterKeyDelete();
    const { affected: n } = await this.e.exec('deleteCvcSessionsOfSession', { sessionId }, (a) =>
      this.e.db.deleteFrom('cvc_sessions').where('session_id', '=', a.sessionId),
    );
    if (n > 0) this.e.afterCvvDelete();
    return n;
  }

  async deleteOfSessionUnlessCharging(sessionId: string): Promise<number | null> {
    const db = this.e.db;
    const locked = this.e.locked.bind(this.e);
    const n = await this.e.transaction(function* (): Unit<number | null> {
      const s = (yield locked(db.selectFrom('sessions').select('charge_id').where('id', '=', sessionId))).rows[0] as { charge_id: string | null } | undefined;
      if (s && s.charge_id !== null) return null;
      yield db.deleteFrom('cvv_keys').where('cvc_id', 'in', db.selectFrom('cvc_sessions').select('id').where('session_id', '=', sessionId));
      return (yield db.deleteFrom('cvc_sessions').where('session_id', '=', sessionId)).affected;
    });
    if (n) {
      this.e.afterKeyDelete();
      this.e.afterCvvDelete();
    }
    return n;
  }

  async deleteUnlessCharging(merchantId: string, mode: Mode, id: string, now: number): Promise<'deleted' | 'gone' | 'charging'> {
    const db = this.e.db;
    const locked = this.e.locked.bind(this.e);
    const out = await this.e.transaction(function* (): Unit<'deleted' | 'gone' | 'charging'> {
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
      this.e.afterKeyDelete();
      this.e.afterCvvDelete();
    }
    return out;
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    await this.e.backgroundTurn();
    const ids = (await this.e.db.selectFrom('cvc_sessions').select('id').where('expires_at', '<=', now).limit(limit).execute()).map((r) => r.id);
    if (ids.length === 0) return 0;
    await this.e.dropKeys(ids);
    const r = await this.e.db.deleteFrom('cvc_sessions').where('id', 'in', ids).where('expires_at', '<=', now).executeTakeFirst();
    const n = Number(r.numDeletedRows);
    if (n > 0) this.e.afterCvvDelete();
    return n;
  }

  async deleteOrphanKeyShares(now: number): Promise<number> {
    await this.e.backgroundTurn();
    // A minute to two old, so none is being stored, and the scan stays small (the sweeper runs every second).
    const r = await this.e.db
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
    if (n > 0) this.e.afterKeyDelete();
    return n;
  }
}
