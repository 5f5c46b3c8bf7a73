import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { onCleanup } from './proc.js';

/** What ran in one stall of the server's event loop (bench/lib/loop-probe.mjs). */
export interface Stall {
  /** Wall-clock ms when the loop last turned before the stall. */
  at: number;
  /** Gap between two ticks of the probe's 1 ms timer (the block plus up to ~1 ms). */
  ms: number;
  gcMs: number;
  statements: number;
  sqlMs: number;
  /**
   * The statement that says what work it was: of the single statements and
   * the per-row loops (statements run the same number of times, 10 or more),
   * the one that took longest; for a loop, its first statement.
   */
  lead: string | null;
  top: Array<{ sql: string; n: number; ms: number; maxMs: number }>;
}

/** One window of the probe: from the previous mark (or the process start) to this one. */
export interface ProbeWindow {
  seq: number;
  from: number;
  to: number;
  seconds: number;
  /** monitorEventLoopDelay at 1 ms resolution, ms (intervals between its ticks: ~1.1 when idle). */
  delay: { count: number; min: number; p50: number; p90: number; p99: number; max: number; mean: number };
  /** The 50 longest stalls over 5 ms, longest first. */
  stalls: Stall[];
  stallCount: { over5ms: number; over10ms: number; over20ms: number };
  /** Every stall over 20 ms, grouped by its lead statement. */
  over20msByLead: Array<{ lead: string; n: number; maxMs: number; meanMs: number; meanSqlMs: number; longest: Stall }>;
  /** better-sqlite3 statements by total time. */
  sql: Array<{ sql: string; n: number; ms: number; maxMs: number }>;
  gc: { count: number; ms: number; maxMs: number; over10ms: number };
}

const PROBE = join(import.meta.dirname, 'loop-probe.mjs');

/**
 * The event-loop probe for one server process: `nodeArgs` and `env` to start
 * it with; `mark()` asks it (SIGUSR2) for what it saw since the last mark.
 */
export class LoopProbe {
  readonly #base: string;
  #seq = 0;

  constructor() {
    const dir = mkdtempSync(join(tmpdir(), 'cvvops-probe-'));
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    this.#base = join(dir, 'loop');
  }

  get nodeArgs(): string[] {
    return ['--import', pathToFileURL(PROBE).href];
  }

  get env(): Record<string, string> {
    return { BENCH_LOOP_PROBE: this.#base };
  }

  async mark(pid: number, timeoutMs = 5000): Promise<ProbeWindow | null> {
    const file = `${this.#base}.${++this.#seq}.json`;
    process.kill(pid, 'SIGUSR2');
    const deadline = Date.now() + timeoutMs;
    while (!existsSync(file)) {
      if (Date.now() > deadline) return null;
      await new Promise((r) => setTimeout(r, 20));
    }
    return JSON.parse(readFileSync(file, 'utf8')) as ProbeWindow;
  }
}

/** A local webhook receiver: answers 200 to every POST and counts them (and the ones without a signature). */
export interface Receiver {
  url: string;
  received: number;
  unsigned: number;
  /** Wall-clock ms of the first and the last delivery. */
  first: number | null;
  last: number | null;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: '', received: 0, unsigned: 0, first: null, last: null, close: async () => {} };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      r.received++;
      if (!req.headers['cvvops-signature']) r.unsigned++;
      r.first ??= Date.now();
      r.last = Date.now();
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"received":true}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  r.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/webhooks/cvvops`;
  r.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}
