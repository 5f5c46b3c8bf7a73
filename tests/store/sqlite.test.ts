import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { KyselyStore } from '../../server/store/kysely-store.js';
import { storeContract } from './contract.js';

/** The store contract on SQLite: a fresh temporary database file per run. */
const dirs: string[] = [];

storeContract('KyselyStore on SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvvops-store-'));
  dirs.push(dir);
  const store = await KyselyStore.open(`sqlite:${join(dir, 'store.db')}`);
  try {
    await store.migrate();
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
});

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
