import { type ChildProcess, execFileSync, spawn, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import http from 'node:http';

/**
 * Child processes of the benchmark: every one is tracked, and killed when the
 * runner exits, fails or is interrupted. Cluster workers (grandchildren) are
 * tracked by pid once seen, and killed only if their command line is still
 * the server's (pid reuse).
 */
const children = new Set<ChildProcess>();
const grandchildren = new Map<number, string>();
const cleanups: Array<() => Promise<void> | void> = [];

export function trackChild(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

export function trackGrandchild(pid: number): void {
  grandchildren.set(pid, cmdline(pid));
}

/** Run at the end (and on failure): drop PostgreSQL schemas, remove temporary folders. */
export function onCleanup(fn: () => Promise<void> | void): void {
  cleanups.push(fn);
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

export function killAllChildren(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  for (const [pid, cmd] of grandchildren) {
    if (cmd && cmdline(pid) === cmd) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
  grandchildren.clear();
}

let cleaning: Promise<void> | null = null;
export function cleanupAll(): Promise<void> {
  killAllChildren();
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await Promise.race([fn(), new Promise((r) => setTimeout(r, 10_000).unref())]);
      } catch (e) {
        process.stderr.write(`cleanup: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  })();
  return cleaning;
}

let installed = false;
export function installExitHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAllChildren);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping every child process\n`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: uncaught ${err.stack ?? err.message}\n`);
    void cleanupAll().finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`bench: unhandled rejection ${err instanceof Error ? err.stack : String(err)}\n`);
    void cleanupAll().finally(() => process.exit(1));
  });
}

/** A port free at this moment on 127.0.0.1 (servers at LOG_LEVEL=warn do not log the port they took). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface Spawned {
  child: ChildProcess;
  pid: number;
  /** The last 64 KiB of stdout and stderr. */
  output(): string;
  exited(): boolean;
}

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions): Spawned {
  const child = trackChild(spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  const keep = (b: Buffer) => {
    out += b.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.on('error', (e) => keep(Buffer.from(`spawn error: ${e.message}\n`)));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  if (!child.pid) throw new Error(`could not start ${cmd} ${args.join(' ')}`);
  return { child, pid: child.pid, output: () => out, exited: () => child.exitCode !== null || child.signalCode !== null };
}

/** Polls `GET path` until it answers `ok(status)`; fails loudly if the process exits or 30 s pass. */
export async function waitHttp(p: Spawned, port: number, path: string, ok: (status: number) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (p.exited()) throw new Error(`${what} exited before it was ready (code ${p.child.exitCode}, signal ${p.child.signalCode}):\n${p.output()}`);
    const status = await new Promise<number>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
    });
    if (ok(status)) return;
    last = status ? `HTTP ${status}` : 'no connection';
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not become ready on port ${port} within 30 s (${last}):\n${p.output()}`);
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export function stopProcess(p: Spawned, graceMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (p.exited()) return resolve({ code: p.child.exitCode, signal: p.child.signalCode });
    const t = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
    p.child.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal });
    });
    p.child.kill('SIGTERM');
  });
}

// ---- /proc -----------------------------------------------------------------

let ticks = 0;
export function clockTicks(): number {
  if (!ticks) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** utime + stime of a process (all its threads) or of one thread, in seconds. */
function cpuOf(statPath: string): number {
  try {
    const s = readFileSync(statPath, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state); utime is field 14, stime field 15.
    return (Number(f[11]) + Number(f[12])) / clockTicks();
  } catch {
    return 0;
  }
}

export function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const p = `/proc/${pid}/task/${tid}/children`;
      if (!existsSync(p)) continue;
      for (const c of readFileSync(p, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    }
  } catch {
    /* gone */
  }
  return out;
}

/** The process and every descendant (a cluster primary and its workers). */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) for (const c of childPids(all[i]!)) if (!all.includes(c)) all.push(c);
  return all;
}

export interface CpuSample {
  /** utime+stime of every process of the server (every thread), seconds. */
  total: number;
  /** utime+stime of the main (JavaScript) thread of every process, seconds. */
  main: number;
  pids: number[];
}

export function cpuSample(pid: number): CpuSample {
  const pids = processTree(pid);
  let total = 0;
  let main = 0;
  for (const p of pids) {
    total += cpuOf(`/proc/${p}/stat`);
    main += cpuOf(`/proc/${p}/task/${p}/stat`);
  }
  return { total, main, pids };
}

function statusField(pid: number, field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Peak RSS (VmHWM) of each process of the tree, bytes. */
export function peakRss(pid: number): { perProcess: Record<number, number>; sum: number; max: number } {
  const perProcess: Record<number, number> = {};
  let sum = 0;
  let max = 0;
  for (const p of processTree(pid)) {
    const v = statusField(p, 'VmHWM');
    perProcess[p] = v;
    sum += v;
    max = Math.max(max, v);
  }
  return { perProcess, sum, max };
}

/** Resident memory now (VmRSS) of the process and its descendants, bytes. */
export function currentRss(pid: number): number {
  return processTree(pid).reduce((a, p) => a + statusField(p, 'VmRSS'), 0);
}

/** VmRSS and its parts (anonymous memory: heaps and malloc; file-backed: code and mapped files; shared memory), bytes, one process. */
export function rssParts(pid: number): { rss: number; anon: number; file: number; shmem: number } {
  return { rss: statusField(pid, 'VmRSS'), anon: statusField(pid, 'RssAnon'), file: statusField(pid, 'RssFile'), shmem: statusField(pid, 'RssShmem') };
}

/** CPU time the whole machine spent busy (every core; user, nice, system, irq, softirq, steal), seconds. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = v;
    return (user + nice + system + irq + softirq + steal) / clockTicks();
  } catch {
    return NaN;
  }
}

/** CPU time of every process named `name` on the machine (e.g. the PostgreSQL server and its backends), seconds. */
export function cpuOfProcessesNamed(name: string): number {
  let total = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')) !== name) continue;
      total += cpuOf(`/proc/${d}/stat`);
    } catch {
      /* gone */
    }
  }
  return total;
}
