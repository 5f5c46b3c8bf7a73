import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../server/config.js';

/** Runs loadConfig expecting a ConfigError, and returns it. */
function configError(env: Record<string, string | undefined>, cores?: number): ConfigError {
  try {
    loadConfig(env, cores);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${String(e)}`);
    return e;
  }
  assert.fail('loadConfig accepted it');
}

const KEY = randomBytes(32);
const PROD_OK = { NODE_ENV: 'production', PUBLIC_BASE_URL: 'https://cvv.example', CVVOPS_MASTER_KEY: KEY.toString('base64') };

describe('loadConfig', () => {
  it('has the documented defaults with an empty environment', () => {
    const c = loadConfig({});
    assert.equal(c.production, false);
    assert.equal(c.port, 8080);
    assert.equal(c.host, '127.0.0.1');
    assert.equal(c.publicBaseUrl, 'http://127.0.0.1:8080');
    assert.equal(c.publicOrigin, 'http://127.0.0.1:8080');
    assert.equal(c.databaseUrl, 'sqlite:./data/cvvops.db');
    assert.equal(c.dataDir, './data');
    assert.equal(c.masterKey, null, 'generated later, outside production');
    assert.equal(c.demo, true, 'the demo is on outside production');
    assert.equal(c.workers, 1);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.rateLimit, true);
    assert.equal(c.allowPrivateTargets, false);
    assert.equal(c.signingAlg, 'EdDSA');
    assert.equal(c.sqliteSynchronous, 'NORMAL');
  });

  it('treats empty variables as unset', () => {
    const c = loadConfig({ PORT: '', HOST: '', PUBLIC_BASE_URL: '', DATABASE_URL: '', CVVOPS_MASTER_KEY: '', CVVOPS_WORKERS: '', CVVOPS_RATE_LIMIT: '' });
    assert.equal(c.port, 8080);
    assert.equal(c.publicBaseUrl, 'http://127.0.0.1:8080');
    assert.equal(c.databaseUrl, 'sqlite:./data/cvvops.db');
    assert.equal(c.masterKey, null);
    assert.equal(c.workers, 1);
    assert.equal(c.rateLimit, true);
  });

  it('derives PUBLIC_BASE_URL from HOST and PORT, and reads the other variables', () => {
    assert.equal(loadConfig({ PORT: '9000', HOST: '0.0.0.0' }).publicBaseUrl, 'http://0.0.0.0:9000');
    assert.equal(loadConfig({ PORT: '9000', HOST: '::1' }).publicBaseUrl, 'http://[::1]:9000');
    const c = loadConfig({
      PUBLIC_BASE_URL: 'https://cvv.example/base//',
      DATABASE_URL: 'sqlite:/var/lib/cvvops/db.sqlite',
      CVVOPS_MASTER_KEY: KEY.toString('base64'),
      CVVOPS_DEMO: 'off',
      CVVOPS_WORKERS: '4',
      LOG_LEVEL: 'debug',
      CVVOPS_RATE_LIMIT: 'off',
      CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
      CVVOPS_SIGNING_ALG: 'ES256',
      CVVOPS_SQLITE_SYNCHRONOUS: 'full',
    });
    assert.equal(c.publicBaseUrl, 'https://cvv.example/base', 'trailing slashes dropped');
    assert.equal(c.publicOrigin, 'https://cvv.example');
    assert.equal(c.dataDir, '/var/lib/cvvops', "the data folder is the SQLite file's folder");
    assert.deepEqual(c.masterKey?.expose(), KEY);
    assert.equal(c.demo, false);
    assert.equal(c.workers, 4);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.rateLimit, false);
    assert.equal(c.allowPrivateTargets, true);
    assert.equal(c.signingAlg, 'ES256');
    assert.equal(c.sqliteSynchronous, 'FULL');
    assert.equal(loadConfig({ DATABASE_URL: 'postgres://u@db:5432/cvvops' }).databaseUrl, 'postgres://u@db:5432/cvvops');
    assert.equal(loadConfig({ CVVOPS_DATA_DIR: '/srv/keys' }).dataDir, '/srv/keys');
  });

  it('names every malformed variable in one ConfigError listing all problems at once', () => {
    const bad: Record<string, string> = {
      PORT: 'eighty',
      PUBLIC_BASE_URL: 'ftp://cvv.example',
      DATABASE_URL: 'mysql://db/cvvops',
      CVVOPS_MASTER_KEY: 'c2hvcnQ=',
      CVVOPS_DEMO: 'maybe',
      CVVOPS_WORKERS: '0',
      LOG_LEVEL: 'loud',
      CVVOPS_RATE_LIMIT: 'sometimes',
      CVVOPS_ALLOW_PRIVATE_TARGETS: 'perhaps',
      CVVOPS_SIGNING_ALG: 'HS256',
      CVVOPS_SQLITE_SYNCHRONOUS: 'OFF',
    };
    const e = configError(bad);
    assert.equal(e.problems.length, Object.keys(bad).length, e.message);
    for (const name of Object.keys(bad)) {
      const naming = e.problems.filter((p) => new RegExp(`\\b${name}\\b`).test(p));
      assert.equal(naming.length, 1, `${name} is named in exactly one problem: ${e.message}`);
      assert.ok(e.message.includes(name), `the message names ${name}`);
    }
    assert.ok(!e.message.includes('c2hvcnQ='), 'the master key value is never echoed');
  });

  it('names each malformed variable on its own', () => {
    for (const value of ['70000', '1.5', '-1', 'eighty']) {
      const e = configError({ PORT: value });
      assert.ok(
        e.problems.some((p) => /\bPORT\b/.test(p) && p.includes(value)),
        `PORT=${value}: ${e.message}`,
      );
    }
    const cases: Array<[string, string]> = [
      ['PUBLIC_BASE_URL', 'not a url'],
      ['PUBLIC_BASE_URL', 'javascript:alert(1)'],
      ['DATABASE_URL', 'sqlite:'],
      ['DATABASE_URL', 'cvvops.db'],
      ['CVVOPS_MASTER_KEY', randomBytes(31).toString('base64')],
      ['CVVOPS_MASTER_KEY', randomBytes(33).toString('base64')],
      ['CVVOPS_MASTER_KEY', '!!!!not base64!!!!'],
      ['CVVOPS_WORKERS', '65'],
      ['CVVOPS_WORKERS', 'many'],
      ['CVVOPS_WORKERS', '2.5'],
      ['CVVOPS_DEMO', '2'],
      ['LOG_LEVEL', 'INFO!'],
      ['CVVOPS_SIGNING_ALG', 'none'],
      ['CVVOPS_SQLITE_SYNCHRONOUS', 'EXTRA'],
    ];
    for (const [name, value] of cases) {
      const e = configError({ [name]: value });
      assert.equal(e.problems.length, 1, `${name}=${value}: ${e.message}`);
      assert.match(e.problems[0]!, new RegExp(`\\b${name}\\b`), `${name}=${value}`);
    }
  });

  // Bug in server/config.ts: the default PUBLIC_BASE_URL is built from the malformed PORT, fails to parse,
  // and a second problem blames PUBLIC_BASE_URL (got "undefined") though it was never set.
  it('a malformed PORT is not also blamed on an unset PUBLIC_BASE_URL', () => {
    for (const value of ['70000', '1.5', '-1', 'eighty']) {
      const e = configError({ PORT: value });
      assert.deepEqual(e.problems.length, 1, `PORT=${value}: ${e.message}`);
    }
  });

  it('CVVOPS_RETENTION_DAYS: 90 days by default, a whole number of days 1-36500', () => {
    assert.equal(loadConfig({}).retentionDays, 90);
    assert.equal(loadConfig({ CVVOPS_RETENTION_DAYS: '30' }).retentionDays, 30);
    for (const bad of ['0', '-1', '1.5', 'ninety', '36501'])
      assert.match(configError({ CVVOPS_RETENTION_DAYS: bad }).message, /CVVOPS_RETENTION_DAYS must be a whole number of days/, bad);
  });

  it('accepts the on/off spellings', () => {
    for (const v of ['on', 'ON', 'true', '1', 'yes']) assert.equal(loadConfig({ CVVOPS_ALLOW_PRIVATE_TARGETS: v }).allowPrivateTargets, true, v);
    for (const v of ['off', 'Off', 'false', '0', 'no']) assert.equal(loadConfig({ CVVOPS_RATE_LIMIT: v }).rateLimit, false, v);
  });

  it('production: accepts a complete configuration, with the demo off by default', () => {
    const c = loadConfig(PROD_OK);
    assert.equal(c.production, true);
    assert.equal(c.demo, false);
    assert.equal(c.rateLimit, true);
    assert.equal(c.allowPrivateTargets, false);
  });

  it('production refuses a missing master key, rate limits off, private targets on and an http PUBLIC_BASE_URL', () => {
    const single: Array<[string, Record<string, string | undefined>]> = [
      ['CVVOPS_MASTER_KEY', { CVVOPS_MASTER_KEY: undefined }],
      ['CVVOPS_RATE_LIMIT', { CVVOPS_RATE_LIMIT: 'off' }],
      ['CVVOPS_ALLOW_PRIVATE_TARGETS', { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' }],
      ['PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'http://cvv.example' }],
    ];
    for (const [name, change] of single) {
      const e = configError({ ...PROD_OK, ...change });
      assert.equal(e.problems.length, 1, `${name}: ${e.message}`);
      assert.match(e.problems[0]!, new RegExp(`\\b${name}\\b`));
      // The same setting is accepted outside production.
      assert.doesNotThrow(() => loadConfig({ ...PROD_OK, NODE_ENV: 'development', ...change }), name);
    }
    const all = configError({ NODE_ENV: 'production', CVVOPS_RATE_LIMIT: 'off', CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' });
    assert.equal(all.problems.length, 4, `all at once (the default PUBLIC_BASE_URL is http): ${all.message}`);
    for (const [name] of single)
      assert.ok(
        all.problems.some((p) => p.includes(name)),
        name,
      );
  });

  it('CVVOPS_WORKERS=auto uses the cores argument', () => {
    assert.equal(loadConfig({ CVVOPS_WORKERS: 'auto' }, 6).workers, 6);
    assert.equal(loadConfig({ CVVOPS_WORKERS: 'auto' }, 1).workers, 1);
    assert.equal(loadConfig({ CVVOPS_WORKERS: 'auto' }, 0).workers, 1, 'at least one');
    assert.equal(loadConfig({ CVVOPS_WORKERS: '3' }, 16).workers, 3, 'a number is taken as given');
    assert.equal(loadConfig({}, 16).workers, 1, 'the default is 1, not the cores');
  });

  it('returns a frozen object', () => {
    const c = loadConfig({});
    assert.ok(Object.isFrozen(c));
    assert.throws(() => {
      (c as { port: number }).port = 1;
    }, TypeError);
    assert.equal(c.port, 8080);
  });

  it('never shows the master key when printed', () => {
    const c = loadConfig({ CVVOPS_MASTER_KEY: KEY.toString('base64') });
    const printed = JSON.stringify(c);
    assert.ok(!printed.includes(KEY.toString('base64')) && !printed.includes(KEY.toString('hex')));
    assert.match(printed, /"masterKey":"\[REDACTED\]"/);
  });

  it('the master key from a file (CVVOPS_MASTER_KEY_FILE), not both; the pkcs11 provider needs its library, token and PIN, and no master key in production', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cvvops-cfg-'));
    try {
      const file = join(dir, 'master.key');
      writeFileSync(file, `${KEY.toString('base64')}\n`);
      assert.deepEqual(loadConfig({ CVVOPS_MASTER_KEY_FILE: file }).masterKey!.expose(), KEY);
      assert.match(configError({ CVVOPS_MASTER_KEY_FILE: file, CVVOPS_MASTER_KEY: KEY.toString('base64') }).message, /not both/);
      assert.match(configError({ CVVOPS_MASTER_KEY_FILE: join(dir, 'none') }).message, /CVVOPS_MASTER_KEY_FILE names .* cannot be read/);
      writeFileSync(file, 'c2hvcnQ=');
      assert.match(configError({ CVVOPS_MASTER_KEY_FILE: file }).message, /CVVOPS_MASTER_KEY_FILE must hold exactly 32 bytes/);
      const prod = { ...PROD_OK, CVVOPS_MASTER_KEY: undefined };
      const pin = join(dir, 'pin');
      writeFileSync(pin, '1234\n');
      const c = loadConfig({
        ...prod,
        CVVOPS_KEY_PROVIDER: 'pkcs11',
        CVVOPS_PKCS11_LIBRARY: file,
        CVVOPS_PKCS11_TOKEN_LABEL: 'cvvops',
        CVVOPS_PKCS11_PIN_FILE: pin,
      });
      assert.equal(c.masterKey, null, 'production with an HSM needs no master key');
      assert.ok(c.keyProvider.name === 'pkcs11' && c.keyProvider.pin.expose() === '1234' && c.keyProvider.keyLabel === 'cvvops-kek');
      assert.ok(!JSON.stringify(c).includes('1234'), 'the PIN is a Secret');
      const e = configError({ CVVOPS_KEY_PROVIDER: 'pkcs11' });
      for (const v of ['CVVOPS_PKCS11_LIBRARY', 'CVVOPS_PKCS11_TOKEN_LABEL', 'CVVOPS_PKCS11_PIN'])
        assert.ok(
          e.problems.some((p) => p.includes(v)),
          v,
        );
      assert.match(configError({ CVVOPS_KEY_PROVIDER: 'kms' }).message, /CVVOPS_KEY_PROVIDER must be local or pkcs11/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
