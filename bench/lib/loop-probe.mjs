/**
 * Loaded into the server under test with `node --import` (bench `background`
 * scenario only): measures the event loop finer than the server's /metrics
 * (prom-client samples at 10 ms) and says what ran while it was blocked. No
 * server code changes.
 *
 * - monitorEventLoopDelay at 1 ms resolution: the intervals between its 1 ms
 *   timer ticks (so ~1.1 ms when idle; a block of B ms shows as ~B + 1 ms).
 * - A 1 ms interval timer of its own: a gap over STALL_MS between two of its
 *   callbacks is a stall, kept with its time and what ran inside it:
 *   - every better-sqlite3 statement (run/get/all, pragmas included), timed
 *     (the Statement prototype is wrapped; SQL text normalized), and the
 *     one that says what work it was (`lead`);
 *   - garbage-collection pauses (PerformanceObserver 'gc').
 *
 * On SIGUSR2 it writes what it saw since the previous SIGUSR2 (or since
 * start) to `${BENCH_LOOP_PROBE}.<n>.json` (n = 1, 2, …) and starts over.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';

const OUT = process.env.BENCH_LOOP_PROBE;
const STALL_MS = 5;
const RING = 1 << 16;

if (OUT) install();

function install() {
  const t0Wall = Date.now() - performance.now();
  const wall = (t) => Math.round(t0Wall + t);

  // ---- statements -------------------------------------------------------------
  const ids = new Map();
  const texts = [];
  const startAt = new Float64Array(RING);
  const took = new Float32Array(RING);
  const which = new Int32Array(RING);
  let n = 0;
  let perSql = new Map();
  const normalize = (sql) =>
    sql
      .replace(/\s+/g, ' ')
      .replace(/\?(?:, \?)+/g, (m) => `?×${m.split('?').length - 1}`)
      .slice(0, 240);
  const idOf = (stmt) => {
    const src = stmt.source;
    let id = ids.get(src);
    if (id === undefined) {
      id = texts.push(normalize(src)) - 1;
      ids.set(src, id);
    }
    return id;
  };
  const record = (stmt, t, d) => {
    const id = idOf(stmt);
    const i = n++ % RING;
    startAt[i] = t;
    took[i] = d;
    which[i] = id;
    let a = perSql.get(id);
    if (!a) perSql.set(id, (a = { n: 0, ms: 0, maxMs: 0 }));
    a.n++;
    a.ms += d;
    if (d > a.maxMs) a.maxMs = d;
  };
  try {
    // The server's own copy of the module (same resolved file, so the same prototype).
    const require = createRequire(new URL('../../package.json', import.meta.url));
    const Database = require('better-sqlite3');
    const db = new Database(':memory:');
    const proto = Object.getPrototypeOf(db.prepare('select 1'));
    db.close();
    for (const m of ['run', 'get', 'all']) {
      const orig = proto[m];
      proto[m] = function timed(...args) {
        const t = performance.now();
        try {
          return orig.apply(this, args);
        } finally {
          record(this, t, performance.now() - t);
        }
      };
    }
  } catch (e) {
    process.stderr.write(`loop-probe: statements not timed (${e instanceof Error ? e.message : e})\n`);
  }

  /**
   * The statements that started in [from, to], grouped by SQL, heaviest first;
   * and the one that says what work it was (`lead`): of the single statements
   * and the per-row loops (statements run the same number of times, 10 or
   * more), the one that took longest; for a loop, its first statement.
   */
  const statementsIn = (from, to) => {
    const by = new Map();
    let total = 0;
    let count = 0;
    for (let k = 0; k < Math.min(n, RING); k++) {
      const i = (n - 1 - k) % RING;
      if (startAt[i] < from) break;
      if (startAt[i] > to) continue;
      const id = which[i];
      let a = by.get(id);
      if (!a) by.set(id, (a = { sql: texts[id], n: 0, ms: 0, maxMs: 0, firstAt: 0 }));
      a.n++;
      a.ms += took[i];
      a.firstAt = startAt[i];
      if (took[i] > a.maxMs) a.maxMs = took[i];
      total += took[i];
      count++;
    }
    const all = [...by.values()];
    // Statements run the same number of times (10 or more) are one per-row loop: its time is theirs together.
    const loops = new Map();
    for (const a of all) {
      if (a.n < 10) continue;
      const l = loops.get(a.n) ?? { ms: 0, first: a };
      l.ms += a.ms;
      if (a.firstAt < l.first.firstAt) l.first = a;
      loops.set(a.n, l);
    }
    const candidates = [...all.filter((a) => a.n < 10).map((a) => ({ ms: a.ms, first: a })), ...loops.values()];
    const lead = candidates.sort((a, b) => b.ms - a.ms)[0]?.first;
    const top = all
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 6)
      .map(({ firstAt, ...a }) => round(a));
    return { statements: count, sqlMs: r2(total), lead: lead?.sql ?? null, top };
  };

  // ---- garbage collection --------------------------------------------------------
  let gcs = [];
  const KINDS = { 1: 'scavenge', 2: 'mark-sweep-compact', 4: 'incremental', 8: 'weak-callbacks' };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcs.push({ t: e.startTime, ms: e.duration, kind: KINDS[e.detail?.kind ?? e.kind] ?? 'gc' });
      if (gcs.length > 20_000) gcs = gcs.slice(-10_000);
    }).observe({ entryTypes: ['gc'] });
  } catch {
    /* no gc entries */
  }
  const gcIn = (from, to) => gcs.filter((g) => g.t >= from && g.t <= to).reduce((a, g) => a + g.ms, 0);

  // ---- the loop ---------------------------------------------------------------------
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let stalls = [];
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const gap = now - last;
    if (gap > STALL_MS && stalls.length < 5000) {
      stalls.push({ at: wall(last), ms: r2(gap), gcMs: r2(gcIn(last, now)), ...statementsIn(last, now) });
    }
    last = now;
  }, 1).unref();

  let seq = 0;
  let since = performance.now();
  process.on('SIGUSR2', () => {
    const now = performance.now();
    const ms = (ns) => r2(ns / 1e6);
    const gcWindow = gcs.filter((g) => g.t >= since);
    const snapshot = {
      seq: ++seq,
      from: wall(since),
      to: wall(now),
      seconds: r2((now - since) / 1000),
      delay: {
        count: h.count,
        min: ms(h.min),
        p50: ms(h.percentile(50)),
        p90: ms(h.percentile(90)),
        p99: ms(h.percentile(99)),
        max: ms(h.max),
        mean: ms(h.mean),
      },
      stalls: stalls.sort((a, b) => b.ms - a.ms).slice(0, 50),
      stallCount: { over5ms: stalls.length, over10ms: stalls.filter((s) => s.ms > 10).length, over20ms: stalls.filter((s) => s.ms > 20).length },
      over20msByLead: byLead(stalls.filter((s) => s.ms > 20)),
      sql: [...perSql.entries()]
        .map(([id, a]) => ({ sql: texts[id], ...a }))
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 20)
        .map(round),
      gc: {
        count: gcWindow.length,
        ms: r2(gcWindow.reduce((a, g) => a + g.ms, 0)),
        maxMs: r2(Math.max(0, ...gcWindow.map((g) => g.ms))),
        over10ms: gcWindow.filter((g) => g.ms > 10).length,
      },
    };
    const file = `${OUT}.${seq}.json`;
    writeFileSync(`${file}.tmp`, JSON.stringify(snapshot));
    renameSync(`${file}.tmp`, file);
    h.reset();
    stalls = [];
    perSql = new Map();
    since = now;
  });
}

/** Stalls grouped by their lead statement (what work it was): how many, the longest (kept whole), the mean. */
function byLead(stalls) {
  const by = new Map();
  for (const s of stalls) {
    const lead = s.lead ?? '(no SQLite statement)';
    let a = by.get(lead);
    if (!a) by.set(lead, (a = { lead, n: 0, maxMs: 0, sum: 0, sqlMs: 0, longest: s }));
    a.n++;
    a.sum += s.ms;
    a.sqlMs += s.sqlMs;
    if (s.ms > a.maxMs) {
      a.maxMs = s.ms;
      a.longest = s;
    }
  }
  return [...by.values()]
    .sort((a, b) => b.n - a.n)
    .map((a) => ({ lead: a.lead, n: a.n, maxMs: r2(a.maxMs), meanMs: r2(a.sum / a.n), meanSqlMs: r2(a.sqlMs / a.n), longest: a.longest }));
}

function r2(x) {
  return Math.round(x * 100) / 100;
}
function round(a) {
  return { ...a, ms: r2(a.ms), maxMs: r2(a.maxMs) };
}
