import { existsSync, readFileSync } from 'node:fs';
import { Secret } from './secret.js';

import type { SigningAlg } from './types/shared.js';
import type { KeyProviderConfig } from './domain/key-provider.js';

export type { SigningAlg };

export interface Config {
  readonly production: boolean;
  readonly port: number;
  readonly host: string;
  readonly publicBaseUrl: string;
  /** PUBLIC_BASE_URL was set (not derived from HOST and PORT). */
  readonly publicBaseUrlGiven: boolean;
  /** The origin of publicBaseUrl: the hosted pages' own origin. */
  readonly publicOrigin: string;
  readonly databaseUrl: string;
  /** The master key, or null when one should be generated into dataDir (never in production). */
  readonly masterKey: Secret<Buffer> | null;
  readonly dataDir: string;
  readonly demo: boolean;
  readonly workers: number;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly rateLimit: boolean;
  /**
   * Per minute: requests per API key, per operations session, per client address (operations and hosted pages);
   * and failed API-key attempts per client address (beyond them every API-key attempt from there is 429).
   */
  readonly rateLimits: { apiKey: number; session: number; address: number; apiKeyFailures: number };
  readonly allowPrivateTargets: boolean;
  readonly signingAlg: SigningAlg;
  /** SQLite `synchronous` for ordinary writes (money writes always wait for a flush of the WAL, as FULL does). */
  readonly sqliteSynchronous: 'FULL' | 'NORMAL';
  /** CVVOPS_RETENTION_DAYS: how long ended sessions, their 3DS transactions and charge records are kept. */
  readonly retentionDays: number;
  /** CVVOPS_KEY_PROVIDER: where the key-encryption keys live (`local`: under the master key; `pkcs11`: in an HSM). */
  readonly keyProvider: KeyProviderConfig;
}

export type { KeyProviderConfig };

/** The key provider's variables; `keys replace-root` reads the root in use now from the same names with CVVOPS_OLD_. */
const KEY_VARS = {
  provider: 'CVVOPS_KEY_PROVIDER',
  library: 'CVVOPS_PKCS11_LIBRARY',
  token: 'CVVOPS_PKCS11_TOKEN_LABEL',
  pin: 'CVVOPS_PKCS11_PIN',
  pinFile: 'CVVOPS_PKCS11_PIN_FILE',
  keyLabel: 'CVVOPS_PKCS11_KEY_LABEL',
} as const;

/** The key provider's settings (CVVOPS_KEY_PROVIDER and CVVOPS_PKCS11_*); `prefix` reads another set (CVVOPS_OLD_…). */
export function keyProviderConfig(env: NodeJS.ProcessEnv, problems: string[], prefix = 'CVVOPS_'): KeyProviderConfig {
  const v = (k: keyof typeof KEY_VARS) => KEY_VARS[k].replace(/^CVVOPS_/, prefix);
  const get = (k: keyof typeof KEY_VARS) => (env[v(k)] ?? '').trim();
  const name = get('provider') || 'local';
  if (name === 'local') return { name };
  if (name !== 'pkcs11') {
    problems.push(`${v('provider')} must be local or pkcs11 (got "${name}")`);
    return { name: 'local' };
  }
  const library = get('library');
  const tokenLabel = get('token');
  let pin = get('pin');
  const pinFile = get('pinFile');
  if (!pin && pinFile) {
    try {
      pin = readFileSync(pinFile, 'utf8').trim();
    } catch {
      problems.push(`${v('pinFile')} names ${pinFile}, which cannot be read`);
    }
  }
  if (!library) problems.push(`${v('library')} is required with ${v('provider')}=pkcs11 (the PKCS#11 module's path)`);
  else if (!existsSync(library)) problems.push(`${v('library')} names ${library}, which does not exist`);
  if (!tokenLabel) problems.push(`${v('token')} is required with ${v('provider')}=pkcs11`);
  if (!pin && !pinFile) problems.push(`${v('pin')} or ${v('pinFile')} is required with ${v('provider')}=pkcs11`);
  return { name, library, tokenLabel, pin: new Secret(pin), keyLabel: get('keyLabel') || 'cvvops-kek' };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function onOff(name: string, raw: string | undefined, dflt: boolean, problems: string[]): boolean {
  if (raw === undefined || raw === '') return dflt;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'on', 'yes'].includes(v)) return true;
  if (['0', 'false', 'off', 'no'].includes(v)) return false;
  problems.push(`${name} must be on or off (got "${raw}")`);
  return dflt;
}

/**
 * Loads a dotenv file into process.env before the configuration is read: `.env` in
 * the current folder, or the file CVVOPS_ENV_FILE names. A missing file is
 * fine (unless CVVOPS_ENV_FILE names it); a variable already in the
 * environment wins over the file. Returns the file loaded, if any.
 */
export function loadEnvFile(): string | null {
  const env = process.env;
  const named = env.CVVOPS_ENV_FILE !== undefined && env.CVVOPS_ENV_FILE !== '';
  const file = named ? env.CVVOPS_ENV_FILE! : '.env';
  if (!existsSync(file)) {
    if (named) throw new ConfigError([`CVVOPS_ENV_FILE names ${file}, which does not exist`]);
    return null;
  }
  try {
    // Node's loader (20.12+) keeps a variable the environment already has.
    process.loadEnvFile(file);
  } catch (e) {
    throw new ConfigError([`${file} could not be read: ${e instanceof Error ? e.message : String(e)}`]);
  }
  return file;
}

/**
 * Reads the configuration from the environment (API.md section 12). Pure:
 * collects every problem and throws one ConfigError naming each variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env, cores = 1): Config {
  const problems: string[] = [];
  const production = env.NODE_ENV === 'production';

  let port = 8080;
  if (env.PORT !== undefined && env.PORT !== '') {
    port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push(`PORT must be an integer 0-65535 (got "${env.PORT}")`);
  }
  const host = env.HOST && env.HOST !== '' ? env.HOST : '127.0.0.1';

  const givenBase = env.PUBLIC_BASE_URL !== undefined && env.PUBLIC_BASE_URL !== '';
  const portProblem = problems.length > 0;
  let publicBaseUrl = givenBase ? env.PUBLIC_BASE_URL!.replace(/\/+$/, '') : `http://${host.includes(':') ? `[${host}]` : host}:${portProblem ? 8080 : port}`;
  let publicOrigin = '';
  try {
    const u = new URL(publicBaseUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    if (production && u.protocol !== 'https:') problems.push('PUBLIC_BASE_URL must be https in production');
    publicOrigin = u.origin;
  } catch {
    problems.push(givenBase ? `PUBLIC_BASE_URL must be an http(s) URL (got "${env.PUBLIC_BASE_URL}")` : `HOST must be a host name or address (got "${host}")`);
    publicBaseUrl = 'http://invalid';
  }

  const databaseUrl = env.DATABASE_URL && env.DATABASE_URL !== '' ? env.DATABASE_URL : 'sqlite:./data/cvvops.db';
  if (!/^sqlite:.+/.test(databaseUrl) && !/^postgres(ql)?:\/\/.+/.test(databaseUrl)) {
    problems.push('DATABASE_URL must be sqlite:PATH or postgres://…');
  }
  let dataDir = './data';
  const sqlitePath = /^sqlite:(.+)$/.exec(databaseUrl)?.[1];
  if (sqlitePath && sqlitePath !== ':memory:') {
    const i = sqlitePath.lastIndexOf('/');
    dataDir = i > 0 ? sqlitePath.slice(0, i) : '.';
  }
  if (env.CVVOPS_DATA_DIR) dataDir = env.CVVOPS_DATA_DIR;

  const keyProvider = keyProviderConfig(env, problems);
  let masterKey: Secret<Buffer> | null = null;
  // The master key from the environment, or from a file (a mounted secret: CVVOPS_MASTER_KEY_FILE), never both.
  let rawKey = env.CVVOPS_MASTER_KEY ?? '';
  let keyFrom = 'CVVOPS_MASTER_KEY';
  const keyFile = (env.CVVOPS_MASTER_KEY_FILE ?? '').trim();
  if (keyFile) {
    if (rawKey) problems.push('set CVVOPS_MASTER_KEY or CVVOPS_MASTER_KEY_FILE, not both');
    keyFrom = 'CVVOPS_MASTER_KEY_FILE';
    try {
      rawKey = readFileSync(keyFile, 'utf8');
    } catch {
      problems.push(`CVVOPS_MASTER_KEY_FILE names ${keyFile}, which cannot be read`);
    }
  }
  if (rawKey !== '') {
    const raw = rawKey.trim();
    const buf = /^[A-Za-z0-9+/_-]+={0,2}$/.test(raw) ? Buffer.from(raw, 'base64') : Buffer.alloc(0);
    if (buf.length !== 32) problems.push(`${keyFrom} must hold exactly 32 bytes, base64-encoded`);
    else masterKey = new Secret(buf);
  } else if (production && keyProvider.name === 'local' && !keyFile) {
    problems.push('CVVOPS_MASTER_KEY (or CVVOPS_MASTER_KEY_FILE) is required with NODE_ENV=production (32 bytes, base64), unless CVVOPS_KEY_PROVIDER=pkcs11');
  }

  const demo = onOff('CVVOPS_DEMO', env.CVVOPS_DEMO, !production, problems);

  let workers = 1;
  const w = env.CVVOPS_WORKERS;
  if (w !== undefined && w !== '') {
    if (w === 'auto') workers = Math.max(1, cores);
    else {
      workers = Number(w);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
        problems.push(`CVVOPS_WORKERS must be auto or an integer 1-64 (got "${w}")`);
        workers = 1;
      }
    }
  }

  const lvl = (env.LOG_LEVEL && env.LOG_LEVEL !== '' ? env.LOG_LEVEL : 'info') as Config['logLevel'];
  if (!LOG_LEVELS.includes(lvl)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${env.LOG_LEVEL}")`);

  const rateLimit = onOff('CVVOPS_RATE_LIMIT', env.CVVOPS_RATE_LIMIT, true, problems);
  if (!rateLimit && production) problems.push('CVVOPS_RATE_LIMIT=off is refused with NODE_ENV=production');

  const perMinute = (name: string, dflt: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000) {
      problems.push(`${name} must be an integer 1-1000000 (a count per minute; got "${raw}")`);
      return dflt;
    }
    return n;
  };
  const rateLimits = {
    apiKey: perMinute('CVVOPS_RATE_LIMIT_API_KEY', 6000),
    session: perMinute('CVVOPS_RATE_LIMIT_SESSION', 60),
    address: perMinute('CVVOPS_RATE_LIMIT_ADDRESS', 600),
    apiKeyFailures: perMinute('CVVOPS_RATE_LIMIT_API_KEY_FAILURES', 30),
  };

  const allowPrivateTargets = onOff('CVVOPS_ALLOW_PRIVATE_TARGETS', env.CVVOPS_ALLOW_PRIVATE_TARGETS, false, problems);
  if (allowPrivateTargets && production) problems.push('CVVOPS_ALLOW_PRIVATE_TARGETS=on is refused with NODE_ENV=production');

  const signingAlg = (env.CVVOPS_SIGNING_ALG && env.CVVOPS_SIGNING_ALG !== '' ? env.CVVOPS_SIGNING_ALG : 'EdDSA') as SigningAlg;
  if (signingAlg !== 'EdDSA' && signingAlg !== 'ES256') problems.push(`CVVOPS_SIGNING_ALG must be EdDSA or ES256 (got "${env.CVVOPS_SIGNING_ALG}")`);

  const sync = (
    env.CVVOPS_SQLITE_SYNCHRONOUS && env.CVVOPS_SQLITE_SYNCHRONOUS !== '' ? env.CVVOPS_SQLITE_SYNCHRONOUS.toUpperCase() : 'NORMAL'
  ) as Config['sqliteSynchronous'];
  if (sync !== 'FULL' && sync !== 'NORMAL') problems.push('CVVOPS_SQLITE_SYNCHRONOUS must be FULL or NORMAL');

  const retentionRaw = env.CVVOPS_RETENTION_DAYS;
  let retentionDays = 90;
  if (retentionRaw !== undefined && retentionRaw !== '') {
    retentionDays = Number(retentionRaw);
    if (!Number.isInteger(retentionDays) || retentionDays < 1 || retentionDays > 36_500)
      problems.push(`CVVOPS_RETENTION_DAYS must be a whole number of days, 1-36500 (got "${retentionRaw}")`);
  }

  if (problems.length) throw new ConfigError(problems);
  return Object.freeze({
    production,
    port,
    host,
    publicBaseUrl,
    publicBaseUrlGiven: givenBase,
    publicOrigin,
    databaseUrl,
    masterKey,
    dataDir,
    demo,
    workers,
    logLevel: lvl,
    rateLimit,
    rateLimits: Object.freeze(rateLimits),
    allowPrivateTargets,
    signingAlg,
    sqliteSynchronous: sync,
    retentionDays,
    keyProvider,
  });
}
