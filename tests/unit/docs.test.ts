import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { describe, it } from 'node:test';
import { startFlags } from '../../bench/lib/start-flags.js';
import { ERRORS } from '../../server/errors.js';

/** The repository's Markdown: the README, docs/ and the SDK's README. */
const MARKDOWN = [
  'README.md',
  'packages/node/README.md',
  ...readdirSync('docs')
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
const anchorsOf = (markdown: string) => {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const base = slug(m[1]!.replace(/`/g, ''));
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
};

/** The README, docs/, .env.example and the code must say the same things. */
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
    for (const f of [...MARKDOWN, '.env.example']) {
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

  it('docs/ has the pages the README links, and every relative link in the Markdown leads to a file and heading that exist', () => {
    const readme = readFileSync('README.md', 'utf8');
    for (const page of [
      'docs/README.md',
      'docs/concepts.md',
      'docs/integration.md',
      'docs/webhooks.md',
      'docs/going-live.md',
      'docs/instances.md',
      'docs/operations.md',
    ])
      assert.ok(readme.includes(`](${page}`), `the README links ${page}`);
    const broken: string[] = [];
    let checked = 0;
    for (const file of MARKDOWN) {
      const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const link = m[1]!;
        if (/^[a-z]+:/i.test(link)) continue;
        checked++;
        const [path, anchor] = link.split('#') as [string, string | undefined];
        const target = path === '' ? file : normalize(join(dirname(file), path));
        if (!existsSync(target)) {
          broken.push(`${file}: ${link} (no ${target})`);
          continue;
        }
        if (anchor && !statSync(target).isDirectory() && target.endsWith('.md') && !anchorsOf(readFileSync(target, 'utf8')).has(anchor))
          broken.push(`${file}: ${link} (no heading #${anchor} in ${target})`);
      }
    }
    assert.ok(checked > 50, `${checked} links checked`);
    assert.deepEqual(broken, []);
  });
});
