import { sql } from 'kysely';
import type { CardRecord, CvvStatusRecord, Mode, CardStore } from '../store.js';
import { pack, PENDING, KyselyEngine } from './engine.js';
import { toCard, toCvvStatus } from './rows.js';

export class KyselyCardStore implements CardStore {
  constructor(private readonly e: KyselyEngine) {}

  async insert(c: CardRecord): Promise<void> {
    await this.e.db
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

  async listSealedBelow(version: number, limit: number): Promise<CardRecord[]> {
    const rows = await this.e.db
      .selectFrom('cards')
      .selectAll()
      .where('key_version', '<', version)
      .orderBy('created_at')
      .orderBy('token')
      .limit(limit)
      .execute();
    return rows.map(toCard);
  }

  async reseal(c: Pick<CardRecord, 'token' | 'merchantId' | 'numberSealed' | 'holderSealed'>, was: CardRecord['numberSealed']): Promise<boolean> {
    const r = await this.e.db
      .updateTable('cards')
      .set({ number_sealed: pack(c.numberSealed), holder_sealed: c.holderSealed ? pack(c.holderSealed) : null, key_version: c.numberSealed.keyVersion })
      .where('token', '=', c.token)
      .where('merchant_id', '=', c.merchantId)
      .where('number_sealed', '=', pack(was))
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async get(merchantId: string, mode: Mode, token: string): Promise<CardRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('getCard', { token, merchantId, mode }, (a) =>
      this.e.db.selectFrom('cards').selectAll().where('token', '=', a.token).where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode),
    );
    return r ? toCard(r) : null;
  }

  async delete(merchantId: string, mode: Mode, token: string): Promise<boolean> {
    const r = await this.e.db
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
    await this.e.dropKeys(this.e.db.selectFrom('cvc_sessions').select('id').where('card_token', '=', token).where('merchant_id', '=', merchantId));
    const c = await this.e.db.deleteFrom('cvc_sessions').where('card_token', '=', token).where('merchant_id', '=', merchantId).executeTakeFirst();
    if (Number(c.numDeletedRows) > 0) this.e.afterCvvDelete();
    return true;
  }

  async getCvvStatus(merchantId: string, fingerprint: string): Promise<CvvStatusRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('getCvvStatus', { merchantId, fingerprint }, (a) =>
      this.e.db.selectFrom('cvv_status').selectAll().where('merchant_id', '=', a.merchantId).where('fingerprint', '=', a.fingerprint),
    );
    if (!r) return null;
    return toCvvStatus(r);
  }

  async recordCvvFailure(merchantId: string, fingerprint: string, threshold: number, now: number): Promise<CvvStatusRecord> {
    // RETURNING: the status this failure produced. A separate read afterwards
    // could see later concurrent failures too, so two callers got the same
    // count and the one that reached the threshold could not tell.
    const r = await this.e.db
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
    return toCvvStatus(r);
  }

  async deleteStaleCvvStatus(before: number, limit: number): Promise<number> {
    await this.e.backgroundTurn();
    const db = this.e.db;
    const stale = await db
      .selectFrom('cvv_status')
      .select(['merchant_id', 'fingerprint'])
      .where('blocked', '=', 0)
      .where('updated_at', '<', before)
      .limit(limit)
      .execute();
    let n = 0;
    for (const s of stale) {
      const r = await db
        .deleteFrom('cvv_status')
        .where('merchant_id', '=', s.merchant_id)
        .where('fingerprint', '=', s.fingerprint)
        .where('blocked', '=', 0)
        .where('updated_at', '<', before)
        .where((eb) =>
          eb.not(
            eb.exists(
              db
                .selectFrom('charges')
                .select('id')
                .where('charges.merchant_id', '=', s.merchant_id)
                .where('charges.cvv_fingerprint', '=', s.fingerprint)
                .where('charges.status', '=', PENDING),
            ),
          ),
        )
        .executeTakeFirst();
      n += Number(r.numDeletedRows);
    }
    return n;
  }

  async resetCvvStatus(merchantId: string, fingerprint: string, now: number): Promise<void> {
    // Only a status with something to reset is written: a match after a match changes nothing.
    await this.e.exec('resetCvvStatus', { merchantId, fingerprint, now }, (a) =>
      this.e.db
        .updateTable('cvv_status')
        .set({ failed_attempts: 0, blocked: 0, updated_at: a.now })
        .where('merchant_id', '=', a.merchantId)
        .where('fingerprint', '=', a.fingerprint)
        .where((eb) => eb.or([eb('failed_attempts', '>', 0), eb('blocked', '=', 1)])),
    );
  }
}
