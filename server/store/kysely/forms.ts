import type { CustomFormRecord, Mode, FormStore } from '../store.js';
import { KyselyEngine } from './engine.js';
import { toForm } from './rows.js';

export class KyselyFormStore implements FormStore {
  constructor(private readonly e: KyselyEngine) {}

  async insert(f: CustomFormRecord): Promise<void> {
    await this.e.db
      .insertInto('custom_forms')
      .values({
        id: f.id,
        merchant_id: f.merchantId,
        mode: f.mode,
        name: f.name,
        html: f.html,
        css: f.css,
        created_at: f.createdAt,
        updated_at: f.updatedAt,
      })
      .execute();
  }

  async get(id: string): Promise<CustomFormRecord | null> {
    const r = await this.e.db.selectFrom('custom_forms').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toForm(r) : null;
  }

  async list(merchantId: string, mode: Mode): Promise<CustomFormRecord[]> {
    const rows = await this.e.db
      .selectFrom('custom_forms')
      .selectAll()
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map((r) => toForm(r));
  }

  async update(merchantId: string, mode: Mode, id: string, p: { name: string; html: string; css: string; now: number }): Promise<boolean> {
    const r = await this.e.db
      .updateTable('custom_forms')
      .set({ name: p.name, html: p.html, css: p.css, updated_at: p.now })
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async delete(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const r = await this.e.db.deleteFrom('custom_forms').where('id', '=', id).where('merchant_id', '=', merchantId).where('mode', '=', mode).executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }
}
