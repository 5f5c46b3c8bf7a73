import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** TEST_DATABASE_URL, or undefined (then PostgreSQL tests report themselves as skipped). */
export const PG_BASE = process.env.TEST_DATABASE_URL;

/**
 * A new, empty schema in the test database; the returned URL selects it
 * through the connection's search_path, so every test run is isolated.
 */
export async function freshPgSchema(): Promise<{ url: string; schema: string; drop: () => Promise<void> }> {
  if (!PG_BASE) throw new Error('TEST_DATABASE_URL not set');
  const schema = `cvvops_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_BASE });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const url = `${PG_BASE}${PG_BASE.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
  return {
    url,
    schema,
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_BASE });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    },
  };
}
