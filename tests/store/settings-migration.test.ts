import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Migrator } from 'kysely';
import { KyselyStore } from '../../server/store/kysely-store.js';
import { migrationProvider } from '../../server/store/migrations.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';

/**
 * Settings became per mode in migration 0007: a database from before, whose merchants had one shared record,
 * keeps everything they set, in both modes, and the old copy of the sealed processor settings is cleared.
 */
async function migrationKeepsSettings(url: string): Promise<void> {
  const store = await KyselyStore.open(url);
  try {
    const before = new Migrator({
      db: store.db,
      provider: migrationProvider(store.engine),
      ...(store.engine === 'postgres' ? { migrationTableSchema: (url.match(/search_path%3D(\w+)/) ?? [])[1] } : {}),
    });
    const { error } = await before.migrateTo('0006_charge_ownership');
    assert.equal(error, undefined);
    const processor = JSON.stringify({ type: 'http', url: 'https://psp.example/v1/charges', sealed: 'c2VhbGVk', keyVersion: 1 });
    await store.db
      .insertInto('merchants')
      .values({
        id: 'mer_old',
        name: 'Old shop',
        allowed_origins: JSON.stringify(['https://shop.example']),
        allowed_proxy_targets: JSON.stringify(['https://psp.example/']),
        processor,
        cvv_block_threshold: 5,
        cvc_session_ttl_seconds: 600,
        created_at: 1000,
        updated_at: 2000,
      })
      .execute();
    await store.migrate();
    for (const mode of ['test', 'live'] as const) {
      assert.deepEqual(
        await store.merchants.get('mer_old', mode),
        {
          id: 'mer_old',
          name: 'Old shop',
          mode,
          allowedOrigins: ['https://shop.example'],
          allowedProxyTargets: ['https://psp.example/'],
          processor: JSON.parse(processor),
          cvvBlockThreshold: 5,
          cvcSessionTtlSeconds: 600,
          createdAt: 1000,
          updatedAt: 2000,
        },
        `${mode}: what the merchant set`,
      );
    }
    const legacy = await store.db.selectFrom('merchants').select('processor').where('id', '=', 'mer_old').executeTakeFirstOrThrow();
    assert.ok(!legacy.processor.includes('c2VhbGVk'), 'the old sealed copy is cleared');
  } finally {
    await store.close();
  }
}

describe('migration 0007: settings per mode', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('SQLite: the shared record becomes the same settings in both modes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cvvops-mig-'));
    dirs.push(dir);
    await migrationKeepsSettings(`sqlite:${join(dir, 'db.sqlite')}`);
  });

  it('PostgreSQL: the shared record becomes the same settings in both modes', { skip: PG_BASE ? false : 'TEST_DATABASE_URL not set' }, async () => {
    const pg = await freshPgSchema();
    try {
      await migrationKeepsSettings(pg.url);
    } finally {
      await pg.drop();
    }
  });
});
