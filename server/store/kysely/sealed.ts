import { sql } from 'kysely';
import type { Sealed } from '../../types/shared.js';
import type { Mode, LongLivedKind, SealedItem, SealedStore } from '../store.js';
import { KyselyEngine, pack, unpack } from './engine.js';

/** Each purpose's sealed columns (the key version is a packed value's first byte). */
const COLUMNS: Array<{ purpose: string; table: string; column: string }> = [
  { purpose: 'card', table: 'cards', column: 'number_sealed' },
  { purpose: 'card', table: 'cards', column: 'holder_sealed' },
  { purpose: 'cvv', table: 'cvc_sessions', column: 'sealed' },
  { purpose: 'signing-key', table: 'signing_keys', column: 'private_sealed' },
  { purpose: 'webhook-secret', table: 'webhook_endpoints', column: 'secret_sealed' },
  { purpose: 'replay', table: 'sessions', column: 'replay_sealed' },
  { purpose: 'replay', table: 'charges', column: 'response_sealed' },
  { purpose: 'idempotency', table: 'idempotency_keys', column: 'response_sealed' },
  { purpose: 'cavv', table: 'tds_transactions', column: 'cavv_sealed' },
];

interface SealedProcessor {
  sealed?: unknown;
  keyVersion?: unknown;
  scope?: unknown;
}
const sealedProcessor = (text: string): (SealedProcessor & { sealed: string; keyVersion: number }) | null => {
  const p = JSON.parse(text) as SealedProcessor;
  return typeof p.sealed === 'string' && typeof p.keyVersion === 'number' ? (p as SealedProcessor & { sealed: string; keyVersion: number }) : null;
};

export class KyselySealedStore implements SealedStore {
  constructor(private readonly e: KyselyEngine) {}

  async versionCounts(purposes?: readonly string[]): Promise<Array<{ purpose: string; version: number; count: number }>> {
    const counts = new Map<string, number>();
    const add = (purpose: string, version: number, n: number) => counts.set(`${purpose}:${version}`, (counts.get(`${purpose}:${version}`) ?? 0) + n);
    const wanted = (p: string) => !purposes || purposes.includes(p);
    for (const c of COLUMNS.filter((x) => wanted(x.purpose))) {
      // Two engines, one statement: the first byte of the packed value (a blob in SQLite, bytea in PostgreSQL).
      const rows = await sql<{ v: Buffer | Uint8Array; n: number | string }>`SELECT substr(${sql.ref(c.column)}, 1, 1) AS v, count(*) AS n
        FROM ${sql.table(c.table)} WHERE ${sql.ref(c.column)} IS NOT NULL GROUP BY substr(${sql.ref(c.column)}, 1, 1)`.execute(this.e.db);
      for (const r of rows.rows) add(c.purpose, Buffer.from(r.v)[0]!, Number(r.n));
    }
    if (wanted('settings'))
      for (const r of await this.e.db.selectFrom('merchant_settings').select('processor').where('processor', 'like', '%"sealed"%').execute()) {
        const p = sealedProcessor(r.processor);
        if (p) add('settings', p.keyVersion, 1);
      }
    const kc = wanted('key-check') ? await this.e.db.selectFrom('meta').select('value').where('name', '=', 'key_check').executeTakeFirst() : undefined;
    if (kc) add('key-check', (JSON.parse(kc.value) as { v: number }).v, 1);
    return [...counts].map(([k, count]) => {
      const i = k.lastIndexOf(':');
      return { purpose: k.slice(0, i), version: Number(k.slice(i + 1)), count };
    });
  }

  async listBelow(kind: LongLivedKind, version: number, limit: number): Promise<SealedItem[]> {
    const below = (column: string) => sql<boolean>`substr(${sql.ref(column)}, 1, 1) < ${Buffer.from([version])}`;
    if (kind === 'signing-key') {
      const rows = await this.e.db
        .selectFrom('signing_keys')
        .select(['kid', 'private_sealed'])
        .where(below('private_sealed'))
        .orderBy('kid')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ kind, ref: r.kid, merchantId: null, mode: null, scope: null, sealed: unpack(r.private_sealed) }));
    }
    if (kind === 'cvv') {
      const rows = await this.e.db
        .selectFrom('cvc_sessions')
        .select(['id', 'merchant_id', 'mode', 'sealed'])
        .where(below('sealed'))
        .orderBy('id')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ kind, ref: r.id, merchantId: r.merchant_id, mode: r.mode as Mode, scope: null, sealed: unpack(r.sealed) }));
    }
    if (kind === 'webhook-secret') {
      const rows = await this.e.db
        .selectFrom('webhook_endpoints')
        .select(['id', 'merchant_id', 'mode', 'secret_sealed'])
        .where(below('secret_sealed'))
        .orderBy('id')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ kind, ref: r.id, merchantId: r.merchant_id, mode: r.mode as Mode, scope: null, sealed: unpack(r.secret_sealed) }));
    }
    const rows = await this.e.db
      .selectFrom('merchant_settings')
      .select(['merchant_id', 'mode', 'processor'])
      .where('processor', 'like', '%"sealed"%')
      .orderBy('merchant_id')
      .orderBy('mode')
      .execute();
    const out: SealedItem[] = [];
    for (const r of rows) {
      const p = sealedProcessor(r.processor);
      if (!p || p.keyVersion >= version) continue;
      out.push({
        kind,
        ref: `${r.merchant_id}|${r.mode}`,
        merchantId: r.merchant_id,
        mode: r.mode as Mode,
        scope: typeof p.scope === 'string' ? p.scope : null,
        sealed: { keyVersion: p.keyVersion, blob: Buffer.from(p.sealed, 'base64') },
      });
      if (out.length === limit) break;
    }
    return out;
  }

  async reseal(item: SealedItem, next: Sealed): Promise<boolean> {
    if (item.kind === 'signing-key') {
      const r = await this.e.db
        .updateTable('signing_keys')
        .set({ private_sealed: pack(next), key_version: next.keyVersion })
        .where('kid', '=', item.ref)
        .where('private_sealed', '=', pack(item.sealed))
        .executeTakeFirst();
      return Number(r.numUpdatedRows) === 1;
    }
    if (item.kind === 'cvv') {
      // Only if still there, unchanged: a CVV used (taken) or deleted meanwhile is not brought back.
      const r = await this.e.db
        .updateTable('cvc_sessions')
        .set({ sealed: pack(next), key_version: next.keyVersion })
        .where('id', '=', item.ref)
        .where('sealed', '=', pack(item.sealed))
        .executeTakeFirst();
      return Number(r.numUpdatedRows) === 1;
    }
    if (item.kind === 'webhook-secret') {
      const r = await this.e.db
        .updateTable('webhook_endpoints')
        .set({ secret_sealed: pack(next) })
        .where('id', '=', item.ref)
        .where('secret_sealed', '=', pack(item.sealed))
        .executeTakeFirst();
      return Number(r.numUpdatedRows) === 1;
    }
    // Settings: the processor JSON, its sealed field replaced, only if it is still the one read.
    const row = await this.e.db
      .selectFrom('merchant_settings')
      .select('processor')
      .where('merchant_id', '=', item.merchantId!)
      .where('mode', '=', item.mode!)
      .executeTakeFirst();
    const p = row ? sealedProcessor(row.processor) : null;
    if (!row || !p || p.sealed !== item.sealed.blob.toString('base64') || p.keyVersion !== item.sealed.keyVersion) return false;
    const processor = JSON.stringify({ ...p, sealed: next.blob.toString('base64'), keyVersion: next.keyVersion });
    const r = await this.e.db
      .updateTable('merchant_settings')
      .set({ processor })
      .where('merchant_id', '=', item.merchantId!)
      .where('mode', '=', item.mode!)
      .where('processor', '=', row.processor)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }
}
