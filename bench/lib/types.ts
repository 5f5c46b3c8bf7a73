import type { TokenCostsResult } from './tokens.js';
import type { Step } from './flows.js';
import type { ProbeWindow } from './probe.js';
import type { ProfileSummary } from './profile.js';
import type { BacklogPlan, HistoryPlan, SeedReport } from './seed.js';
import type { Latency, Spread } from './stats.js';

export interface RepResult {
  seconds: number;
  /** Requests (or flows) per second. */
  rate: number;
  /** HTTP requests per second (for flows: the flows' requests). */
  requestsPerSecond: number;
  /** Requests (or flows) completed in the window. */
  units: number;
  requests: number;
  latency: Latency;
  steps?: Record<Step, Latency>;
  non2xx: number;
  statusCodes?: Record<string, number>;
  /** Connection errors and timeouts. */
  errors: number;
  /** Flows: 2xx answers with an unexpected outcome. */
  unexpected?: number;
  failedFlows?: number;
  errorSamples?: string[];
  /** Server CPU (every process, every thread) over the window, seconds, and as a share of one core. */
  serverCpuSeconds: number;
  serverCpuCores: number;
  serverMainThreadCpuSeconds: number;
  cpuPerRequestUs: number;
  mainThreadCpuPerRequestUs: number;
  cpuPerFlowUs?: number;
  /** The runner (load generator) CPU over the window, as a share of one core. */
  runnerCpuCores: number;
  /** Everything else on the machine over the window (other processes: noise), in cores. */
  otherCpuCores: number;
  /** With PostgreSQL: every `postgres` process on the machine (its CPU is not counted in "other"). */
  databaseCpuCores?: number;
  /** The server's event-loop delay over the window (prom-client, from /metrics; one process only). */
  eventLoop?: { p99Ms: number; maxMs: number };
  pool?: { sizeBefore: number; taken: number; dry: number; abandoned: number; errorSamples: string[] };
}

export interface ScenarioResult {
  name: string;
  title: string;
  kind: 'requests' | 'flows';
  server: string;
  engine: 'sqlite' | 'postgres' | 'none';
  workers: number;
  concurrency: number;
  reps: RepResult[];
  rate: Spread;
  requestsPerSecond: Spread;
  p50: Spread;
  p95: Spread;
  p99: Spread;
  /** Flows: median over reps of each step's percentiles. */
  steps?: Record<string, { p50: number; p95: number; p99: number }>;
  non2xx: number;
  errors: number;
  unexpected: number;
  statusCodes: Record<string, number>;
  /** VmHWM at the end of the scenario (a fresh server process per scenario): sum over its processes, and the largest one. */
  peakRss: { sum: number; max: number; processes: number };
  cpuPerRequestUs: Spread;
  mainThreadCpuPerRequestUs: Spread;
  cpuPerFlowUs?: Spread;
  serverCpuCores: Spread;
  runnerCpuCores: Spread;
  otherCpuCores: Spread;
  databaseCpuCores?: Spread;
  eventLoopDelay?: { p99Ms: Spread; maxMs: Spread };
  /** Requests per second relative to the Express + helmet baseline's (median / median). */
  ratioToExpress?: number;
  /** `growth`: the seeded history and the comparison with an empty database. */
  growth?: GrowthInfo;
  /** `soak`: resident memory over the run (its reps are the thirds of the soak). */
  soak?: SoakInfo;
  notes: string[];
}

export interface GrowthInfo {
  plan: HistoryPlan;
  seed: SeedReport;
  /** The empty-database flows at 50 shoppers (SQLite, one process) of this run. */
  reference: { scenario: string; rate: number; p99: number; worstStepP99: number } | null;
  /** rate / reference rate (medians). */
  ratio: number | null;
}

export interface SoakInfo {
  seconds: number;
  /** [seconds since the start, VmRSS bytes of the server], about every second. */
  rss: Array<[number, number]>;
  /** At the end of each third (a minute of the 3-minute soak). */
  thirds: Array<{
    endSeconds: number;
    rss: number;
    /** VmRSS parts (/proc/<pid>/status): anonymous (JS heap, malloc: SQLite's page cache, buffers), file-backed, shared. */
    rssAnon: number;
    rssFile: number;
    rssShmem: number;
    /** prom-client: JS heap used and committed (total), and memory outside the JS heap held by JS objects (Buffers). */
    heapUsed: number;
    heapTotal: number;
    external: number;
    databaseBytes: number;
    flowsPerSecond: number;
  }>;
  /** RSS at the end of the last third / at the end of the first, minus 1. */
  growth: number;
  /** The largest RSS sample, and VmHWM at the end. */
  maxSampledRss: number;
  peakRss: number;
}

/** `background`: the sweeper and the webhook outbox working through a backlog on an otherwise idle server. */
export interface BackgroundResult {
  name: 'background';
  title: string;
  /** Written first: the database the backlog sits in. */
  history: { plan: HistoryPlan; seed: SeedReport };
  backlog: Omit<BacklogPlan, 'endpointId'> & { expectedDeliveries: number };
  seed: SeedReport;
  /** Everything drained before the time limit. */
  drained: boolean;
  limitSeconds: number;
  /** From /readyz answering to the backlog drained (or the limit). */
  seconds: number;
  /** When each part was done, seconds after ready (null: not within the window). */
  done: { cvcSessions: number | null; sessions: number | null; outbox: number | null };
  left: { expiredCvcSessions: number; expiredActiveSessions: number; pendingDeliveries: number; failedDeliveries: number };
  deliveries: { received: number; unsigned: number; perSecond: number };
  serverCpuCores: number;
  peakRss: number;
  /** prom-client on /metrics (monitorEventLoopDelay at 10 ms resolution), over the window. */
  metrics: { p99Ms: number; maxMs: number } | null;
  /** bench/lib/loop-probe.mjs in the server: the window, and start-up until ready (not judged). */
  probe: ProbeWindow | null;
  startup: ProbeWindow | null;
  notes: string[];
}

export interface Machine {
  cpus: number;
  availableParallelism: number;
  model: string;
  node: string;
  platform: string;
  kernel: string;
  memoryGiB: number;
  loadAverageAtStart: number[];
  postgres?: string;
}

export interface TargetResult {
  target: string;
  requirement: string;
  measured: string;
  status: 'met' | 'not met' | 'not measured';
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  commit: string;
  machine: Machine;
  settings: {
    database: string;
    durationSeconds: number;
    warmupSeconds: number;
    reps: number;
    connections: number;
    serverEnv: Record<string, string>;
    only: string[] | null;
    /** `soak`: its length; `growth`: the sessions seeded. */
    soakSeconds?: number;
    growthSessions?: number;
  };
  scenarios: ScenarioResult[];
  background?: BackgroundResult;
  targets: TargetResult[];
  /** `flows`: run while profiled; `mainCpuMsPerFlow`: the main threads' CPU time (/proc) over them, a flow. */
  profile?: ProfileSummary & { savedAs: string; scenario: string; flows?: number; mainCpuMsPerFlow?: number };
  /** The same load on CVVOPS_WORKERS=2, every process profiled: the two workers' profiles (the primary's is left out). */
  profileWorkers?: {
    scenario: string;
    flows: number;
    flowsPerSecond: number;
    mainCpuMsPerFlow: number;
    processes: Array<{ busyMs: number; layers: ProfileSummary['layers'] }>;
  };
  /** `tokens`: signing and verifying as the server does it and as jose would (bench/lib/tokens.ts). */
  tokens?: TokenCostsResult[];
  warnings: string[];
}
