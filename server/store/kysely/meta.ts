import { sql } from 'kysely';
import type { Database } from '../schema.js';
import type { MetaStore, ProtectedCounts } from '../store.js';
import { KyselyEngine } from './engine.js';

export class KyselyMetaStore implements MetaStore {
  constructor(private readonly e: KyselyEngine) {}

  async get(name: string): Promise<string | null> {
    const r = await this.e.db.selectFrom('meta').select('value').where('name', '=', name).executeTakeFirst();
    return r?.value ?? null;
  }

  async putIfAbsent(name: string, value: string): Promise<string> {
    await this.e.db
      .insertInto('meta')
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    return (await this.get(name)) ?? value;
  }

  async replace(name: string, expected: string, value: string): Promise<boolean> {
    const r = await this.e.db.updateTable('meta').set({ value }).where('name', '=', name).where('value', '=', expected).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async list(prefix: string): Promise<Array<{ name: string; value: string }>> {
    // An exact comparison of the name's start: not LIKE (`_` is a wildcard there), not a range (collations may order `/` and `_` apart).
    const rows = await this.e.db
      .selectFrom('meta')
      .select(['name', 'value'])
      .where(sql<boolean>`substr(name, 1, ${prefix.length}) = ${prefix}`)
      .execute();
    return rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async protectedCounts(): Promise<ProtectedCounts> {
    const db = this.e.db;
    const n = async (q: { executeTakeFirstOrThrow(): Promise<{ n: number | string | bigint }> }) => Number((await q.executeTakeFirstOrThrow()).n);
    const all = (t: keyof Database) => db.selectFrom(t).select((eb) => eb.fn.countAll<number>().as('n'));
    return {
      cards: await n(all('cards')),
      cvcSessions: await n(all('cvc_sessions')),
      signingKeys: await n(all('signing_keys')),
      webhookEndpoints: await n(all('webhook_endpoints')),
      processorSettings: await n(all('merchant_settings').where('processor', 'like', '%"sealed"%')),
      idempotencyRecords: await n(all('idempotency_keys')),
      replayRecords: await n(all('sessions').where('replay_sealed', 'is not', null)),
      cavvs: await n(all('tds_transactions').where('cavv_sealed', 'is not', null)),
      apiKeys: await n(all('api_keys')),
      cvvStatuses: await n(all('cvv_status')),
    };
  }

  async takeLease(name: string, holder: string, now: number, until: number): Promise<boolean> {
    await this.e.backgroundTurn();
    const r = await sql<{ holder: string }>`INSERT INTO leases (name, holder, until) VALUES (${name}, ${holder}, ${until})
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
      WHERE leases.until <= ${now} OR leases.holder = excluded.holder
      RETURNING holder`.execute(this.e.db);
    return r.rows.length === 1;
  }
}
