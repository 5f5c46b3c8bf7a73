import type { Step } from './flows.js';
import type { ProfileSummary } from './profile.js';
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
  };
  scenarios: ScenarioResult[];
  targets: TargetResult[];
  profile?: ProfileSummary & { savedAs: string; scenario: string };
  warnings: string[];
}
