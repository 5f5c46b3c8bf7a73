/**
 * `npm start`'s build step: runs `npm run build` only when something it
 * builds from changed since the last build (or an output is missing). The
 * inputs are hashed (content, not modification times, so a fresh checkout
 * with the same sources does not rebuild twice); the hash of the last good
 * build is kept in dist/.build-inputs.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const INPUTS = [
  'server',
  'public/src',
  'public/build.mjs',
  'packages/node/src',
  'packages/node/scripts',
  'packages/node/package.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'package.json',
  'package-lock.json',
];
const OUTPUTS = ['dist/server/main.js', 'dist/server/cli.js', 'public/sdk/v1/cvvops.js', 'public/assets/form.js', 'packages/node/dist'];
const STAMP = join(root, 'dist', '.build-inputs');

function files(path) {
  const full = join(root, path);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full, { withFileTypes: true })
    .filter((e) => e.name !== 'node_modules' && e.name !== 'dist')
    .flatMap((e) => files(relative(root, join(full, e.name))));
}

const hash = createHash('sha256');
for (const f of INPUTS.flatMap(files).sort())
  hash
    .update(f)
    .update('\0')
    .update(readFileSync(join(root, f)))
    .update('\0');
const digest = hash.digest('hex');
const built = existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === digest && OUTPUTS.every((o) => existsSync(join(root, o)));
if (built) {
  process.stdout.write('build: up to date (no source changed since the last build)\n');
} else {
  execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  writeFileSync(STAMP, `${digest}\n`);
}
