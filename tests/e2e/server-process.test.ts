import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startServerProcess } from '../helpers/server-process.js';
import { freshSoftHsmToken } from '../helpers/softhsm.js';

/** The real server process (as `npm start` runs it, from TypeScript), with what it prints. */
const startServer = (env: Record<string, string>) => startServerProcess(env);

/** A server process that is expected to stop at start: its exit code and what it printed. */
function runToExit(env: Record<string, string>): Promise<{ code: unknown; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (err += b));
  return new Promise((r) => child.once('exit', (code) => r({ code, out, err })));
}

describe('the server process', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'cvvops-proc-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('starts on SQLite, generates a dev master key (0600), prints the demo key, serves, and stops cleanly on SIGTERM', async () => {
    const s = await startServer({ DATABASE_URL: `sqlite:${join(dir, 'db', 'cvvops.db')}` });
    try {
      const key = /test key: (sk_test_[A-Za-z0-9_-]+)/.exec(s.stdout())?.[1];
      assert.ok(key, 'the demo test key is printed');
      assert.equal(statSync(join(dir, 'db', 'master.key')).mode & 0o777, 0o600);
      const base = s.base;
      assert.equal((await fetch(`${base}/readyz`)).status, 200);
      const card = await fetch(`${base}/Cards`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ number: '4000000000001018', expMonth: 12, expYear: 2030 }),
      });
      assert.equal(card.status, 201);
      // The demo key is printed once to stdout by design (API.md section 12); it never reaches a log line.
      const logLines = s
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'));
      assert.ok(logLines.length > 3);
      assert.ok(!logLines.some((l) => l.includes(key)), 'no log line carries the API key');
    } finally {
      s.child.kill('SIGTERM');
    }
    const code = await new Promise((r) => s.child.once('exit', r));
    assert.equal(code, 0);
  });

  it('the same data folder keeps the same demo merchant and key across restarts', async () => {
    const env = { DATABASE_URL: `sqlite:${join(dir, 'db2', 'cvvops.db')}` };
    const a = await startServer(env);
    a.child.kill('SIGTERM');
    await new Promise((r) => a.child.once('exit', r));
    const b = await startServer(env);
    b.child.kill('SIGTERM');
    await new Promise((r) => b.child.once('exit', r));
    const keyOf = (t: string) => /test key: (\S+)/.exec(t)?.[1];
    assert.ok(keyOf(a.stdout()));
    assert.equal(keyOf(b.stdout()), keyOf(a.stdout()));
  });

  it('refuses to start in production without CVVOPS_MASTER_KEY, naming the variable', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
      env: {
        ...process.env,
        NODE_ENV: 'production',
        CVVOPS_MASTER_KEY: '',
        PUBLIC_BASE_URL: 'https://cvv.example',
        DATABASE_URL: `sqlite:${join(dir, 'p.db')}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    const code = await new Promise((r) => child.once('exit', r));
    assert.notEqual(code, 0);
    assert.match(err, /CVVOPS_MASTER_KEY/);
  });

  it('loads a dotenv file (CVVOPS_ENV_FILE, else ./.env) before reading its configuration; the environment wins over the file', async () => {
    const file = join(dir, 'cvvops.env');
    writeFileSync(file, `PUBLIC_BASE_URL=http://from-file.test:8080\nCVVOPS_DEMO=on\n`);
    const serverUrl = async (base: string) => ((await (await fetch(`${base}/openapi.json`)).json()) as { servers: Array<{ url: string }> }).servers[0]?.url;
    const db = `sqlite:${join(dir, 'envfile.db')}`;
    let s = await startServer({ DATABASE_URL: db, CVVOPS_ENV_FILE: file, CVVOPS_DEMO: 'off' });
    try {
      assert.equal(await serverUrl(s.base), 'http://from-file.test:8080', 'PUBLIC_BASE_URL came from the file');
      assert.equal((await fetch(`${s.base}/demo`)).status, 404, 'CVVOPS_DEMO=off from the environment beat on from the file');
    } finally {
      await s.stop();
    }
    s = await startServer({ DATABASE_URL: db, CVVOPS_ENV_FILE: file, PUBLIC_BASE_URL: 'http://from-env.test:8080', CVVOPS_DEMO: 'off' });
    try {
      assert.equal(await serverUrl(s.base), 'http://from-env.test:8080', 'the environment wins');
    } finally {
      await s.stop();
    }
    // A file named on purpose must exist: a typo is not silently ignored.
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
      env: { ...process.env, CVVOPS_ENV_FILE: join(dir, 'missing.env'), DATABASE_URL: db, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    assert.equal(await new Promise((r) => child.once('exit', r)), 78);
    assert.match(err, /CVVOPS_ENV_FILE names .*missing\.env, which does not exist/);
  });

  it('a wrong master key stops the start with one clear message (exit 78), before anything is served; the right one starts', async () => {
    const db = `sqlite:${join(dir, 'keys.db')}`;
    const right = randomBytes(32).toString('base64');
    const s = await startServer({ DATABASE_URL: db, CVVOPS_MASTER_KEY: right, PORT: '0' });
    await s.stop();
    const run = (key: string) => runToExit({ DATABASE_URL: db, CVVOPS_MASTER_KEY: key });
    const wrong = await run(randomBytes(32).toString('base64'));
    assert.equal(wrong.code, 78);
    assert.match(wrong.err, /CVVOPS_MASTER_KEY is not the key this database was created with/);
    assert.ok(!wrong.out.includes('cvvops listening'), 'nothing was served');
    assert.match(wrong.out, /"event":"key.unwrap_failed"/, 'audited');
    const again = await startServer({ DATABASE_URL: db, CVVOPS_MASTER_KEY: right, PORT: '0' });
    await again.stop();
  });

  it('on an HSM (pkcs11, SoftHSM2): starts with no master key at all and serves; without its key objects, or with the local provider, the start stops (exit 78)', async () => {
    const hsm = freshSoftHsmToken({ label: 'proc-hsm' });
    try {
      const db = `sqlite:${join(dir, 'hsm', 'hsm.db')}`;
      const env = {
        DATABASE_URL: db,
        CVVOPS_MASTER_KEY: '',
        CVVOPS_KEY_PROVIDER: 'pkcs11',
        CVVOPS_PKCS11_LIBRARY: hsm.library,
        CVVOPS_PKCS11_TOKEN_LABEL: hsm.tokenLabel,
        CVVOPS_PKCS11_PIN: hsm.pin,
        SOFTHSM2_CONF: hsm.conf,
      };
      const s = await startServer(env);
      try {
        assert.equal((await fetch(`${s.base}/readyz`)).status, 200);
        assert.match(s.stdout(), /"event":"key.created".*"kind":"kek"/, 'the first KEK, audited');
        assert.ok(!s.stdout().includes(hsm.pin), 'never the PIN');
      } finally {
        await s.stop();
      }
      assert.throws(() => statSync(join(dir, 'hsm', 'master.key')), 'no master key was generated');
      const run = (over: Record<string, string>) => runToExit({ ...env, ...over });
      const lost = await run({ CVVOPS_PKCS11_KEY_LABEL: 'not-there' });
      assert.equal(lost.code, 78);
      assert.match(lost.err, /holds no key labelled not-there-v/);
      assert.match(lost.out, /"event":"key.unwrap_failed"/, 'audited');
      const local = await run({ CVVOPS_KEY_PROVIDER: '', CVVOPS_MASTER_KEY: randomBytes(32).toString('base64') });
      assert.equal(local.code, 78);
      assert.match(local.err, /under the pkcs11 key provider.*cvvops keys replace-root/);
    } finally {
      hsm.cleanup();
    }
  });

  it('a database from before the key check is tested with its signing key, then given the check', async () => {
    const file = join(dir, 'old.db');
    const key = randomBytes(32).toString('base64');
    await (await startServer({ DATABASE_URL: `sqlite:${file}`, CVVOPS_MASTER_KEY: key, PORT: '0' })).stop();
    // What a database made before the check looks like: no key_check row.
    const { default: Database } = await import('better-sqlite3');
    const raw = new Database(file);
    assert.equal(raw.prepare("DELETE FROM meta WHERE name = 'key_check'").run().changes, 1);
    raw.close();
    const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
      env: { ...process.env, DATABASE_URL: `sqlite:${file}`, CVVOPS_MASTER_KEY: randomBytes(32).toString('base64'), PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (b) => (err += b));
    assert.equal(await new Promise((r) => child.once('exit', r)), 78, 'its signing key does not open with the wrong key');
    assert.match(err, /not the key this database was created with/);
    await (await startServer({ DATABASE_URL: `sqlite:${file}`, CVVOPS_MASTER_KEY: key, PORT: '0' })).stop();
  });

  it('a busy port is reported before any banner, with the PORT hint', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as AddressInfo).port;
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
        env: { ...process.env, NODE_ENV: '', HOST: '127.0.0.1', PORT: String(port), CVVOPS_DEMO: 'on', DATABASE_URL: `sqlite:${join(dir, 'busy.db')}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (b) => (out += b));
      child.stderr.on('data', (b) => (err += b));
      assert.equal(await new Promise((r) => child.once('exit', r)), 1);
      assert.match(err, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use .*set PORT to a free port`));
      assert.doesNotMatch(out, /demo merchant|test key/, 'no banner for a server that is not running');
    } finally {
      await new Promise((r) => busy.close(r));
    }
  });
});
