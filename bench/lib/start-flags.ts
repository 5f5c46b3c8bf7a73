import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..', '..');

/**
 * The Node flags `npm start` runs the server with (package.json's start
 * script, `node <flags> dist/server/main.js`): the server under test runs
 * with the same default settings.
 */
export function startFlags(): string[] {
  const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const m = /^node((?:\s+--[\w-]+(?:=\S+)?)*)\s+dist\/server\/main\.js$/.exec(start);
  if (!m) throw new Error(`package.json's start script is not "node [--flags] dist/server/main.js": ${start}`);
  return m[1]!.trim().split(/\s+/).filter(Boolean);
}
