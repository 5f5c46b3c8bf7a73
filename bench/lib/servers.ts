import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import {
  childPids,
  cpuSample,
  type CpuSample,
  freePort,
  onCleanup,
  peakRss,
  type Spawned,
  spawnTracked,
  stopProcess,
  trackChild,
  trackGrandchild,
  waitHttp,
} from './proc.js';
import { startFlags } from './start-flags.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'dist', 'server', 'main.js');

const CLI = join(ROOT, 'dist', 'server', 'cli.js');

/** A fixed master key (32 bytes, base64): the benchmark's data is thrown away. */
export const MASTER_KEY = Buffer.from('bench-master-key-not-a-secret-!!').toString('base64');

/** What the server gets on top of the runner's environment (NODE_ENV is removed: production refuses CVVOPS_RATE_LIMIT=off). */
export const SERVER_ENV = {
  CVVOPS_RATE_LIMIT: 'off',
  CVVOPS_DEMO: 'off',
  LOG_LEVEL: 'warn',
  CVVOPS_MASTER_KEY: '<fixed 32-byte key>',
  HOST: '127.0.0.1',
} as const;

const STRIPPED = new Set(['NODE_ENV', 'DATABASE_URL', 'PORT', 'HOST', 'PUBLIC_BASE_URL', 'LOG_LEVEL', 'TEST_DATABASE_URL']);

export function serverEnv(databaseUrl: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('CVVOPS_') || STRIPPED.has(k) || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  return { ...env, ...SERVER_ENV, CVVOPS_MASTER_KEY: MASTER_KEY, DATABASE_URL: databaseUrl, ...extra };
}

// ---- databases --------------------------------------------------------------

export interface Database {
  engine: 'sqlite' | 'postgres';
  url: string;
  /** SQLite: the database file. */
  file?: string;
  /** For the results: where it was (no secrets). */
  describe: string;
  drop(): Promise<void>;
}

let tmpRoot: string | null = null;
function benchTmp(): string {
  if (!tmpRoot) {
    tmpRoot = mkdtempSync(join(tmpdir(), 'cvvops-bench-'));
    const dir = tmpRoot;
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  }
  return tmpRoot;
}

let dbCount = 0;
/** A new SQLite database in a temporary folder (one per server). */
export function sqliteDatabase(): Database {
  const dir = join(benchTmp(), `db${++dbCount}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return {
    engine: 'sqlite',
    url: `sqlite:${dir}/bench.db`,
    file: `${dir}/bench.db`,
    describe: `SQLite file in a temporary folder (${tmpdir()})`,
    drop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export const PG_BASE = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh schema in the PostgreSQL database, selected through search_path; dropped afterwards (also on failure). */
export async function postgresDatabase(): Promise<Database> {
  const schema = `cvvops_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_BASE });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await admin.end();
  }
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    const c = new pg.Client({ connectionString: PG_BASE });
    await c.connect();
    try {
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    } finally {
      await c.end();
    }
  };
  onCleanup(drop);
  const u = new URL(PG_BASE);
  return {
    engine: 'postgres',
    url: `${PG_BASE}${PG_BASE.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`,
    describe: `PostgreSQL ${u.host}${u.pathname}, a fresh schema per server (dropped afterwards)`,
    drop,
  };
}

export async function postgresVersion(): Promise<string> {
  const c = new pg.Client({ connectionString: PG_BASE });
  await c.connect();
  try {
    const r = await c.query('SHOW server_version');
    return String(r.rows[0].server_version);
  } finally {
    await c.end();
  }
}

// ---- processes --------------------------------------------------------------

export interface Server {
  name: string;
  port: number;
  base: string;
  proc: Spawned;
  /** The server's processes (primary and workers) and their CPU time so far. */
  cpu(): CpuSample;
  /** VmHWM of each process: sum and max. */
  peakRss(): { perProcess: Record<number, number>; sum: number; max: number };
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function wrap(name: string, proc: Spawned, port: number): Server {
  return {
    name,
    port,
    base: `http://127.0.0.1:${port}`,
    proc,
    cpu: () => cpuSample(proc.pid),
    peakRss: () => peakRss(proc.pid),
    stop: () => stopProcess(proc),
  };
}

/** `cvvops merchant create --name Bench --json` with the server's environment. */
export function createMerchant(databaseUrl: string): Promise<{ merchantId: string; testKey: string; liveKey: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      process.execPath,
      [CLI, 'merchant', 'create', '--name', 'Bench', '--json'],
      { cwd: ROOT, env: serverEnv(databaseUrl), timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`cvvops merchant create failed: ${err.message}\n${stdout}\n${stderr}`));
        try {
          resolvePromise(JSON.parse(stdout.trim()));
        } catch {
          reject(new Error(`cvvops merchant create did not print one JSON object:\n${stdout}\n${stderr}`));
        }
      },
    );
    trackChild(child);
  });
}

/**
 * The built server (`dist/server/main.js`) as its own process; resolves once /readyz answers 200 (and every worker is up).
 * `env`: more variables on top of SERVER_ENV (a scenario's own settings).
 */
export async function startCvvops(db: Database, opts: { workers?: number; nodeArgs?: string[]; env?: Record<string, string> } = {}): Promise<Server> {
  const workers = opts.workers ?? 1;
  const port = await freePort();
  const proc = spawnTracked(process.execPath, [...startFlags(), ...(opts.nodeArgs ?? []), MAIN], {
    cwd: ROOT,
    env: serverEnv(db.url, { ...opts.env, PORT: String(port), CVVOPS_WORKERS: String(workers) }),
  });
  await waitHttp(proc, port, '/readyz', (s) => s === 200, 'the cvvops server');
  if (workers > 1) {
    // The primary forks the workers; /readyz answers as soon as the first one listens.
    const deadline = Date.now() + 30_000;
    while (childPids(proc.pid).length < workers) {
      if (Date.now() > deadline || proc.exited()) throw new Error(`the cvvops server did not start ${workers} workers:\n${proc.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const pid of childPids(proc.pid)) trackGrandchild(pid);
    // Give every worker time to reach listen() (no per-worker signal at LOG_LEVEL=warn); the warm-up follows.
    await new Promise((r) => setTimeout(r, 1500));
  }
  return wrap(workers > 1 ? `cvvops (${workers} workers)` : 'cvvops', proc, port);
}

/** A baseline server (bench/baselines/*.mjs) as its own process. */
export async function startBaseline(kind: 'http' | 'express'): Promise<Server> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port) };
  delete env.NODE_ENV;
  const proc = spawnTracked(process.execPath, [join(ROOT, 'bench', 'baselines', `${kind}.mjs`)], { cwd: ROOT, env });
  await waitHttp(proc, port, '/ready', (s) => s === 200, `the ${kind} baseline`);
  return wrap(kind === 'http' ? 'node:http' : 'Express 5 + helmet', proc, port);
}

/** The server's Prometheus metrics (`GET /metrics`), or null when it does not answer. */
export async function scrapeMetrics(port: number): Promise<string | null> {
  const http = await import('node:http');
  return new Promise<string | null>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false, timeout: 5000 }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve(res.statusCode === 200 ? b : null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

/** One unlabelled (or first labelled) sample of `name` (any prefix) in a Prometheus text body; NaN when absent. */
export function metricValue(body: string, name: string): number {
  const m = new RegExp(`^\\w*${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)`, 'm').exec(body);
  return m ? Number(m[1]) : NaN;
}

/**
 * The server's event-loop delay from its Prometheus metrics (prom-client's
 * monitorEventLoopDelay, reset at every scrape): scrape once at the start of a
 * window, once at its end. With several workers only one worker answers.
 */
export async function scrapeEventLoop(port: number): Promise<{ p99Ms: number; maxMs: number } | null> {
  const body = await scrapeMetrics(port);
  if (!body) return null;
  return { p99Ms: metricValue(body, 'nodejs_eventloop_lag_p99_seconds') * 1000, maxMs: metricValue(body, 'nodejs_eventloop_lag_max_seconds') * 1000 };
}
