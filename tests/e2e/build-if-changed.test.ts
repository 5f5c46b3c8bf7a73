import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = () => execFileSync(process.execPath, ['scripts/build-if-changed.mjs'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** `npm start` builds only when a source changed: its prestart is scripts/build-if-changed.mjs. */
describe('npm start builds only when sources changed', () => {
  it('is what prestart runs, and a second run with nothing changed builds nothing', { timeout: 180_000 }, () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.prestart, 'node scripts/build-if-changed.mjs');
    run(); // builds if this checkout has not been built by it yet
    const before = statSync(join(ROOT, 'dist/server/main.js')).mtimeMs;
    const out = run();
    assert.match(out, /up to date/);
    assert.equal(statSync(join(ROOT, 'dist/server/main.js')).mtimeMs, before, 'the server was not compiled again');
  });
});
