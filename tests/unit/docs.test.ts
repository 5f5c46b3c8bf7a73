import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { startFlags } from '../../bench/lib/start-flags.js';
import { ERRORS } from '../../server/errors.js';

/** The README, .env.example and the code must say the same things. */
describe('the documentation is true to the code', () => {
  it('the README gives the SRI hash of the SDK the server serves (npm run build writes it)', () => {
    const readme = readFileSync('README.md', 'utf8');
    const sdk = readFileSync('public/sdk/v1/cvvops.js');
    const sri = `sha384-${createHash('sha384').update(sdk).digest('base64')}`;
    assert.ok(readme.includes(`integrity="${sri}"`), `README must state ${sri}`);
  });

  it('the README states the Node flags npm start runs the server with, and the benchmark runs it with them', () => {
    const readme = readFileSync('README.md', 'utf8').replace(/\s+/g, ' ');
    const flags = startFlags();
    assert.ok(
      flags.some((f) => f.startsWith('--max-old-space-size=')),
      'the heap is capped by default',
    );
    assert.ok(readme.includes(`node ${flags.join(' ')} dist/server/main.js`), `README must state: node ${flags.join(' ')} dist/server/main.js`);
  });

  it('every variable the configuration reads is in .env.example, and nothing else', () => {
    const config = readFileSync('server/config.ts', 'utf8');
    const used = new Set(
      [...config.matchAll(/env\.([A-Z_]+)|'([A-Z][A-Z_]+)'/g)]
        .map((m) => m[1] ?? m[2]!)
        .filter((v) => /^(PORT|HOST|PUBLIC_BASE_URL|DATABASE_URL|LOG_LEVEL|CVVOPS_[A-Z_]+)$/.test(v)),
    );
    const example = readFileSync('.env.example', 'utf8');
    const listed = new Set([...example.matchAll(/^#?([A-Z][A-Z_]+)=/gm)].map((m) => m[1]!));
    for (const v of used) assert.ok(listed.has(v), `${v} is read by server/config.ts but missing from .env.example`);
    for (const v of listed) assert.ok(used.has(v) || v === 'NODE_ENV', `${v} is in .env.example but not read by server/config.ts`);
  });

  it('the documentation a clone carries stands on its own: nothing points outside the repository', () => {
    for (const f of ['README.md', 'docs/api.md', 'packages/node/README.md', '.env.example']) {
      const text = readFileSync(f, 'utf8');
      assert.ok(!text.includes('../shared'), `${f} points to ../shared, which a clone does not have`);
    }
    assert.ok(readFileSync('README.md', 'utf8').includes('](docs/api.md'), 'the README links the API reference in the repository');
  });

  it('docs/api.md names every path of the OpenAPI document and every error code, with what it means', () => {
    const api = readFileSync('docs/api.md', 'utf8');
    const doc = JSON.parse(readFileSync('openapi.json', 'utf8')) as { paths: Record<string, unknown> };
    const paths = Object.keys(doc.paths);
    assert.ok(paths.length > 30);
    for (const p of paths) assert.ok(api.includes(p), `docs/api.md must document ${p}`);
    const codes = Object.keys(ERRORS);
    assert.ok(codes.length > 20);
    for (const c of codes) assert.ok(api.includes(`\`${c}\``), `docs/api.md must explain the error code ${c}`);
  });
});
