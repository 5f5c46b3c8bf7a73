import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhooks } from '../packages/node/src/webhooks.js';
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

  it('keys status: the master key and its check, each purpose with what it protects (counted), the signing keys, what is due; never a key', async () => {
    const w = workspace();
    assert.equal((await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'https://shop.example'], w.env)).code, 0);
    const r = await cli(['keys', 'status', '--json'], w.env);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      master: { provider: string; source: string; check: string; record: { name: string; rootId: string }; keks: Array<{ version: number; state: string }> };
      purposes: Array<{ purpose: string; versions: number[]; stored: number | null }>;
      signingKeys: Array<{ kid: string; state: string }>;
      due: string[];
    };
    assert.deepEqual([s.master.provider, s.master.source, s.master.check, s.master.record.name], ['local', 'CVVOPS_MASTER_KEY', 'ok', 'local']);
    assert.match(s.master.record.rootId, /^[0-9a-f]{16}$/, "the root key's public id");
    assert.deepEqual(s.master.keks, [{ version: 1, state: 'wraps', dataKeys: 0 }]);
    const by = new Map(s.purposes.map((p) => [p.purpose, p]));
    for (const p of ['cvv', 'card', 'signing-key', 'webhook-secret', 'settings', 'api-key']) assert.ok(by.has(p), p);
    assert.equal(by.get('api-key')!.stored, 2, 'the new merchant has a test and a live key');
    assert.equal(by.get('card')!.stored, 0);
    assert.equal(by.get('signing-key')!.stored, s.signingKeys.length);
    assert.equal(s.signingKeys.filter((k) => k.state === 'active').length, 1);
    assert.deepEqual(s.due, []);
    assert.ok(!r.stdout.includes(w.env.CVVOPS_MASTER_KEY!), 'never the master key');
    assert.doesNotMatch(r.stdout, /sk_(test|live)_|"d":/, 'never an API key or a private key');
    const text = await cli(['keys', 'status'], w.env);
    assert.match(text.stdout, /^root: CVVOPS_MASTER_KEY \(provider local\), check ok$/m);
    assert.match(text.stdout, /^KEKs: v1 \(wraps, 0 data keys\)$/m);
    assert.match(text.stdout, /^ {2}signing-key +v1 \(writes, 1 sealed\) /m);
    assert.match(text.stdout, /^ {2}api-key +v1 \(writes\) +API key digests \(an HMAC key\): 2 stored$/m);
    assert.match(text.stdout, /^due: nothing$/m);
    // The active signing key 100 days old: its rotation is due.
    const db = new Sqlite(w.dbPath);
    db.prepare('UPDATE signing_keys SET activated_at = activated_at - ? WHERE retired_at IS NULL').run(100 * 86_400_000);
    db.close();
    const old = JSON.parse((await cli(['keys', 'status', '--json'], w.env)).stdout) as { due: string[] };
    assert.equal(old.due.length, 1);
    assert.match(old.due[0]!, /active token signing key is 100 days old .*cvvops keys rotate/);
  });

  it('keys rotate-master and keys replace-root: a new KEK (audited), data keys re-wrapped; a new master key takes over, the old one is refused (exit 78)', async () => {
    const w = workspace();
    assert.equal((await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'https://shop.example'], w.env)).code, 0);
    assert.equal((await cli(['keys', 'rotate-data', '--purpose', 'card'], w.env)).code, 0);
    const r = await cli(['keys', 'rotate-master', '--rewrap-now', '--json'], w.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { provider: 'local', kekVersion: 2, rewrapped: 1, left: 0 });
    assert.match(r.stderr, /"event":"key.created".*"kind":"kek".*"kekVersion":2/, 'audited');
    assert.match(r.stderr, /"event":"key.rewrapped"/);
    const s = JSON.parse((await cli(['keys', 'status', '--json'], w.env)).stdout) as { master: { keks: Array<{ version: number; dataKeys: number }> } };
    assert.deepEqual(
      s.master.keks.map((k) => [k.version, k.dataKeys]),
      [
        [1, 0],
        [2, 1],
      ],
    );
    const next = randomBytes(32).toString('base64');
    const moved = await cli(['keys', 'replace-root', '--json'], { ...w.env, CVVOPS_OLD_MASTER_KEY: w.env.CVVOPS_MASTER_KEY!, CVVOPS_MASTER_KEY: next });
    assert.equal(moved.code, 0, moved.stderr);
    assert.equal((JSON.parse(moved.stdout) as { dataKeysMoved: number }).dataKeysMoved, 1);
    assert.match(moved.stderr, /"event":"key.root_replaced"/);
    assert.ok(!moved.stdout.includes(next) && !moved.stderr.includes(next), 'never the key');
    assert.equal((await cli(['merchant', 'list'], { ...w.env, CVVOPS_MASTER_KEY: next })).code, 0, 'the new root opens it');
    const old = await cli(['merchant', 'list'], w.env);
    assert.equal(old.code, 78);
    assert.match(old.stderr, /CVVOPS_MASTER_KEY is not the key this database was created with/);
  });

  it('keys rotate-data: a new data key, staged then written with; status shows it; a purpose that cannot be rotated is refused', async () => {
    const w = workspace();
    const r = await cli(['keys', 'rotate-data', '--purpose', 'card', '--json'], w.env);
    assert.equal(r.code, 0, r.stderr);
    const made = JSON.parse(r.stdout) as { purpose: string; version: number; activeFrom: string };
    assert.equal(made.purpose, 'card');
    assert.equal(made.version, 2);
    assert.ok(Date.parse(made.activeFrom) > Date.now() + 50_000, 'staged for a minute');
    assert.match(r.stderr, /"event":"key.created".*"purpose":"card".*"version":2/, 'audited');
    const s = JSON.parse((await cli(['keys', 'status', '--json'], w.env)).stdout) as {
      purposes: Array<{ purpose: string; versions: Array<{ version: number; state: string; key: string }> }>;
    };
    const card = s.purposes.find((p) => p.purpose === 'card')!;
    assert.deepEqual(
      card.versions.map((v) => [v.version, v.state.replace(/until .*/, 'until …')]),
      [
        [1, 'writes'],
        [2, 'staged until …'],
      ],
    );
    assert.match(card.versions[1]!.key, /wrapped by the local KEK/);
    // The server (here its dependencies) loads it, and writes with it once its time has come.
    const d = await depsFor(w.env);
    try {
      assert.equal(d.keyring.writeVersion('card'), 1);
      const db = new Sqlite(w.dbPath);
      const row = db.prepare("SELECT name, value FROM meta WHERE name LIKE 'data_key/card/%'").get() as { name: string; value: string };
      db.prepare('UPDATE meta SET value = ? WHERE name = ?').run(JSON.stringify({ ...JSON.parse(row.value), activeFrom: Date.now() - 1 }), row.name);
      db.close();
    } finally {
      await d.close();
    }
    const again = await depsFor(w.env);
    try {
      assert.equal(again.keyring.writeVersion('card'), 2);
      assert.equal(again.keyring.seal('card', 'x', 'y').keyVersion, 2);
    } finally {
      await again.close();
    }
    const refused = await cli(['keys', 'rotate-data', '--purpose', 'api-key'], w.env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /one of cvv, card/);
    const soon = await cli(['keys', 'rotate-data', '--purpose', 'cvv', '--activate-in', '5s'], w.env);
    assert.notEqual(soon.code, 0);
    assert.match(soon.stderr, /at least 20s/);
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

describe('cvvops CLI: merchants, API keys and webhooks for an operator', () => {
  it('merchant list and show (--json): every merchant, its settings per mode, its keys by suffix and never a key', async () => {
    const w = workspace();
    const a = JSON.parse((await cli(['merchant', 'create', '--name', 'Shop A', '--origin', 'https://a.example', '--json'], w.env)).stdout) as Record<
      string,
      string
    >;
    const b = JSON.parse((await cli(['merchant', 'create', '--name', 'Shop B', '--json'], w.env)).stdout) as Record<string, string>;
    const list = await cli(['merchant', 'list', '--json'], w.env);
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(
      (JSON.parse(list.stdout) as Array<{ id: string; name: string }>).map((m) => [m.id, m.name]),
      [
        [a.merchantId, 'Shop A'],
        [b.merchantId, 'Shop B'],
      ],
    );
    const show = await cli(['merchant', 'show', a.merchantId!, '--json'], w.env);
    assert.equal(show.code, 0, show.stderr);
    const m = JSON.parse(show.stdout) as {
      test: { allowedOrigins: string[] };
      live: { allowedOrigins: string[] };
      keys: Array<{ mode: string; suffix: string; active: boolean }>;
    };
    assert.deepEqual(m.test.allowedOrigins, ['https://a.example']);
    assert.deepEqual(m.live.allowedOrigins, ['https://a.example']);
    assert.deepEqual(m.keys.map((k) => [k.mode, k.suffix, k.active]).sort(), [
      ['live', a.liveKey!.slice(-4), true],
      ['test', a.testKey!.slice(-4), true],
    ]);
    for (const key of [a.testKey!, a.liveKey!]) assert.ok(!show.stdout.includes(key), 'no key in the output');
    const unknown = await cli(['merchant', 'show', 'mer_unknown'], w.env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No merchant mer_unknown/);
  });

  it('merchant update changes one mode only, with the API rules (an out-of-range threshold is refused, nothing changes)', async () => {
    const w = workspace();
    const a = JSON.parse((await cli(['merchant', 'create', '--name', 'Shop', '--origin', 'https://a.example', '--json'], w.env)).stdout) as Record<
      string,
      string
    >;
    const r = await cli(['merchant', 'update', a.merchantId!, '--mode', 'live', '--origin', 'https://b.example', '--threshold', '5', '--json'], w.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual((JSON.parse(r.stdout) as { allowedOrigins: string[] }).allowedOrigins, ['https://b.example']);
    const bad = await cli(['merchant', 'update', a.merchantId!, '--mode', 'test', '--threshold', '50'], w.env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cvvBlockThreshold/);
    const noMode = await cli(['merchant', 'update', a.merchantId!, '--threshold', '4'], w.env);
    assert.notEqual(noMode.code, 0, 'the mode is required');
    const d = await depsFor(w.env);
    try {
      const live = (await d.merchants.settings(a.merchantId!, 'live'))!;
      const test = (await d.merchants.settings(a.merchantId!, 'test'))!;
      assert.deepEqual([live.allowedOrigins, live.cvvBlockThreshold], [['https://b.example'], 5]);
      assert.deepEqual([test.allowedOrigins, test.cvvBlockThreshold], [['https://a.example'], 3], 'the test settings are untouched');
    } finally {
      await d.close();
    }
  });

  it('keys roll: a new key at once, the old one until its grace ends (0: at once); keys revoke by suffix stops a key now', async () => {
    const w = workspace();
    const a = JSON.parse((await cli(['merchant', 'create', '--name', 'Shop', '--json'], w.env)).stdout) as Record<string, string>;
    const rolled = await cli(['keys', 'roll', a.merchantId!, '--mode', 'live', '--grace', '1h', '--json'], w.env);
    assert.equal(rolled.code, 0, rolled.stderr);
    const r = JSON.parse(rolled.stdout) as { key: string; ending: Array<{ suffix: string; endsAt: string }> };
    assert.match(r.key, /^sk_live_/);
    assert.deepEqual(
      r.ending.map((k) => k.suffix),
      [a.liveKey!.slice(-4)],
    );
    const ends = Date.parse(r.ending[0]!.endsAt) - Date.now();
    assert.ok(ends > 3_500_000 && ends <= 3_600_000, `the old key ends in an hour (${ends} ms)`);
    const now = await cli(['keys', 'roll', a.merchantId!, '--mode', 'test', '--grace', '0', '--json'], w.env);
    const t = JSON.parse(now.stdout) as { key: string };
    const d = await depsFor(w.env);
    try {
      assert.equal((await d.merchants.authenticate(new Secret(r.key))).mode, 'live', 'the new live key works');
      assert.equal((await d.merchants.authenticate(new Secret(a.liveKey!))).mode, 'live', 'the old live key works during its grace');
      assert.equal((await d.merchants.authenticate(new Secret(t.key))).mode, 'test');
      await assert.rejects(d.merchants.authenticate(new Secret(a.testKey!)), 'a grace of 0 ends the old test key at once');
      // `--` before the arguments: a suffix may start with '-' (base64url), which would read as an option.
      const revoked = await cli(['keys', 'revoke', '--json', '--', a.merchantId!, a.liveKey!.slice(-4)], w.env);
      assert.equal(revoked.code, 0, revoked.stderr);
      await assert.rejects(d.merchants.authenticate(new Secret(a.liveKey!)), 'revoked: refused now');
      assert.equal((await d.merchants.authenticate(new Secret(r.key))).mode, 'live', 'the other live key still works');
      const again = await cli(['keys', 'revoke', '--', a.merchantId!, a.liveKey!.slice(-4)], w.env);
      assert.equal(again.code, 1, 'no working key by that suffix any more');
      const badGrace = await cli(['keys', 'roll', a.merchantId!, '--mode', 'live', '--grace', 'soon'], w.env);
      assert.notEqual(badGrace.code, 0);
      assert.match(badGrace.stderr, /duration/);
    } finally {
      await d.close();
    }
  });

  it('webhooks test posts one signed webhook.test event to the endpoint and reports its answer', async () => {
    const w = workspace();
    const env = { ...w.env, CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' };
    const a = JSON.parse((await cli(['merchant', 'create', '--name', 'Shop', '--json'], env)).stdout) as Record<string, string>;
    const got: Array<{ body: string; signature: string | undefined }> = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        got.push({ body, signature: req.headers['cvvops-signature'] as string | undefined });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const port = (receiver.address() as AddressInfo).port;
    const d = await depsFor(env);
    try {
      const { endpoint, secret } = await d.webhooks.createEndpoint(a.merchantId!, 'test', `http://127.0.0.1:${port}/hooks`, ['session.completed']);
      const r = await cli(['webhooks', 'test', a.merchantId!, endpoint.id, '--json'], env);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { status: number; delivered: boolean; event: string };
      assert.deepEqual([out.status, out.delivered], [204, true]);
      assert.equal(got.length, 1);
      const event = new Webhooks().constructEvent(got[0]!.body, got[0]!.signature, secret);
      assert.equal(event.type, 'webhook.test');
      assert.equal(event.id, out.event);
      const other = JSON.parse((await cli(['merchant', 'create', '--name', 'Other', '--json'], env)).stdout) as Record<string, string>;
      const foreign = await cli(['webhooks', 'test', other.merchantId!, endpoint.id], env);
      assert.equal(foreign.code, 1, "another merchant's endpoint is not found");
      assert.equal(got.length, 1, 'and nothing was sent');
    } finally {
      await d.close();
      receiver.close();
    }
  });
});
