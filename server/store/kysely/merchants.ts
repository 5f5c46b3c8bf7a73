import { type Updateable } from 'kysely';
import type { MerchantSettingsTable } from '../schema.js';
import type { ApiKeyRecord, MerchantRecord, Mode, MerchantStore } from '../store.js';
import { Unit, KyselyEngine } from './engine.js';
import { toApiKey, toMerchant } from './rows.js';

export class KyselyMerchantStore implements MerchantStore {
  constructor(private readonly e: KyselyEngine) {}

  /**
   * Merchants are read on every call and change rarely: kept for a second.
   * A change made through this store is seen at once; one made by another
   * instance within a second.
   */
  readonly #merchants = new Map<string, { at: number; m: MerchantRecord }>();

  async insert(m: MerchantRecord): Promise<void> {
    const db = this.e.db;
    const settings = {
      merchant_id: m.id,
      allowed_origins: JSON.stringify(m.allowedOrigins),
      allowed_proxy_targets: JSON.stringify(m.allowedProxyTargets),
      processor: JSON.stringify(m.processor),
      cvv_block_threshold: m.cvvBlockThreshold,
      cvc_session_ttl_seconds: m.cvcSessionTtlSeconds,
      updated_at: m.updatedAt,
    };
    await this.e.transaction(function* (): Unit<void> {
      // The legacy setting columns are not read (settings live per mode in merchant_settings).
      yield db.insertInto('merchants').values({
        id: m.id,
        name: m.name,
        allowed_origins: '[]',
        allowed_proxy_targets: '[]',
        processor: '{"type":"simulator"}',
        cvv_block_threshold: m.cvvBlockThreshold,
        cvc_session_ttl_seconds: m.cvcSessionTtlSeconds,
        created_at: m.createdAt,
        updated_at: m.updatedAt,
      });
      yield db.insertInto('merchant_settings').values([
        { ...settings, mode: 'test' },
        { ...settings, mode: 'live' },
      ]);
    });
  }
  async get(id: string, mode: Mode): Promise<MerchantRecord | null> {
    const now = (this.e.opts.now ?? Date.now)();
    const key = `${id}|${mode}`;
    const hit = this.#merchants.get(key);
    if (hit && now - hit.at < 1000) return hit.m;
    const r = await this.e.db
      .selectFrom('merchant_settings')
      .innerJoin('merchants', 'merchants.id', 'merchant_settings.merchant_id')
      .selectAll('merchant_settings')
      .select(['merchants.id as id', 'merchants.name as name', 'merchants.created_at as created_at'])
      .where('merchant_settings.merchant_id', '=', id)
      .where('merchant_settings.mode', '=', mode)
      .executeTakeFirst();
    if (!r) return null;
    const m = Object.freeze(toMerchant(r)) as MerchantRecord;
    if (this.#merchants.size > 10_000) this.#merchants.clear();
    this.#merchants.set(key, { at: now, m });
    return m;
  }

  async update(id: string, mode: Mode, patch: Parameters<MerchantStore['update']>[2], now: number): Promise<MerchantRecord | null> {
    const set: Updateable<MerchantSettingsTable> = { updated_at: now };
    if (patch.allowedOrigins) set.allowed_origins = JSON.stringify(patch.allowedOrigins);
    if (patch.allowedProxyTargets) set.allowed_proxy_targets = JSON.stringify(patch.allowedProxyTargets);
    if (patch.processor) set.processor = JSON.stringify(patch.processor);
    if (patch.cvvBlockThreshold !== undefined) set.cvv_block_threshold = patch.cvvBlockThreshold;
    if (patch.cvcSessionTtlSeconds !== undefined) set.cvc_session_ttl_seconds = patch.cvcSessionTtlSeconds;
    await this.e.db.updateTable('merchant_settings').set(set).where('merchant_id', '=', id).where('mode', '=', mode).execute();
    this.#merchants.delete(`${id}|${mode}`);
    return this.get(id, mode);
  }

  async listAllAllowedOrigins(): Promise<string[]> {
    const rows = await this.e.db.selectFrom('merchant_settings').select('allowed_origins').execute();
    const all = new Set<string>();
    for (const r of rows) for (const o of JSON.parse(r.allowed_origins) as string[]) all.add(o);
    return [...all];
  }

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.e.db
      .insertInto('api_keys')
      .values({
        id: k.id,
        merchant_id: k.merchantId,
        mode: k.mode,
        hash: k.hash,
        suffix: k.suffix,
        created_at: k.createdAt,
        revoked_at: k.revokedAt,
      })
      .execute();
  }

  async listAll(): Promise<Array<{ id: string; name: string; createdAt: number }>> {
    const rows = await this.e.db.selectFrom('merchants').select(['id', 'name', 'created_at']).orderBy('created_at').orderBy('id').execute();
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: Number(r.created_at) }));
  }

  async listApiKeys(merchantId: string): Promise<ApiKeyRecord[]> {
    const rows = await this.e.db.selectFrom('api_keys').selectAll().where('merchant_id', '=', merchantId).orderBy('created_at').orderBy('id').execute();
    return rows.map(toApiKey);
  }

  async revokeApiKey(merchantId: string, id: string, at: number): Promise<boolean> {
    const r = await this.e.db
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where((eb) => eb.or([eb('revoked_at', 'is', null), eb('revoked_at', '>', at)]))
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 1) return true;
    return !!(await this.e.db.selectFrom('api_keys').select('id').where('id', '=', id).where('merchant_id', '=', merchantId).executeTakeFirst());
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | null> {
    const {
      rows: [r],
    } = await this.e.exec('findApiKeyByHash', { hash }, (a) => this.e.db.selectFrom('api_keys').selectAll().where('hash', '=', a.hash));
    return r ? toApiKey(r) : null;
  }
}
