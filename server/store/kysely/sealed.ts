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

/** The kinds with one row per value: the table, its key, the sealed column, whether the row names a merchant and mode, and whether a key_version column sits beside it. */
const ROW_KINDS = {
  'signing-key': { table: 'signing_keys', key: 'kid', column: 'private_sealed', owned: false, keyVersion: true },
  cvv: { table: 'cvc_sessions', key: 'id', column: 'sealed', owned: true, keyVersion: true },
  'webhook-secret': { table: 'webhook_endpoints', key: 'id', column: 'secret_sealed', owned: true, keyVersion: false },
} as const;

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
    if (kind !== 'settings') {
      const k = ROW_KINDS[kind];
      const owner = k.owned ? sql`merchant_id, mode` : sql`NULL AS merchant_id, NULL AS mode`;
      const rows = await sql<{
        ref: string;
        merchant_id: string | null;
        mode: string | null;
        sealed: Buffer | Uint8Array;
      }>`SELECT ${sql.ref(k.key)} AS ref, ${owner},
        ${sql.ref(k.column)} AS sealed FROM ${sql.table(k.table)} WHERE substr(${sql.ref(k.column)}, 1, 1) < ${Buffer.from([version])}
        ORDER BY ${sql.ref(k.key)} LIMIT ${limit}`.execute(this.e.db);
      return rows.rows.map((r) => ({ kind, ref: r.ref, merchantId: r.merchant_id, mode: r.mode as Mode | null, scope: null, sealed: unpack(r.sealed) }));
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
    if (item.kind !== 'settings') {
      // Only if still there, unchanged: a CVV used (taken) or deleted meanwhile is not brought back.
      const k = ROW_KINDS[item.kind];
      const version = k.keyVersion ? sql`, key_version = ${next.keyVersion}` : sql.raw('');
      const r = await sql`UPDATE ${sql.table(k.table)} SET ${sql.ref(k.column)} = ${pack(next)}${version}
        WHERE ${sql.ref(k.key)} = ${item.ref} AND ${sql.ref(k.column)} = ${pack(item.sealed)}`.execute(this.e.db);
      return Number(r.numAffectedRows ?? 0n) === 1;
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
