#!/usr/bin/env node
// The `cvvops` command: runs the built CLI (npm ci builds dist/ through the prepare script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../dist/server/cli.js', import.meta.url));
if (!existsSync(cli)) {
  process.stderr.write('cvvops: dist/ is missing; run `npm run build` first.\n');
  process.exit(1);
}
await import(cli);
