import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { KyselyStore } from '../../server/store/kysely-store.js';
import { openMigrated, storeContract } from './contract.js';

/**
 * The store contract on PostgreSQL, when TEST_DATABASE_URL names a database
 * (e.g. postgres://postgres@127.0.0.1:5432/test). Each store gets a fresh
 * schema (dropped afterwards), selected through the connection's search_path.
 * Without TEST_DATABASE_URL the suite is reported as skipped, never passed.
 */
const base = process.env.TEST_DATABASE_URL;

if (!base) {
  describe('Store contract: KyselyStore on PostgreSQL', () => {
    it('runs the store contract on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
} else {
  const schemas: string[] = [];
  const admin = new pg.Client({ connectionString: base });
  let connected: Promise<unknown> | null = null;

  /** A store over a new, empty schema: the connection string sets search_path to it. */
  const openInFreshSchema = async (): Promise<KyselyStore> => {
    connected ??= admin.connect();
    await connected;
    const schema = `cvvops_test_${randomBytes(6).toString('hex')}`;
    await admin.query(`CREATE SCHEMA ${schema}`);
    schemas.push(schema);
    const url = `${base}${base.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
    return openMigrated(url);
  };

  storeContract('KyselyStore on PostgreSQL', openInFreshSchema);

  describe('KyselyStore on PostgreSQL: schemas', () => {
    it('migrates into its own schema even when another schema already has the migration tables', async () => {
      // Kysely's Migrator looks for its tables in every schema unless pinned to one.
      const first = await openInFreshSchema();
      const second = await openInFreshSchema();
      try {
        await second.migrate();
        const [s1, s2] = schemas.slice(-2);
        const { rows } = await admin.query<{ table_schema: string }>(
          `SELECT table_schema FROM information_schema.tables WHERE table_name = 'kysely_migration' AND table_schema = ANY($1)`,
          [[s1, s2]],
        );
        assert.deepEqual(rows.map((r) => r.table_schema).sort(), [s1, s2].sort(), 'each schema keeps its own migration table');
        await first.meta.putIfAbsent('which', 'first');
        assert.equal(await second.meta.get('which'), null, 'the schemas do not share rows');
      } finally {
        await first.close();
        await second.close();
      }
    });
  });

  after(async () => {
    if (!connected) return;
    try {
      for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    } finally {
      await admin.end();
    }
  });
}
