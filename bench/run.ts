/**
 * `npm run bench` — the benchmark of /work/shared/PERFORMANCE.md.
 *
 *   npm run bench                              every scenario on SQLite, 3 × 10 s after a 3 s warm-up
 *   npm run bench -- --duration 2 --reps 1     a quick run
 *   npm run bench -- --only create,flows-50    a subset (names below)
 *   npm run bench -- --postgres                the server on PostgreSQL (TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/test)
 *   npm run bench -- --profile                 also a CPU profile of the server under the 50-shopper flow load
 *   npm run bench -- --only profile            only the profile
 *   npm run bench -- --only growth,soak,background --soak-duration 60
 *                                              the growth, memory and background-work targets (SQLite only)
 *   npm run bench -- --only tokens,flows-50    signing and verifying: TokenService against jose, in-process,
 *                                              set against a flow's server CPU
 *
 * Writes bench/results.md and bench/results.json (and bench/*.cpuprofile with --profile).
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Sqlite from 'better-sqlite3';
import { cannon, type CannonRun, chainedRequest, type PooledSession, SessionPool } from './lib/cannon.js';
import { AMOUNT, createBody, type FlowRun, runFlows, STEPS, THREEDS_BODY } from './lib/flows.js';
import { JsonClient, pool } from './lib/http.js';
import { LoopProbe, startReceiver } from './lib/probe.js';
import { layerCosts, summarizeProfile } from './lib/profile.js';
import { cleanupAll, cpuOfProcessesNamed, currentRss, installExitHandlers, machineBusySeconds, rssParts } from './lib/proc.js';
import { renderMarkdown, renderTable } from './lib/report.js';
import { type BacklogPlan, type HistoryPlan, seedBacklog, seedHistory, type SeedReport } from './lib/seed.js';
import {
  createMerchant,
  type Database,
  metricValue,
  postgresDatabase,
  postgresVersion,
  ROOT,
  scrapeMetrics,
  type Server,
  SERVER_ENV,
  sqliteDatabase,
  scrapeEventLoop,
  startBaseline,
  startCvvops,
} from './lib/servers.js';
import { median, spread } from './lib/stats.js';
import { tokenCosts, type TokenCostsResult } from './lib/tokens.js';
import { evaluateTargets, worstStepP99 } from './lib/targets.js';
import type { BackgroundResult, BenchResults, Machine, RepResult, ScenarioResult, SoakInfo } from './lib/types.js';

const ALL = [
  'baseline-http',
  'baseline-express',
  'create',
  'collectCvv',
  'threeDS',
  'charge',
  'validateToken',
  'flows-1',
  'flows-10',
  'flows-50',
  'flows-50-workers2',
  'growth',
  'soak',
  'background',
  'tokens',
] as const;
const EXTRA = ['flows-50-sqlite', 'profile'] as const;
/** Always on SQLite (PERFORMANCE.md's growth, memory and background-work targets); left out of a full `--postgres` run. */
const SQLITE_ONLY: readonly string[] = ['growth', 'soak', 'background'];

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    reps: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
    'soak-duration': { type: 'string', default: '180' },
    'growth-sessions': { type: 'string', default: '1000000' },
    postgres: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (args.help) {
  process.stdout.write(`usage: npm run bench -- [--duration S] [--reps N] [--warmup S] [--connections N] [--postgres] [--profile] [--only a,b,…]
                        [--soak-duration S (180)] [--growth-sessions N (1000000; cards: a tenth)]
scenarios: ${[...ALL, ...EXTRA].join(', ')}
`);
  process.exit(0);
}

const DURATION = Number(args.duration);
const REPS = Number(args.reps);
const WARMUP = Number(args.warmup);
const CONNECTIONS = Number(args.connections);
const SOAK = Number(args['soak-duration']);
const GROWTH_SESSIONS = Number(args['growth-sessions']);
for (const [k, v] of [
  ['duration', DURATION],
  ['reps', REPS],
  ['warmup', WARMUP],
  ['connections', CONNECTIONS],
  ['soak-duration', SOAK],
  ['growth-sessions', GROWTH_SESSIONS],
] as const) {
  if (!Number.isFinite(v) || v <= 0 || (k !== 'duration' && k !== 'warmup' && k !== 'soak-duration' && !Number.isInteger(v))) {
    process.stderr.write(`--${k} must be a positive number\n`);
    process.exit(2);
  }
}
const POSTGRES = args.postgres;
const only = args.only
  ? args.only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  : null;
for (const o of only ?? []) {
  if (![...ALL, ...EXTRA].includes(o as never)) {
    process.stderr.write(`unknown scenario "${o}"; known: ${[...ALL, ...EXTRA].join(', ')}\n`);
    process.exit(2);
  }
}
const PROFILE = args.profile || (only?.includes('profile') ?? false);
const selected: string[] = only
  ? only.filter((o) => o !== 'profile')
  : [...ALL.filter((n) => !POSTGRES || !SQLITE_ONLY.includes(n)), ...(POSTGRES ? ['flows-50-sqlite'] : [])];

const warnings: string[] = [];
const log = (s: string) => process.stdout.write(`${s}\n`);
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '—');

// ---- machine ------------------------------------------------------------------

function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    availableParallelism: os.availableParallelism(),
    model: cpus[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    kernel: os.release(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'server'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${head} (server/ has uncommitted changes)` : head;
  } catch {
    return 'unknown';
  }
}

// ---- measuring a window ---------------------------------------------------------

interface Window {
  eventLoop?: { p99Ms: number; maxMs: number } | null;
  serverCpuSeconds: number;
  serverMainThreadCpuSeconds: number;
  runnerCpuSeconds: number;
  /** Busy CPU time of the whole machine over the window, seconds. */
  machineCpuSeconds: number;
  /** With PostgreSQL: CPU time of every `postgres` process on the machine. */
  databaseCpuSeconds: number;
  seconds: number;
}

/** Runs `fn` (which lasts `seconds`), sampling the server's CPU time at its start and when the window ends. */
async function measured<T>(server: Server, seconds: number, fn: () => Promise<T>, eventLoop = false): Promise<{ value: T; w: Window }> {
  if (eventLoop) await scrapeEventLoop(server.port);
  const c0 = server.cpu();
  const r0 = process.cpuUsage();
  const m0 = machineBusySeconds();
  const d0 = POSTGRES ? cpuOfProcessesNamed('postgres') : 0;
  let d1: number | undefined;
  let c1: ReturnType<Server['cpu']> | undefined;
  let r1: NodeJS.CpuUsage | undefined;
  let m1: number | undefined;
  const timer = setTimeout(() => {
    c1 = server.cpu();
    r1 = process.cpuUsage(r0);
    m1 = machineBusySeconds();
    d1 = POSTGRES ? cpuOfProcessesNamed('postgres') : 0;
  }, seconds * 1000);
  const value = await fn();
  clearTimeout(timer);
  c1 ??= server.cpu();
  r1 ??= process.cpuUsage(r0);
  m1 ??= machineBusySeconds();
  d1 ??= POSTGRES ? cpuOfProcessesNamed('postgres') : 0;
  return {
    value,
    w: {
      eventLoop: eventLoop ? await scrapeEventLoop(server.port) : undefined,
      serverCpuSeconds: c1.total - c0.total,
      serverMainThreadCpuSeconds: c1.main - c0.main,
      runnerCpuSeconds: (r1.user + r1.system) / 1e6,
      machineCpuSeconds: m1 - m0,
      databaseCpuSeconds: d1 - d0,
      seconds,
    },
  };
}

function fromCannon(r: CannonRun, w: Window): RepResult {
  const n = r.responses;
  return {
    seconds: r.seconds,
    rate: r.rps,
    requestsPerSecond: r.rps,
    units: n,
    requests: n,
    latency: r.latency,
    non2xx: r.non2xx,
    statusCodes: r.statusCodes,
    errors: r.errors + r.timeouts,
    serverCpuSeconds: w.serverCpuSeconds,
    serverCpuCores: w.serverCpuSeconds / w.seconds,
    serverMainThreadCpuSeconds: w.serverMainThreadCpuSeconds,
    cpuPerRequestUs: n ? (w.serverCpuSeconds / n) * 1e6 : NaN,
    mainThreadCpuPerRequestUs: n ? (w.serverMainThreadCpuSeconds / n) * 1e6 : NaN,
    runnerCpuCores: w.runnerCpuSeconds / w.seconds,
    otherCpuCores: Math.max(0, w.machineCpuSeconds - w.serverCpuSeconds - w.runnerCpuSeconds - w.databaseCpuSeconds) / w.seconds,
    ...(POSTGRES ? { databaseCpuCores: w.databaseCpuSeconds / w.seconds } : {}),
    ...(w.eventLoop ? { eventLoop: w.eventLoop } : {}),
  };
}

function fromFlows(r: FlowRun, w: Window): RepResult {
  return {
    seconds: r.seconds,
    rate: r.flowsPerSecond,
    requestsPerSecond: r.requests / r.seconds,
    units: r.flows,
    requests: r.requests,
    latency: r.flow,
    steps: r.steps,
    non2xx: r.non2xx,
    errors: r.connectionErrors,
    unexpected: r.unexpected,
    failedFlows: r.failedFlows,
    errorSamples: r.errorSamples,
    serverCpuSeconds: w.serverCpuSeconds,
    serverCpuCores: w.serverCpuSeconds / w.seconds,
    serverMainThreadCpuSeconds: w.serverMainThreadCpuSeconds,
    cpuPerRequestUs: r.requests ? (w.serverCpuSeconds / r.requests) * 1e6 : NaN,
    mainThreadCpuPerRequestUs: r.requests ? (w.serverMainThreadCpuSeconds / r.requests) * 1e6 : NaN,
    cpuPerFlowUs: r.flows ? (w.serverCpuSeconds / r.flows) * 1e6 : NaN,
    runnerCpuCores: w.runnerCpuSeconds / w.seconds,
    otherCpuCores: Math.max(0, w.machineCpuSeconds - w.serverCpuSeconds - w.runnerCpuSeconds - w.databaseCpuSeconds) / w.seconds,
    ...(POSTGRES ? { databaseCpuCores: w.databaseCpuSeconds / w.seconds } : {}),
    ...(w.eventLoop ? { eventLoop: w.eventLoop } : {}),
  };
}

function summarize(
  base: Omit<
    ScenarioResult,
    | 'rate'
    | 'requestsPerSecond'
    | 'p50'
    | 'p95'
    | 'p99'
    | 'non2xx'
    | 'errors'
    | 'unexpected'
    | 'statusCodes'
    | 'peakRss'
    | 'cpuPerRequestUs'
    | 'mainThreadCpuPerRequestUs'
    | 'serverCpuCores'
    | 'runnerCpuCores'
    | 'otherCpuCores'
  >,
  server: Server,
): ScenarioResult {
  const reps = base.reps;
  const rss = server.peakRss();
  const statusCodes: Record<string, number> = {};
  for (const r of reps) for (const [k, v] of Object.entries(r.statusCodes ?? {})) statusCodes[k] = (statusCodes[k] ?? 0) + v;
  const res: ScenarioResult = {
    ...base,
    rate: spread(reps.map((r) => r.rate)),
    requestsPerSecond: spread(reps.map((r) => r.requestsPerSecond)),
    p50: spread(reps.map((r) => r.latency.p50)),
    p95: spread(reps.map((r) => r.latency.p95)),
    p99: spread(reps.map((r) => r.latency.p99)),
    non2xx: reps.reduce((a, r) => a + r.non2xx, 0),
    errors: reps.reduce((a, r) => a + r.errors, 0),
    unexpected: reps.reduce((a, r) => a + (r.unexpected ?? 0), 0),
    statusCodes,
    peakRss: { sum: rss.sum, max: rss.max, processes: Object.keys(rss.perProcess).length },
    cpuPerRequestUs: spread(reps.map((r) => r.cpuPerRequestUs)),
    mainThreadCpuPerRequestUs: spread(reps.map((r) => r.mainThreadCpuPerRequestUs)),
    serverCpuCores: spread(reps.map((r) => r.serverCpuCores)),
    runnerCpuCores: spread(reps.map((r) => r.runnerCpuCores)),
    otherCpuCores: spread(reps.map((r) => r.otherCpuCores)),
  };
  if (reps.some((r) => r.databaseCpuCores !== undefined)) res.databaseCpuCores = spread(reps.map((r) => r.databaseCpuCores ?? NaN));
  if (reps.some((r) => r.eventLoop)) {
    res.eventLoopDelay = { p99Ms: spread(reps.map((r) => r.eventLoop?.p99Ms ?? NaN)), maxMs: spread(reps.map((r) => r.eventLoop?.maxMs ?? NaN)) };
  }
  if (base.kind === 'flows') {
    res.cpuPerFlowUs = spread(reps.map((r) => r.cpuPerFlowUs ?? NaN));
    res.steps = Object.fromEntries(
      STEPS.map((s) => [
        s,
        {
          p50: median(reps.map((r) => r.steps![s].p50)),
          p95: median(reps.map((r) => r.steps![s].p95)),
          p99: median(reps.map((r) => r.steps![s].p99)),
        },
      ]),
    );
  }
  if (res.non2xx)
    res.notes.push(
      `${res.non2xx} non-2xx answers (${Object.entries(statusCodes)
        .filter(([k]) => !k.startsWith('2'))
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')})`,
    );
  if (res.errors) res.notes.push(`${res.errors} connection errors or timeouts`);
  if (res.unexpected) res.notes.push(`${res.unexpected} 2xx answers with an unexpected outcome`);
  const samples = [...new Set(reps.flatMap((r) => [...(r.errorSamples ?? []), ...(r.pool?.errorSamples ?? [])]))].slice(0, 5);
  if (samples.length) res.notes.push(`first errors: ${samples.map((s) => JSON.stringify(s)).join('; ')}`);
  return res;
}

function progress(r: RepResult, i: number, unit: string, label = 'rep'): void {
  log(
    `    ${label} ${i + 1}: ${fmt(r.rate, unit === 'flows/s' ? 1 : 0)} ${unit}, p50 ${fmt(r.latency.p50, 2)} ms, p95 ${fmt(r.latency.p95, 2)} ms, ` +
      `p99 ${fmt(r.latency.p99, 2)} ms, non-2xx ${r.non2xx}, server CPU ${fmt(r.serverCpuCores * 100)}% of a core, ` +
      `${fmt(r.cpuPerRequestUs)} µs/request, runner ${fmt(r.runnerCpuCores * 100)}%, ${r.databaseCpuCores !== undefined ? `postgres ${fmt(r.databaseCpuCores * 100)}%, ` : ''}other processes ${fmt(r.otherCpuCores * 100)}%${r.pool ? `, pool dry ${r.pool.dry}` : ''}`,
  );
}

// ---- the cvvops server, ready to be measured --------------------------------------

/** The test cards with a frictionless 3DS `Y` or `A` that the simulator approves with CVV 123 (API.md section 11). */
const BENCH_CARDS = ['4000000000001018', '4000000000004046', '5555555555554402'] as const;
/** The bench merchant's cvvBlockThreshold: the highest allowed, so 3 × 20 CVV attempts may be in flight at once. */
const BENCH_BLOCK_THRESHOLD = 20;

interface Cvvops {
  server: Server;
  client: JsonClient;
  apiKey: string;
  cards: string[];
  db: Database;
  close(): Promise<ScenarioResult['peakRss']>;
}

async function newDatabase(engine: 'sqlite' | 'postgres'): Promise<Database> {
  return engine === 'postgres' ? postgresDatabase() : sqliteDatabase();
}

/** Runs between the merchant's creation (the database is migrated) and the server's start: a scenario's own data. */
type Prepare = (db: Database, merchantId: string) => void | Promise<void>;

/** A fresh database, a merchant from the built CLI, the server, and `cardCount` test cards tokenized with CVV 123. */
async function bootCvvops(
  engine: 'sqlite' | 'postgres',
  opts: { workers?: number; nodeArgs?: string[]; cardCount?: number; prepare?: Prepare } = {},
): Promise<Cvvops> {
  const db = await newDatabase(engine);
  const merchant = await createMerchant(db.url);
  await opts.prepare?.(db, merchant.merchantId);
  const server = await startCvvops(db, opts);
  const client = new JsonClient(server.port, 64);
  const auth = { authorization: `Bearer ${merchant.testKey}` };
  const expYear = new Date().getUTCFullYear() + 4;
  // A charge reserves its CVV attempt per card number: at most cvvBlockThreshold (here the highest, 20) unconfirmed
  // CVVs of one number are at the processor together (API.md section 5). Shoppers have cards of their own; the test
  // cards that authenticate (Y or A) and are approved are three, so the 50 shoppers' cards are spread over them.
  const reply = await client.request('PATCH', '/Merchant', { cvvBlockThreshold: BENCH_BLOCK_THRESHOLD }, auth);
  if (reply.status !== 200) throw new Error(`PATCH /Merchant answered ${reply.status}: ${reply.body}`);
  const cards = await pool(opts.cardCount ?? CONNECTIONS, 8, async (i) => {
    const { json } = await client.post<{ token: string; cvcSession: unknown }>(
      '/Cards',
      { number: BENCH_CARDS[i % BENCH_CARDS.length], expMonth: 12, expYear, cvv: '123', holderName: 'Bench Shopper' },
      auth,
      201,
    );
    if (!json.cvcSession) throw new Error('POST /Cards with a CVV returned no CVC session');
    return json.token;
  });
  return {
    server,
    client,
    apiKey: merchant.testKey,
    cards,
    db,
    async close() {
      const rss = server.peakRss();
      client.close();
      const { code, signal } = await server.stop();
      if (code !== 0) warnings.push(`${server.name} exited with code ${code} signal ${signal} on SIGTERM`);
      await db.drop().catch(() => {});
      return { sum: rss.sum, max: rss.max, processes: Object.keys(rss.perProcess).length };
    },
  };
}

async function createSessions(c: Cvvops, n: number, body: (card: string) => Record<string, unknown>, left: number): Promise<PooledSession[]> {
  const auth = { authorization: `Bearer ${c.apiKey}` };
  return pool(n, 32, async (i) => {
    const { json } = await c.client.post<{ id: string; token: string }>('/CvvOperations', body(c.cards[i % c.cards.length]!), auth, 201);
    return { id: json.id, token: json.token, left };
  });
}

// ---- scenarios ------------------------------------------------------------------------

const ECHO_BODY = JSON.stringify({ name: 'bench', amount: 1999, items: [1, 2, 3] });

async function baselineScenario(name: string, kind: 'http' | 'express'): Promise<ScenarioResult> {
  const server = await startBaseline(kind);
  try {
    const o = { port: server.port, connections: CONNECTIONS, path: '/echo', headers: { 'content-type': 'application/json' }, body: ECHO_BODY };
    await cannon({ ...o, seconds: WARMUP });
    const reps: RepResult[] = [];
    for (let i = 0; i < REPS; i++) {
      const { value, w } = await measured(server, DURATION, () => cannon({ ...o, seconds: DURATION }));
      reps.push(fromCannon(value, w));
      progress(reps[i]!, i, 'req/s');
    }
    return summarize(
      {
        name,
        title: kind === 'http' ? 'baseline: bare node:http, small JSON POST' : 'baseline: Express 5 + express.json() + helmet(), small JSON POST',
        kind: 'requests',
        server: server.name,
        engine: 'none',
        workers: 1,
        concurrency: CONNECTIONS,
        reps,
        notes: [],
      },
      server,
    );
  } finally {
    await server.stop();
  }
}

/** A static request against cvvops (the same request every time). */
async function staticScenario(
  name: string,
  title: string,
  engine: 'sqlite' | 'postgres',
  request: (c: Cvvops) => Promise<{ path: string; body: string; headers: Record<string, string> }>,
): Promise<ScenarioResult> {
  const c = await bootCvvops(engine);
  try {
    const req = await request(c);
    const o = { port: c.server.port, connections: CONNECTIONS, ...req };
    await cannon({ ...o, seconds: WARMUP });
    const reps: RepResult[] = [];
    for (let i = 0; i < REPS; i++) {
      const { value, w } = await measured(c.server, DURATION, () => cannon({ ...o, seconds: DURATION }), true);
      reps.push(fromCannon(value, w));
      progress(reps[i]!, i, 'req/s');
    }
    return summarize({ name, title, kind: 'requests', server: c.server.name, engine, workers: 1, concurrency: CONNECTIONS, reps, notes: [] }, c.server);
  } finally {
    await c.close();
  }
}

/**
 * An operation with a fresh current token per request: pre-created sessions,
 * the token chained per connection; a connection moves to the next session
 * when one's attempts are used up or it completed. The pool is filled before
 * the warm-up and before each repetition, sized from the rate just seen.
 */
async function chainedScenario(name: string, title: string, engine: 'sqlite' | 'postgres', op: 'collectCvv' | 'threeDS' | 'charge'): Promise<ScenarioResult> {
  const c = await bootCvvops(engine);
  const perSession = op === 'charge' ? 1 : 10;
  const body = (card: string): Record<string, unknown> =>
    op === 'charge'
      ? { card, operations: ['charge'], amount: AMOUNT, maxAttempts: 1, reference: 'bench-charge' }
      : { card, operations: [op], maxAttempts: 10, reference: `bench-${op}` };
  const path = { collectCvv: '/CvvOperations/collectCvv', threeDS: '/CvvOperations/threeDS', charge: '/CvvOperations/charge' }[op];
  const reqBody = { collectCvv: '{"cvv":"123"}', threeDS: THREEDS_BODY, charge: '{}' }[op];
  const extra = op === 'charge' ? () => ({ 'idempotency-key': randomUUID() }) : () => ({});
  const sessions = new SessionPool();
  const notes: string[] = [];
  try {
    let estimate = 1000; // requests/s before anything was seen (the warm-up's pool)
    let measuredOnce = false;
    // Sessions of 10 calls are cheap to over-provision; charge needs one session per request.
    const margin = op === 'charge' ? 1.8 : 3;
    const fill = async (seconds: number, margin: number) => {
      const need = CONNECTIONS * 2 + Math.ceil((estimate * seconds * margin) / perSession);
      if (sessions.size < need) {
        const t = performance.now();
        sessions.add(await createSessions(c, need - sessions.size, body, perSession));
        log(`    pool: ${sessions.size} sessions (${perSession} ${op} each) ready, created in ${fmt((performance.now() - t) / 1000, 1)} s`);
      }
    };
    const runOnce = async (seconds: number) => {
      const before = { taken: sessions.taken, dry: sessions.dry, abandoned: sessions.abandoned, size: sessions.size };
      let dryAt: number | undefined;
      const t0 = performance.now();
      const watch = setInterval(() => {
        if (dryAt === undefined && sessions.dry > before.dry) dryAt = performance.now();
      }, 20);
      const req = chainedRequest(sessions, path, reqBody, extra);
      const r = await cannon({ port: c.server.port, connections: CONNECTIONS, seconds, requests: [req] });
      clearInterval(watch);
      const taken = sessions.taken - before.taken;
      const dry = sessions.dry - before.dry;
      const abandoned = sessions.abandoned - before.abandoned;
      // The rate the pool must sustain: successful calls per second until it ran dry (if it did).
      const activeSeconds = ((dryAt ?? performance.now()) - t0) / 1000;
      // The highest rate seen so far: unused sessions carry over to the next repetition, so erring high costs little.
      const seen = Math.min(r.ok, taken * perSession) / Math.max(0.5, activeSeconds);
      estimate = measuredOnce ? Math.max(estimate, seen) : Math.max(50, seen);
      measuredOnce = true;
      return { r, pool: { sizeBefore: before.size, taken, dry, abandoned, errorSamples: sessions.errorSamples.splice(0) } };
    };
    await fill(WARMUP, margin);
    const warm = await runOnce(WARMUP);
    if (warm.pool.dry) log(`    (warm-up: pool ran dry after ${warm.pool.taken} sessions; estimated ${fmt(estimate)} req/s)`);
    const reps: RepResult[] = [];
    for (let i = 0; i < REPS; i++) {
      await fill(DURATION, margin);
      const { value, w } = await measured(c.server, DURATION, () => runOnce(DURATION), true);
      const rep = fromCannon(value.r, w);
      rep.pool = value.pool;
      reps.push(rep);
      progress(rep, i, 'req/s');
      if (value.pool.dry) {
        const msg = `the session pool ran dry in rep ${i + 1} (${value.pool.dry} requests sent with no session, answered 401 and counted as non-2xx)`;
        notes.push(msg);
        warnings.push(`${name}: ${msg}`);
      }
    }
    const abandoned = reps.reduce((a, r) => a + (r.pool?.abandoned ?? 0), 0);
    notes.push(
      `${reps.reduce((a, r) => a + (r.pool?.taken ?? 0), 0)} pre-created sessions used (${perSession} ${op} each${op === 'charge' ? ', a charge completes the session' : ''})` +
        `${abandoned ? `, ${abandoned} given up after a non-200 answer` : ''}`,
    );
    return summarize({ name, title, kind: 'requests', server: c.server.name, engine, workers: 1, concurrency: CONNECTIONS, reps, notes }, c.server);
  } finally {
    await c.close();
  }
}

async function flowScenario(
  name: string,
  engine: 'sqlite' | 'postgres',
  shoppers: number,
  workers = 1,
  more: { prepare?: Prepare; title?: string } = {},
): Promise<ScenarioResult> {
  const c = await bootCvvops(engine, { workers, cardCount: shoppers, prepare: more.prepare });
  const client = new JsonClient(c.server.port, shoppers);
  try {
    const o = { apiKey: c.apiKey, cards: c.cards, shoppers };
    await runFlows(client, { ...o, seconds: WARMUP });
    const reps: RepResult[] = [];
    for (let i = 0; i < REPS; i++) {
      const { value, w } = await measured(c.server, DURATION, () => runFlows(client, { ...o, seconds: DURATION }), workers === 1);
      reps.push(fromFlows(value, w));
      progress(reps[i]!, i, 'flows/s');
    }
    const title =
      more.title ??
      `full flows, ${shoppers} shopper${shoppers > 1 ? 's' : ''}${workers > 1 ? `, CVVOPS_WORKERS=${workers}` : ''}${engine === 'postgres' ? ', PostgreSQL' : ', SQLite'}`;
    return summarize({ name, title, kind: 'flows', server: c.server.name, engine, workers, concurrency: shoppers, reps, notes: [] }, c.server);
  } finally {
    client.close();
    await c.close();
  }
}

// ---- growth, soak, background (SQLite only) ---------------------------------------------

const int = (n: number) => Math.round(n).toLocaleString('en-US');

/** The empty-database flows at 50 shoppers on SQLite (one process) already measured in this run, if any. */
function sqliteFlows50(scenarios: ScenarioResult[]): ScenarioResult | undefined {
  return scenarios.find((s) => (s.name === 'flows-50' || s.name === 'flows-50-sqlite') && s.engine === 'sqlite' && s.workers === 1);
}

/**
 * Flows at 50 shoppers on a database that already holds a history: a
 * million sessions, a hundred thousand cards and what they left behind
 * (bench/lib/seed.ts), written straight into the migrated file before the
 * server starts. Compared with the empty-database flows-50 of this run.
 */
async function growthScenario(reference: ScenarioResult): Promise<ScenarioResult> {
  const plan: HistoryPlan = { sessions: GROWTH_SESSIONS, cards: Math.round(GROWTH_SESSIONS / 10), otherMerchants: 4, benchShare: 0.3, days: 180 };
  let seed: SeedReport | undefined;
  const r = await flowScenario('growth', 'sqlite', 50, 1, {
    title: `full flows, 50 shoppers, SQLite, with ${int(plan.sessions)} stored sessions and ${int(plan.cards)} cards`,
    prepare: (db, merchantId) => {
      log(`    seeding ${int(plan.sessions)} sessions, ${int(plan.cards)} cards (better-sqlite3, straight into the migrated file)…`);
      seed = seedHistory(db.file!, merchantId, plan);
      log(
        `    seeded in ${fmt(seed.seconds, 1)} s (${fmt(seed.flushSeconds, 1)} s of it the fsync), file ${fmt(seed.fileBytes / 1e9, 2)} GB: ` +
          Object.entries(seed.rows)
            .map(([t, n]) => `${t} ${int(n)}`)
            .join(', '),
      );
    },
  });
  const ratio = r.rate.median / reference.rate.median;
  r.growth = {
    plan,
    seed: seed!,
    ratio,
    reference: { scenario: reference.name, rate: reference.rate.median, p99: reference.p99.median, worstStepP99: worstStepP99(reference) },
  };
  r.notes.push(
    `${fmt(r.rate.median, 1)} flows/s with the history against ${fmt(reference.rate.median, 1)} on an empty database (${reference.name}, same run): ` +
      `${fmt(ratio * 100)} %; seeding took ${fmt(seed!.seconds, 1)} s`,
  );
  log(`    vs ${reference.name} (empty database): ${fmt(r.rate.median, 1)} / ${fmt(reference.rate.median, 1)} flows/s = ${fmt(ratio * 100)} %`);
  return r;
}

/** Size of a SQLite database on disk: the file and its WAL. */
function databaseBytes(file: string | undefined): number {
  if (!file) return NaN;
  return [file, `${file}-wal`].reduce((a, f) => a + (existsSync(f) ? statSync(f).size : 0), 0);
}

/**
 * Flows at 50 shoppers for SOAK seconds on one server process, in three
 * equal parts (the minutes of the 3-minute soak), with the server's VmRSS
 * sampled every second. The memory target compares the RSS at the end of the
 * first part with the RSS at the end. No warm-up: the first part is one.
 */
async function soakScenario(): Promise<ScenarioResult> {
  const c = await bootCvvops('sqlite', { cardCount: 50 });
  const client = new JsonClient(c.server.port, 50);
  const pid = c.server.proc.pid;
  const t0 = performance.now();
  const since = () => Math.round((performance.now() - t0) / 100) / 10;
  const rss: SoakInfo['rss'] = [];
  const sample = () => {
    const v = currentRss(pid);
    rss.push([since(), v]);
    return v;
  };
  sample();
  const timer = setInterval(sample, 1000);
  const part = SOAK / 3;
  const reps: RepResult[] = [];
  const thirds: SoakInfo['thirds'] = [];
  try {
    const o = { apiKey: c.apiKey, cards: c.cards, shoppers: 50 };
    for (let i = 0; i < 3; i++) {
      const { value, w } = await measured(c.server, part, () => runFlows(client, { ...o, seconds: part }), true);
      const rep = fromFlows(value, w);
      reps.push(rep);
      const now = sample();
      const parts = rssParts(pid);
      const metrics = await scrapeMetrics(c.server.port);
      const metric = (name: string) => (metrics ? metricValue(metrics, name) : NaN);
      const t = {
        endSeconds: since(),
        rss: now,
        rssAnon: parts.anon,
        rssFile: parts.file,
        rssShmem: parts.shmem,
        heapUsed: metric('nodejs_heap_size_used_bytes'),
        heapTotal: metric('nodejs_heap_size_total_bytes'),
        external: metric('nodejs_external_memory_bytes'),
        databaseBytes: databaseBytes(c.db.file),
        flowsPerSecond: rep.rate,
      };
      thirds.push(t);
      progress(rep, i, 'flows/s', 'part');
      log(
        `      at ${fmt(t.endSeconds)} s: server RSS ${fmt(now / 1e6)} MB (anonymous ${fmt(t.rssAnon / 1e6)}, file ${fmt(t.rssFile / 1e6)}, shared ${fmt(t.rssShmem / 1e6)}), ` +
          `JS heap used ${fmt(t.heapUsed / 1e6)} of ${fmt(t.heapTotal / 1e6)} MB, external ${fmt(t.external / 1e6)} MB, database ${fmt(t.databaseBytes / 1e6)} MB`,
      );
    }
  } finally {
    clearInterval(timer);
    client.close();
  }
  try {
    const r = summarize(
      {
        name: 'soak',
        title: `full flows, 50 shoppers, SQLite, ${fmt(SOAK)} s on one server process (its three parts as repetitions)`,
        kind: 'flows',
        server: c.server.name,
        engine: 'sqlite',
        workers: 1,
        concurrency: 50,
        reps,
        notes: [],
      },
      c.server,
    );
    const growth = thirds[2]!.rss / thirds[0]!.rss - 1;
    r.soak = { seconds: SOAK, rss, thirds, growth, maxSampledRss: Math.max(...rss.map(([, v]) => v)), peakRss: r.peakRss.sum };
    r.notes.push(
      `RSS ${fmt(thirds[0]!.rss / 1e6)} MB after ${fmt(thirds[0]!.endSeconds)} s, ${fmt(thirds[2]!.rss / 1e6)} MB after ${fmt(thirds[2]!.endSeconds)} s ` +
        `(${growth >= 0 ? '+' : ''}${fmt(growth * 100, 1)} %); peak (VmHWM) ${fmt(r.peakRss.sum / 1e6)} MB`,
    );
    log(
      `    RSS end of first third ${fmt(thirds[0]!.rss / 1e6)} MB → end ${fmt(thirds[2]!.rss / 1e6)} MB (${growth >= 0 ? '+' : ''}${fmt(growth * 100, 1)} %), ` +
        `peak ${fmt(r.peakRss.sum / 1e6)} MB`,
    );
    return r;
  } finally {
    await c.close();
  }
}

/**
 * The backlog for the background scenario: the sweeper deletes expired CVC
 * sessions 500 at a time, up to 50,000 a second, and expires 200 sessions a
 * second; the outbox delivers 20 rows every 500 ms (40 a second). Sized so
 * that it drains in well under a minute and the sweeper runs its full
 * 500-row batches and several 200-session ticks.
 */
const BACKLOG: Omit<BacklogPlan, 'endpointId'> = { expiredCvcSessions: 40_000, expiredActiveSessions: 1_000, outbox: 600 };
/** Some history under the backlog, so the sweeper deletes from tables and indexes of a used database, not from a new one. */
const BACKGROUND_HISTORY: HistoryPlan = { sessions: 100_000, cards: 10_000, otherMerchants: 4, benchShare: 0.3, days: 180 };
const BACKGROUND_LIMIT_S = 180;
/** API.md section 8: the endpoint listens to every event (so each expired session also makes a delivery). */
const WEBHOOK_EVENTS = [
  'cvv.collected',
  'threeds.completed',
  'charge.succeeded',
  'charge.failed',
  'session.completed',
  'session.canceled',
  'session.expired',
  'cvv.blocked',
];

/**
 * Polls (four times a second) until no CVC session is past its expiry, no
 * session is active past its expiry and, after that (expiring a session adds
 * a delivery), no delivery is pending; or BACKGROUND_LIMIT_S. Existence
 * checks only (one index probe each): a reader holding the WAL longer could
 * delay the server's checkpoints. `tick` is called every 10 s.
 */
async function waitDrained(reader: Sqlite.Database, tick: () => void): Promise<{ drained: boolean; done: BackgroundResult['done'] }> {
  const q = {
    cvc: reader.prepare('SELECT EXISTS (SELECT 1 FROM cvc_sessions WHERE expires_at <= ?)').pluck(),
    sessions: reader.prepare("SELECT EXISTS (SELECT 1 FROM sessions WHERE status = 'active' AND expires_at <= ?)").pluck(),
    outbox: reader.prepare("SELECT EXISTS (SELECT 1 FROM webhook_outbox WHERE status = 'pending')").pluck(),
  };
  const t0 = performance.now();
  const at = () => (performance.now() - t0) / 1000;
  const done: BackgroundResult['done'] = { cvcSessions: null, sessions: null, outbox: null };
  let lastTick = 0;
  while (at() < BACKGROUND_LIMIT_S) {
    const now = Date.now();
    if (done.cvcSessions === null && q.cvc.get(now) === 0) done.cvcSessions = at();
    if (done.sessions === null && q.sessions.get(now) === 0) done.sessions = at();
    if (done.sessions !== null && done.outbox === null && q.outbox.get() === 0) done.outbox = at();
    if (done.cvcSessions !== null && done.sessions !== null && done.outbox !== null) return { drained: true, done };
    if (at() - lastTick >= 10) {
      lastTick = at();
      tick();
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { drained: false, done };
}

/**
 * The sweeper and the webhook outbox working through a backlog on an
 * otherwise idle server, its event loop watched by /metrics and, finer, by
 * bench/lib/loop-probe.mjs loaded into it (which also times every SQLite
 * statement, to say what ran in a stall). The webhook endpoint is registered
 * through the API on a first start (a test-mode endpoint may be plain http
 * to a loopback receiver with CVVOPS_ALLOW_PRIVATE_TARGETS=on); the backlog is
 * written while the server is down; the window runs from /readyz answering
 * on the second start until everything is drained (or BACKGROUND_LIMIT_S).
 */
async function backgroundScenario(): Promise<BackgroundResult> {
  const receiver = await startReceiver();
  const db = sqliteDatabase();
  const env = { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' };
  const notes: string[] = [];
  try {
    const merchant = await createMerchant(db.url);
    let server = await startCvvops(db, { env });
    let endpointId: string;
    const client = new JsonClient(server.port, 2);
    try {
      const { json } = await client.post<{ id: string }>(
        '/WebhookEndpoints',
        { url: receiver.url, events: WEBHOOK_EVENTS },
        { authorization: `Bearer ${merchant.testKey}` },
        201,
      );
      endpointId = json.id;
    } finally {
      client.close();
      await server.stop();
    }
    const expectedDeliveries = BACKLOG.outbox + BACKLOG.expiredActiveSessions;
    const history = seedHistory(db.file!, merchant.merchantId, BACKGROUND_HISTORY);
    const seed = seedBacklog(db.file!, merchant.merchantId, { ...BACKLOG, endpointId });
    log(
      `    history of ${int(BACKGROUND_HISTORY.sessions)} sessions written in ${fmt(history.seconds, 1)} s; backlog in ${fmt(seed.seconds, 1)} s: ` +
        `${int(BACKLOG.expiredCvcSessions)} expired CVC sessions, ${int(BACKLOG.expiredActiveSessions)} expired active sessions, ` +
        `${int(BACKLOG.outbox)} pending deliveries (${int(expectedDeliveries)} deliveries expected with session.expired)`,
    );

    const probe = new LoopProbe();
    server = await startCvvops(db, { env: { ...env, ...probe.env }, nodeArgs: probe.nodeArgs });
    try {
      const pid = server.proc.pid;
      const startup = await probe.mark(pid);
      if (!startup) notes.push('the event-loop probe did not answer (bench/lib/loop-probe.mjs): only /metrics figures');
      await scrapeEventLoop(server.port); // prom-client's histogram restarts here: the window begins
      const cpu0 = server.cpu();
      const t0 = performance.now();
      const reader = new Sqlite(db.file, { readonly: true, fileMustExist: true });
      let drain: { drained: boolean; done: BackgroundResult['done'] };
      let left: BackgroundResult['left'];
      try {
        drain = await waitDrained(reader, () =>
          log(`    ${fmt((performance.now() - t0) / 1000)} s: ${receiver.received} of ${expectedDeliveries} deliveries received`),
        );
        const count = (sql: string, ...a: unknown[]) =>
          Number(
            reader
              .prepare(sql)
              .pluck()
              .get(...a),
          );
        left = {
          expiredCvcSessions: count('SELECT count(*) FROM cvc_sessions WHERE expires_at <= ?', Date.now()),
          expiredActiveSessions: count("SELECT count(*) FROM sessions WHERE status = 'active' AND expires_at <= ?", Date.now()),
          pendingDeliveries: count("SELECT count(*) FROM webhook_outbox WHERE status = 'pending'"),
          failedDeliveries: count("SELECT count(*) FROM webhook_outbox WHERE status = 'failed'"),
        };
      } finally {
        reader.close();
      }
      const seconds = (performance.now() - t0) / 1000;
      const window = await probe.mark(pid);
      const metrics = await scrapeEventLoop(server.port);
      const cpu1 = server.cpu();
      const span = receiver.first !== null && receiver.last !== null ? (receiver.last - receiver.first) / 1000 : NaN;
      if (receiver.received !== expectedDeliveries) notes.push(`${receiver.received} deliveries received, ${expectedDeliveries} expected`);
      if (receiver.unsigned) notes.push(`${receiver.unsigned} deliveries without a Cvvops-Signature header`);
      return {
        name: 'background',
        title: 'the sweeper and the webhook outbox draining a backlog, server otherwise idle (SQLite)',
        history: { plan: BACKGROUND_HISTORY, seed: history },
        backlog: { ...BACKLOG, expectedDeliveries },
        seed,
        drained: drain.drained,
        limitSeconds: BACKGROUND_LIMIT_S,
        seconds,
        done: drain.done,
        left,
        deliveries: { received: receiver.received, unsigned: receiver.unsigned, perSecond: span > 0 ? (receiver.received - 1) / span : NaN },
        serverCpuCores: (cpu1.total - cpu0.total) / seconds,
        peakRss: server.peakRss().sum,
        metrics,
        probe: window,
        startup,
        notes,
      };
    } finally {
      await server.stop();
    }
  } finally {
    await receiver.close();
    await db.drop();
  }
}

/** The 50-shopper flow load on a server started with --cpu-prof (every process, with workers); the profiles' directory and the flows run. */
async function profiledFlows(engine: 'sqlite' | 'postgres', dir: string, workers?: number): Promise<{ r: FlowRun; flows: number; mainCpuMsPerFlow: number }> {
  const c = await bootCvvops(engine, { cardCount: 50, nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`], ...(workers ? { workers } : {}) });
  const client = new JsonClient(c.server.port, 50);
  try {
    const o = { apiKey: c.apiKey, cards: c.cards, shoppers: 50 };
    const cpu0 = c.server.cpu().main;
    const warm = await runFlows(client, { ...o, seconds: WARMUP });
    const r = await runFlows(client, { ...o, seconds: DURATION });
    const flows = warm.flows + r.flows;
    return { r, flows, mainCpuMsPerFlow: ((c.server.cpu().main - cpu0) * 1000) / flows };
  } finally {
    client.close();
    await c.close();
  }
}

/**
 * The same profiled load on CVVOPS_WORKERS=2: each worker's self time by
 * layer (the primary only forks and restarts workers: its profile is left
 * out), to set against one process's, a flow.
 */
async function profileWorkersRun(engine: 'sqlite' | 'postgres'): Promise<BenchResults['profileWorkers']> {
  const dir = mkdtempSync(join(os.tmpdir(), 'cvvops-prof-'));
  try {
    const { r, flows, mainCpuMsPerFlow } = await profiledFlows(engine, dir, 2);
    log(`    under profile, 2 workers: ${fmt(r.flowsPerSecond, 1)} flows/s, non-2xx ${r.non2xx}`);
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    const profiles = files.map((f) => summarizeProfile(join(dir, f), ROOT, 0)).sort((a, b) => b.busyMs - a.busyMs);
    // The primary (it only forks) may be stopped before it writes its profile; the two workers' are the two busiest.
    if (profiles.length < 2) throw new Error(`expected a profile from each of 2 workers, got ${profiles.length}`);
    if (profiles.length < 3) warnings.push('profile, 2 workers: the primary wrote no profile (stopped before it could); the workers did');
    return {
      scenario: `full flows, 50 shoppers, ${engine}, CVVOPS_WORKERS=2, every process started with --cpu-prof (start-up, ${WARMUP} s warm-up and ${DURATION} s of load)`,
      flows,
      flowsPerSecond: r.flowsPerSecond,
      mainCpuMsPerFlow,
      processes: profiles.slice(0, 2).map((p) => ({ busyMs: p.busyMs, layers: p.layers })),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function profileRun(engine: 'sqlite' | 'postgres'): Promise<BenchResults['profile']> {
  const dir = mkdtempSync(join(os.tmpdir(), 'cvvops-prof-'));
  try {
    const { r, flows, mainCpuMsPerFlow } = await profiledFlows(engine, dir);
    log(`    under profile: ${fmt(r.flowsPerSecond, 1)} flows/s (the profiler slows the server), non-2xx ${r.non2xx}`);
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    if (!files.length) throw new Error('the server wrote no .cpuprofile (did it exit through process.exit on SIGTERM?)');
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
    const saved = join(ROOT, 'bench', `cvvops-flows50-${engine}-${stamp}.cpuprofile`);
    copyFileSync(join(dir, files[0]!), saved);
    const s = summarizeProfile(saved, ROOT, 10);
    return {
      ...s,
      flows,
      mainCpuMsPerFlow,
      file: saved,
      savedAs: saved.slice(ROOT.length + 1),
      scenario: `full flows, 50 shoppers, ${engine}, server started with --cpu-prof (the profile covers start-up, ${WARMUP} s warm-up and ${DURATION} s of load)`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- main ---------------------------------------------------------------------------------

async function main(): Promise<void> {
  installExitHandlers();
  const startedAt = new Date().toISOString();
  const builtFrom = commit();
  const m = machine();
  const engine = POSTGRES ? 'postgres' : 'sqlite';
  if (POSTGRES) m.postgres = await postgresVersion();
  const dbDescribe = POSTGRES
    ? await (async () => {
        const d = await postgresDatabase();
        await d.drop();
        return d.describe;
      })()
    : sqliteDatabase().describe;
  log(`cvvops benchmark — ${m.cpus} cores (${m.model}), Node ${m.node}, ${m.kernel}; load average ${m.loadAverageAtStart.join(' ')}`);
  log(
    `database: ${dbDescribe}; ${REPS} × ${DURATION} s after a ${WARMUP} s warm-up; ${CONNECTIONS} connections; ` +
      `autocannon and the flow client run in this process, on the same ${m.cpus} cores as the server`,
  );
  const scenarios: ScenarioResult[] = [];
  const run = async (name: string, fn: () => Promise<ScenarioResult>) => {
    if (!selected.includes(name)) return;
    log(`\n▶ ${name}`);
    const r = await fn();
    scenarios.push(r);
    log(
      `  = ${fmt(r.rate.median, r.kind === 'flows' ? 1 : 0)} ${r.kind === 'flows' ? 'flows/s' : 'req/s'} (${fmt(r.rate.min, 0)}–${fmt(r.rate.max, 0)}), ` +
        `p99 ${fmt(r.p99.median, 2)} ms, non-2xx ${r.non2xx}, peak RSS ${fmt(r.peakRss.sum / 1e6)} MB, ${fmt(r.cpuPerRequestUs.median)} µs CPU/request`,
    );
  };

  await run('baseline-http', () => baselineScenario('baseline-http', 'http'));
  await run('baseline-express', () => baselineScenario('baseline-express', 'express'));
  const merchantAuth = (c: Cvvops) => ({ 'content-type': 'application/json', authorization: `Bearer ${c.apiKey}` });
  await run('create', () =>
    staticScenario('create', 'POST /CvvOperations (a pre-made card token)', engine, async (c) => ({
      path: '/CvvOperations',
      headers: merchantAuth(c),
      body: JSON.stringify(createBody(c.cards[0]!)),
    })),
  );
  await run('collectCvv', () => chainedScenario('collectCvv', 'POST /CvvOperations/collectCvv (fresh token per request)', engine, 'collectCvv'));
  await run('threeDS', () => chainedScenario('threeDS', 'POST /CvvOperations/threeDS (fresh token per request)', engine, 'threeDS'));
  await run('charge', () => chainedScenario('charge', 'POST /CvvOperations/charge (fresh token and session per request)', engine, 'charge'));
  await run('validateToken', () =>
    staticScenario('validateToken', 'POST /CvvOperations/validateToken (the final token of a completed flow)', engine, async (c) => {
      // One completed flow; its final token is validated over and over.
      const auth = { authorization: `Bearer ${c.apiKey}` };
      const created = await c.client.post('/CvvOperations', createBody(c.cards[0]!), auth, 201);
      const a = await c.client.post('/CvvOperations/collectCvv', { cvv: '123' }, { authorization: `Bearer ${created.json.token}` });
      const b = await c.client.post('/CvvOperations/threeDS', THREEDS_BODY, { authorization: `Bearer ${a.json.token}` });
      const d = await c.client.post('/CvvOperations/charge', {}, { authorization: `Bearer ${b.json.token}`, 'idempotency-key': randomUUID() });
      return { path: '/CvvOperations/validateToken', headers: merchantAuth(c), body: JSON.stringify({ token: d.json.token }) };
    }),
  );
  await run('flows-1', () => flowScenario('flows-1', engine, 1));
  await run('flows-10', () => flowScenario('flows-10', engine, 10));
  await run('flows-50', () => flowScenario('flows-50', engine, 50));
  await run('flows-50-workers2', () => flowScenario('flows-50-workers2', engine, 50, 2));
  await run('flows-50-sqlite', () => flowScenario('flows-50-sqlite', 'sqlite', 50));
  await run('growth', async () => {
    let reference = sqliteFlows50(scenarios);
    if (!reference) {
      // Growth is judged against an empty database of the same run: measure one first if this run has none.
      log('  (no empty-database flows-50 on SQLite in this run yet: measuring flows-50-sqlite first, as the reference)');
      reference = await flowScenario('flows-50-sqlite', 'sqlite', 50);
      reference.notes.push('run as the empty-database reference of growth');
      scenarios.push(reference);
      log(`  = flows-50-sqlite ${fmt(reference.rate.median, 1)} flows/s (reference)`);
    }
    return growthScenario(reference);
  });
  await run('soak', () => soakScenario());
  let tokens: TokenCostsResult[] | undefined;
  if (selected.includes('tokens')) {
    log('\n▶ tokens (in this process: TokenService against jose, 10,000 calls each)');
    tokens = [];
    for (const alg of ['EdDSA', 'ES256'] as const) {
      const t = await tokenCosts(alg, 10_000);
      tokens.push(t);
      for (const c of t.costs) log(`  ${alg.padEnd(5)} ${fmt(c.cpuUs, 1).padStart(6)} µs CPU (${fmt(c.wallUs, 1)} µs wall)  ${c.what}`);
      log(
        `  ${alg.padEnd(5)} a flow's tokens: ${fmt(t.perFlow.ours)} µs now, ${fmt(t.perFlow.oursWithoutShortcut)} µs without the shortcut, ${fmt(t.perFlow.jose)} µs with jose`,
      );
    }
  }
  let background: BackgroundResult | undefined;
  if (selected.includes('background')) {
    log('\n▶ background');
    background = await backgroundScenario();
    const p = background.probe;
    log(
      `  = ${background.drained ? `drained in ${fmt(background.seconds, 1)} s` : `NOT drained within ${background.limitSeconds} s`}; ` +
        `${background.deliveries.received} deliveries (${fmt(background.deliveries.perSecond, 1)}/s); event loop (probe, 1 ms): ` +
        `${p ? `p99 ${fmt(p.delay.p99, 1)} ms, max ${fmt(p.delay.max, 1)} ms, ${p.stallCount.over20ms} stalls over 20 ms` : 'no probe'}; ` +
        `/metrics: p99 ${fmt(background.metrics?.p99Ms ?? NaN, 1)} ms, max ${fmt(background.metrics?.maxMs ?? NaN, 1)} ms`,
    );
    for (const g of p?.over20msByLead ?? []) {
      const st = g.longest;
      log(
        `    ${g.n} stalls over 20 ms doing ${g.lead.slice(0, 90)}: mean ${fmt(g.meanMs, 1)} ms, longest ${fmt(g.maxMs, 1)} ms ` +
          `(${st.statements} statements, ${fmt(st.sqlMs, 1)} ms SQL, GC ${fmt(st.gcMs, 1)} ms: ` +
          `${st.top
            .slice(0, 3)
            .map((x) => `${x.n}× ${x.sql.slice(0, 60)} ${fmt(x.ms, 1)} ms`)
            .join('; ')})`,
      );
    }
    if (!background.drained) warnings.push(`background: the backlog was not drained within ${background.limitSeconds} s`);
    for (const n of background.notes) warnings.push(`background: ${n}`);
  }

  const express = scenarios.find((s) => s.name === 'baseline-express');
  if (express) for (const s of scenarios) s.ratioToExpress = s.requestsPerSecond.median / express.rate.median;

  let profile: BenchResults['profile'];
  let profileWorkers: BenchResults['profileWorkers'];
  if (PROFILE) {
    log('\n▶ profile (50 shoppers, --cpu-prof)');
    profile = await profileRun(engine);
    log(`  saved ${profile!.savedAs}; busy ${fmt(profile!.busyMs)} ms of ${fmt(profile!.sampledMs)} ms sampled. Heaviest functions by self time:`);
    for (const f of profile!.top) log(`    ${fmt(f.selfMs, 1).padStart(8)} ms ${fmt(f.percentOfBusy, 1).padStart(5)}%  ${f.functionName}  ${f.location}`);
    log('  by layer:');
    for (const l of profile!.layers) log(`    ${fmt(l.selfMs, 1).padStart(8)} ms ${fmt(l.percentOfBusy, 1).padStart(5)}%  ${l.layer}`);
    log('\n▶ profile, 2 workers (50 shoppers, --cpu-prof in every process)');
    profileWorkers = await profileWorkersRun(engine);
    for (const l of layerCosts(profile!, profileWorkers!)) log(`    ${fmt(l.one).padStart(6)} → ${fmt(l.two).padStart(6)} µs a flow  ${l.layer}`);
  }

  for (const s of scenarios) {
    if (s.non2xx || s.errors || s.unexpected)
      warnings.push(`${s.name}: ${s.non2xx} non-2xx, ${s.errors} connection errors/timeouts, ${s.unexpected} unexpected outcomes`);
  }

  const results: BenchResults = {
    startedAt,
    finishedAt: new Date().toISOString(),
    commit: builtFrom,
    machine: m,
    settings: {
      database: dbDescribe,
      durationSeconds: DURATION,
      warmupSeconds: WARMUP,
      reps: REPS,
      connections: CONNECTIONS,
      serverEnv: {
        ...SERVER_ENV,
        DATABASE_URL: POSTGRES ? 'postgres://…?options=-c search_path=<fresh schema>' : 'sqlite:<tmp>/bench.db',
        NODE_ENV: '(unset)',
      },
      only,
      ...(selected.includes('soak') ? { soakSeconds: SOAK } : {}),
      ...(selected.includes('growth') ? { growthSessions: GROWTH_SESSIONS } : {}),
    },
    scenarios,
    background,
    ...(tokens ? { tokens } : {}),
    targets: [],
    profile,
    profileWorkers,
    warnings: [...new Set(warnings)],
  };
  results.targets = evaluateTargets(results);
  writeFileSync(join(ROOT, 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(ROOT, 'bench', 'results.md'), renderMarkdown(results));
  log(`\n${renderTable(results)}`);
  log('\ntargets:');
  for (const t of results.targets) log(`  [${t.status}] ${t.target}: ${t.requirement} — ${t.measured}`);
  if (results.warnings.length) {
    log('\nwarnings:');
    for (const w of results.warnings) log(`  - ${w}`);
  }
  log('\nwrote bench/results.md and bench/results.json');
}

main().then(
  async () => {
    await cleanupAll();
    process.exit(0);
  },
  async (err: unknown) => {
    process.stderr.write(`\nbench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    await cleanupAll();
    process.exit(1);
  },
);
