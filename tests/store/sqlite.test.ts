import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openMigrated, storeContract } from './contract.js';

/** The store contract on SQLite: a fresh temporary database file per run. */
const dirs: string[] = [];

storeContract('KyselyStore on SQLite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cvvops-store-'));
  dirs.push(dir);
  return openMigrated(`sqlite:${join(dir, 'store.db')}`);
});

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
