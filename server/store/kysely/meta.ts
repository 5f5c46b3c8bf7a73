import { sql } from 'kysely';
import type { MetaStore } from '../store.js';
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

  async takeLease(name: string, holder: string, now: number, until: number): Promise<boolean> {
    await this.e.backgroundTurn();
    const r = await sql<{ holder: string }>`INSERT INTO leases (name, holder, until) VALUES (${name}, ${holder}, ${until})
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
      WHERE leases.until <= ${now} OR leases.holder = excluded.holder
      RETURNING holder`.execute(this.e.db);
    return r.rows.length === 1;
  }
}
