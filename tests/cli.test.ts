import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { loadConfig } from '../server/config.js';
import { createDeps, type Deps } from '../server/deps.js';
import { createLogger } from '../server/log.js';
import { Secret } from '../server/secret.js';

/** The `cvvops` command, run as a child process the way an operator runs it (`node --import tsx server/cli.ts …`). */
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The parent's environment without anything the configuration reads, so only what a test sets counts. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (k === 'NODE_ENV' || k.startsWith('CVVOPS_') || ['PORT', 'HOST', 'PUBLIC_BASE_URL', 'DATABASE_URL', 'LOG_LEVEL'].includes(k)) continue;
    if (k.startsWith('NODE_TEST') || k === 'NODE_OPTIONS') continue;
    env[k] = v;
  }
  return env;
}

function cli(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/cli.ts', ...args], {
      cwd: ROOT,
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh data folder, its database URL and a master key, as an operator would set them. */
function workspace(): { dir: string; dbPath: string; env: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), 'cvvops-cli-'));
  dirs.push(dir);
  const dbPath = join(dir, 'db.sqlite');
  return { dir, dbPath, env: { DATABASE_URL: `sqlite:${dbPath}`, CVVOPS_MASTER_KEY: randomBytes(32).toString('base64') } };
}

/** The server's dependencies over the same database and key the command used. */
async function depsFor(env: Record<string, string>): Promise<Deps> {
  return createDeps(loadConfig(env), createLogger('silent'));
}

function count(dbPath: string, table: string): number {
  const db = new Sqlite(dbPath, { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('cvvops CLI', () => {
  it('merchant create --json prints exactly one JSON object, and the keys work', async () => {
    const w = workspace();
    const r = await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'https://shop.example', '--origin', 'http://localhost:3000', '--json'], w.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 1, `one line on stdout: ${JSON.stringify(r.stdout)}`);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(out).sort(), ['liveKey', 'merchantId', 'testKey']);
    assert.match(out.merchantId!, /^mer_[A-Za-z0-9_-]+$/);
    assert.match(out.testKey!, /^sk_test_[A-Za-z0-9_-]{43}$/);
    assert.match(out.liveKey!, /^sk_live_[A-Za-z0-9_-]{43}$/);

    // The keys are stored only as HMACs: neither appears in the database files.
    for (const f of readdirSync(w.dir)) {
      const bytes = readFileSync(join(w.dir, f));
      assert.ok(!bytes.includes(out.testKey!) && !bytes.includes(out.liveKey!), `${f} holds no API key in clear`);
    }

    const d = await depsFor(w.env);
    try {
      const test = await d.merchants.authenticate(new Secret(out.testKey!));
      assert.equal(test.mode, 'test');
      assert.equal(test.merchant.id, out.merchantId);
      assert.equal(test.merchant.name, 'Shop');
      assert.deepEqual(test.merchant.allowedOrigins, ['https://shop.example', 'http://localhost:3000']);
      const live = await d.merchants.authenticate(new Secret(out.liveKey!));
      assert.equal(live.mode, 'live');
      assert.equal(live.merchant.id, out.merchantId);
      const tampered = out.testKey!.slice(0, -1) + (out.testKey!.endsWith('A') ? 'B' : 'A');
      await assert.rejects(d.merchants.authenticate(new Secret(tampered)), 'a key one character off is refused');
    } finally {
      await d.close();
    }
  });

  it('merchant create without --json prints the keys for a person', async () => {
    const w = workspace();
    const r = await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'https://shop.example'], w.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^merchant mer_\S+ \(Shop\)$/m);
    assert.match(r.stdout, /^test key: sk_test_\S{43}$/m);
    assert.match(r.stdout, /^live key: sk_live_\S{43}$/m);
  });

  it('--json keeps stdout to the JSON object even when warnings are printed (generated development key)', async () => {
    const w = workspace();
    const env = { DATABASE_URL: w.env.DATABASE_URL! };
    const r = await cli(['merchant', 'create', '--name', 'Shop', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(out).sort(), ['liveKey', 'merchantId', 'testKey']);
    assert.match(r.stderr, /master key/i, 'the warning goes to stderr');
    assert.ok(existsSync(join(w.dir, 'master.key')), 'outside production a key is generated into the data folder');
  });

  it('a bad origin exits non-zero, names the problem on stderr and creates nothing', async () => {
    const w = workspace();
    const bad = await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'https://ok.example', '--origin', 'https://shop.example/path', '--json'], w.env);
    assert.notEqual(bad.code, 0);
    assert.equal(bad.stdout, '', 'nothing on stdout');
    assert.match(bad.stderr, /https:\/\/shop\.example\/path/);
    assert.match(bad.stderr, /scheme:\/\/host\[:port\]/);

    const ftp = await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'ftp://x'], w.env);
    assert.notEqual(ftp.code, 0);
    assert.equal(ftp.stdout, '');
    assert.match(ftp.stderr, /ftp:\/\/x/);
    assert.match(ftp.stderr, /https/);

    const garbage = await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'not a url'], w.env);
    assert.notEqual(garbage.code, 0);
    assert.match(garbage.stderr, /not a url/);

    assert.equal(count(w.dbPath, 'merchants'), 0, 'no merchant was created');
    assert.equal(count(w.dbPath, 'api_keys'), 0, 'no API key was created');
    const d = await depsFor(w.env);
    try {
      assert.ok(!(await d.store.merchants.listAllAllowedOrigins()).includes('https://ok.example'));
    } finally {
      await d.close();
    }
  });

  it('keys rotate twice: the JWKS holds 3 keys, the newest first', async () => {
    const w = workspace();
    const r1 = await cli(['keys', 'rotate'], w.env);
    assert.equal(r1.code, 0, r1.stderr);
    const kid1 = /^active signing key: (\S+)$/m.exec(r1.stdout)?.[1];
    assert.ok(kid1, r1.stdout);
    const r2 = await cli(['keys', 'rotate'], w.env);
    assert.equal(r2.code, 0, r2.stderr);
    const kid2 = /^active signing key: (\S+)$/m.exec(r2.stdout)?.[1];
    assert.ok(kid2, r2.stdout);
    assert.notEqual(kid1, kid2);

    const d = await depsFor(w.env);
    try {
      await d.tokens.reload();
      const { keys } = d.tokens.jwks();
      // The first command created the initial key, then rotated; the second rotated again.
      assert.equal(keys.length, 3);
      assert.equal(new Set(keys.map((k) => k.kid)).size, 3);
      assert.equal(keys[0]!.kid, kid2, 'the newest (active) key first');
      assert.ok(keys.some((k) => k.kid === kid1));
      for (const k of keys) assert.equal(k.d, undefined, 'no private key material in the JWKS');
      // Order by activation, newest first (the initial key and kid1 may share a millisecond).
      const activated = new Map((await d.store.signingKeys.list()).map((k) => [k.kid, k.activatedAt]));
      const times = keys.map((k) => activated.get(k.kid!)!);
      for (let i = 1; i < times.length; i++) assert.ok(times[i - 1]! >= times[i]!, `JWKS order by activation: ${times.join(', ')}`);
      if (times[1]! > times[2]!) assert.equal(keys[1]!.kid, kid1);
    } finally {
      await d.close();
    }
  });

  it('migrate exits 0, and again', async () => {
    const w = workspace();
    const r = await cli(['migrate'], w.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /migrations applied \(sqlite\)/);
    assert.ok(existsSync(w.dbPath));
    const again = await cli(['migrate'], w.env);
    assert.equal(again.code, 0, again.stderr);
  });

  it('a malformed CVVOPS_MASTER_KEY makes every command exit non-zero, naming the variable, touching nothing', async () => {
    const commands = [['merchant', 'create', '--name', 'Shop', '--json'], ['keys', 'rotate'], ['migrate']];
    const badKeys = ['not base64!!', randomBytes(16).toString('base64'), randomBytes(33).toString('base64')];
    // Each command with each kind of bad key (not base64, too short, too long), rotating so each runs once.
    const runs = await Promise.all(
      commands.map(async (args, i) => {
        const w = workspace();
        const key = badKeys[i]!;
        return { args, key, w, r: await cli(args, { ...w.env, CVVOPS_MASTER_KEY: key }) };
      }),
    );
    for (const { args, key, w, r } of runs) {
      const what = `${args.join(' ')} with key ${JSON.stringify(key)}`;
      assert.notEqual(r.code, 0, what);
      assert.match(r.stderr, /CVVOPS_MASTER_KEY/, what);
      assert.ok(!r.stderr.includes(key), `${what}: the key's value is not echoed`);
      assert.equal(r.stdout, '', what);
      assert.ok(!existsSync(w.dbPath), `${what}: no database was created`);
      assert.ok(!existsSync(join(w.dir, 'master.key')), `${what}: no key was generated`);
    }
  });

  it('NODE_ENV=production without CVVOPS_MASTER_KEY refuses', async () => {
    const runs = await Promise.all(
      [['migrate'], ['keys', 'rotate'], ['merchant', 'create', '--name', 'Shop', '--json']].map(async (args) => {
        const w = workspace();
        const env = { DATABASE_URL: w.env.DATABASE_URL!, NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://cvv.example' };
        return { args, w, r: await cli(args, env) };
      }),
    );
    for (const { args, w, r } of runs) {
      const what = args.join(' ');
      assert.notEqual(r.code, 0, what);
      assert.match(r.stderr, /CVVOPS_MASTER_KEY/, what);
      assert.equal(r.stdout, '', what);
      assert.ok(!existsSync(join(w.dir, 'master.key')), `${what}: no key was generated in production`);
      assert.ok(!existsSync(w.dbPath), `${what}: no database was created`);
    }
    // The same command with a key set is accepted in production.
    const w = workspace();
    const ok = await cli(['migrate'], { ...w.env, NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://cvv.example' });
    assert.equal(ok.code, 0, ok.stderr);
  });
});
