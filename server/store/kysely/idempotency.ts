import type { IdempotencyRecord, IdempotencyStore } from '../store.js';
import { pack, unpack, KyselyEngine } from './engine.js';

export class KyselyIdempotencyStore implements IdempotencyStore {
  constructor(private readonly e: KyselyEngine) {}

  async reserve(p: Parameters<IdempotencyStore['reserve']>[0]): Promise<IdempotencyRecord | null> {
    const where = { merchant_id: p.merchantId, endpoint: p.endpoint, idem_key: p.key };
    await this.e.db
      .deleteFrom('idempotency_keys')
      .where('merchant_id', '=', where.merchant_id)
      .where('endpoint', '=', where.endpoint)
      .where('idem_key', '=', where.idem_key)
      .where('expires_at', '<=', p.now)
      .execute();
    const ins = await this.e.db
      .insertInto('idempotency_keys')
      .values({ ...where, request_hash: p.requestHash, status: null, response_sealed: null, created_at: p.now, expires_at: p.expiresAt })
      .onConflict((oc) => oc.columns(['merchant_id', 'endpoint', 'idem_key']).doNothing())
      .executeTakeFirst();
    if (Number(ins.numInsertedOrUpdatedRows ?? 0n) === 1) return null;
    const r = await this.e.db
      .selectFrom('idempotency_keys')
      .select(['request_hash', 'status', 'response_sealed'])
      .where('merchant_id', '=', where.merchant_id)
      .where('endpoint', '=', where.endpoint)
      .where('idem_key', '=', where.idem_key)
      .executeTakeFirst();
    if (!r) return this.reserve(p);
    return {
      requestHash: r.request_hash,
      status: r.status === null ? null : Number(r.status),
      responseSealed: r.response_sealed ? unpack(r.response_sealed) : null,
    };
  }

  async complete(p: Parameters<IdempotencyStore['complete']>[0]): Promise<void> {
    await this.e.db
      .updateTable('idempotency_keys')
      .set({ status: p.status, response_sealed: pack(p.responseSealed) })
      .where('merchant_id', '=', p.merchantId)
      .where('endpoint', '=', p.endpoint)
      .where('idem_key', '=', p.key)
      .execute();
  }

  async release(p: Parameters<IdempotencyStore['release']>[0]): Promise<void> {
    await this.e.db
      .deleteFrom('idempotency_keys')
      .where('merchant_id', '=', p.merchantId)
      .where('endpoint', '=', p.endpoint)
      .where('idem_key', '=', p.key)
      .where('status', 'is', null)
      .execute();
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    await this.e.backgroundTurn();
    const keys = await this.e.db
      .selectFrom('idempotency_keys')
      .select(['merchant_id', 'endpoint', 'idem_key'])
      .where('expires_at', '<=', now)
      .limit(limit)
      .execute();
    let n = 0;
    for (const k of keys) {
      const r = await this.e.db
        .deleteFrom('idempotency_keys')
        .where('merchant_id', '=', k.merchant_id)
        .where('endpoint', '=', k.endpoint)
        .where('idem_key', '=', k.idem_key)
        .where('expires_at', '<=', now)
        .executeTakeFirst();
      n += Number(r.numDeletedRows);
    }
    return n;
  }
}
