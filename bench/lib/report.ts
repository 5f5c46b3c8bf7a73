import { STEPS } from './flows.js';
import { layerCosts } from './profile.js';
import { startFlags } from './start-flags.js';
import type { Spread } from './stats.js';
import type { BackgroundResult, BenchResults, ScenarioResult } from './types.js';

const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '—');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
const MB = 1e6;
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
const sec = (n: number | null) => (n === null ? 'not within the window' : `${f(n, 1)} s`);

function rate(s: ScenarioResult): string {
  const d = s.kind === 'flows' && s.rate.median < 100 ? 1 : 0;
  const r: Spread = s.rate;
  return `${f(r.median, d)} (${f(r.min, d)}–${f(r.max, d)}) ${s.kind === 'flows' ? 'flows/s' : 'req/s'}`;
}

function cpu(s: ScenarioResult): string {
  const perReq = `${f(s.cpuPerRequestUs.median)} (${f(s.mainThreadCpuPerRequestUs.median)})`;
  return s.kind === 'flows' ? `${perReq}; ${f((s.cpuPerFlowUs?.median ?? NaN) / 1000, 2)} ms/flow` : perReq;
}

function rss(s: ScenarioResult): string {
  const v = f(s.peakRss.sum / MB);
  return s.peakRss.processes > 1 ? `${v} (sum of ${s.peakRss.processes}; largest ${f(s.peakRss.max / MB)})` : v;
}

/** The main results table (markdown). */
export function renderTable(r: BenchResults): string {
  const rows = [
    '| scenario | concurrency | rate: median (min–max) | p50 ms | p95 ms | p99 ms | non-2xx | vs Express + helmet (req/s) | server peak RSS MB | server CPU µs/request (main thread) | cores busy: server / runner / other | event-loop delay p99 / max ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of r.scenarios) {
    const el = s.eventLoopDelay ? `${ms(s.eventLoopDelay.p99Ms.median)} / ${ms(s.eventLoopDelay.maxMs.median)}` : '—';
    const errs = s.non2xx + (s.errors ? ` (+${s.errors} conn. errors)` : '') + (s.unexpected ? ` (+${s.unexpected} unexpected)` : '');
    rows.push(
      `| ${s.name} | ${s.concurrency}${s.kind === 'flows' ? (s.concurrency === 1 ? ' shopper' : ' shoppers') : ' conns'}${s.workers > 1 ? `, ${s.workers} workers` : ''} | ${rate(s)} | ` +
        `${ms(s.p50.median)} | ${ms(s.p95.median)} | ${ms(s.p99.median)} | ${errs} | ${s.ratioToExpress === undefined ? '—' : `${f(s.ratioToExpress * 100)} %`} | ` +
        `${rss(s)} | ${cpu(s)} | ${f(s.serverCpuCores.median, 2)} / ${f(s.runnerCpuCores.median, 2)} / ${f(s.otherCpuCores.median, 2)}${s.databaseCpuCores ? ` (+ postgres ${f(s.databaseCpuCores.median, 2)})` : ''} | ${el} |`,
    );
  }
  return rows.join('\n');
}

function stepTable(r: BenchResults): string {
  const flows = r.scenarios.filter((s) => s.kind === 'flows');
  if (!flows.length) return '';
  const rows = [`| scenario | whole flow p50 / p95 / p99 | ${STEPS.join(' | ')} |`, `|---|---:|${STEPS.map(() => '---:').join('|')}|`];
  for (const s of flows) {
    rows.push(
      `| ${s.name} | ${ms(s.p50.median)} / ${ms(s.p95.median)} / ${ms(s.p99.median)} | ` +
        `${STEPS.map((st) => `${ms(s.steps![st]!.p50)} / ${ms(s.steps![st]!.p95)} / ${ms(s.steps![st]!.p99)}`).join(' | ')} |`,
    );
  }
  return rows.join('\n');
}

/** `growth`: the seeded history, and the flows beside the empty database's. */
function growthSection(r: BenchResults): string[] {
  const s = r.scenarios.find((x) => x.name === 'growth');
  const g = s?.growth;
  if (!s || !g) return [];
  const ref = g.reference;
  const refScenario = ref ? r.scenarios.find((x) => x.name === ref.scenario) : undefined;
  const out = [`## Growth: ${int(g.seed.rows.sessions ?? 0)} stored sessions, ${int(g.seed.rows.cards ?? 0)} cards`, ''];
  out.push(
    `Before the server started, ${f(g.seed.seconds, 1)} s (of which ${f(g.seed.flushSeconds, 1)} s the final fsync, so no write-back competes with the ` +
      `measurement) wrote ${Object.entries(g.seed.rows)
        .map(([t, n]) => `${int(n)} ${t}`)
        .join(', ')} into the migrated file: ` +
      `${f(g.seed.fileBytes / 1e9, 2)} GB. Sessions span the last ${g.plan.days} days; ${f(g.plan.benchShare * 100)} % of the cards (so of the sessions) are the ` +
      `benchmark merchant's, in test mode, the rest belong to ${g.plan.otherMerchants} other merchants (90 % live).`,
    '',
  );
  const rows = ['| | flows/s | whole flow p50 / p99 ms | worst step p99 ms | server CPU ms/flow | non-2xx |', '|---|---:|---:|---:|---:|---:|'];
  const line = (label: string, x: ScenarioResult) =>
    `| ${label} | ${rate(x)} | ${ms(x.p50.median)} / ${ms(x.p99.median)} | ` +
    `${ms(Math.max(...Object.values(x.steps ?? {}).map((v) => v.p99)))} | ${f((x.cpuPerFlowUs?.median ?? NaN) / 1000, 2)} | ${x.non2xx} |`;
  if (refScenario) rows.push(line(`empty database (${refScenario.name})`, refScenario));
  rows.push(line('with the history (growth)', s));
  out.push(...rows, '');
  if (g.ratio !== null) out.push(`Flows per second with the history: **${f(g.ratio * 100)} %** of the empty database's (medians of the same run).`, '');
  return out;
}

/** `soak`: resident memory over the run. */
function soakSection(r: BenchResults): string[] {
  const s = r.scenarios.find((x) => x.name === 'soak');
  const k = s?.soak;
  if (!s || !k) return [];
  const out = ['## Soak: memory over time', ''];
  out.push(
    `Flows at 50 shoppers for ${f(k.seconds)} s on one server process (no warm-up: the first part is one), VmRSS from \`/proc/<pid>/status\` every second. ` +
      `Growth compares the RSS at the end of the first third (${f(k.seconds / 3)} s; in the target's 3-minute soak, the first minute) with the RSS at the end: ` +
      `**${k.growth >= 0 ? '+' : ''}${f(k.growth * 100, 1)} %**. Largest sample ${f(k.maxSampledRss / MB)} MB, VmHWM ${f(k.peakRss / MB)} MB.`,
    '',
  );
  out.push(
    '| part | ends at | flows/s | server RSS MB | of which anonymous / file / shared MB | JS heap used / total MB | external (Buffers) MB | database + WAL MB |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  k.thirds.forEach((t, i) =>
    out.push(
      `| ${i + 1} | ${f(t.endSeconds)} s | ${f(t.flowsPerSecond, 1)} | ${f(t.rss / MB)} | ` +
        `${f(t.rssAnon / MB)} / ${f(t.rssFile / MB)} / ${f(t.rssShmem / MB)} | ${f(t.heapUsed / MB)} / ${f(t.heapTotal / MB)} | ${f(t.external / MB)} | ${f(t.databaseBytes / MB)} |`,
    ),
  );
  const every = Math.max(1, Math.round(k.rss.length / 18));
  out.push('', 'Anonymous memory less the JS heap total is what lies outside the V8 heap (SQLite, OpenSSL, native buffers); file-backed is mostly code.');
  out.push(
    '',
    `RSS over time (MB, every ${every} s): ${k.rss
      .filter((_, i) => i % every === 0)
      .map(([t, v]) => `${f(t)} s ${f(v / MB)}`)
      .join(' · ')}`,
    '',
  );
  return out;
}

/** `background`: the backlog, how it drained, and the event loop meanwhile (with what ran in its longest stalls). */
function backgroundSection(b: BackgroundResult | undefined): string[] {
  if (!b) return [];
  const out = ['## Background work: the sweeper and the webhook outbox', ''];
  out.push(
    `Written into the database while the server was down, on top of a history of ${int(b.history.seed.rows.sessions ?? 0)} sessions and ` +
      `${int(b.history.seed.rows.cards ?? 0)} cards as in growth (${f(b.history.seed.fileBytes / MB)} MB; ${f(b.history.seed.seconds, 1)} s), in ${f(b.seed.seconds, 1)} s: ` +
      `${int(b.backlog.expiredCvcSessions)} live CVC sessions past their ` +
      `lifetime (with their key shares), ${int(b.backlog.expiredActiveSessions)} test-mode sessions still active past their expiry (each with its CVC session), ` +
      `${int(b.backlog.outbox)} pending deliveries to a test-mode webhook endpoint registered through the API (plain http to a receiver in the runner that ` +
      `answers 200: \`CVVOPS_ALLOW_PRIVATE_TARGETS=on\`, test mode only), which listens to every event, so each expired session adds a delivery: ` +
      `${int(b.backlog.expectedDeliveries)} expected. The server was then started again with no other traffic; the window runs from \`/readyz\` answering until ` +
      `everything was drained (limit ${b.limitSeconds} s).`,
    '',
  );
  out.push('| | |', '|---|---|');
  out.push(`| drained | ${b.drained ? `**yes**, in ${f(b.seconds, 1)} s` : `**no** (window ${f(b.seconds, 1)} s)`} |`);
  out.push(`| expired CVC sessions deleted | ${sec(b.done.cvcSessions)} (left: ${int(b.left.expiredCvcSessions)}) |`);
  out.push(`| expired sessions marked expired | ${sec(b.done.sessions)} (left: ${int(b.left.expiredActiveSessions)}) |`);
  out.push(`| outbox empty | ${sec(b.done.outbox)} (pending: ${int(b.left.pendingDeliveries)}, failed: ${int(b.left.failedDeliveries)}) |`);
  out.push(
    `| deliveries received | ${int(b.deliveries.received)} of ${int(b.backlog.expectedDeliveries)}, ${f(b.deliveries.perSecond, 1)} a second${b.deliveries.unsigned ? `, ${b.deliveries.unsigned} unsigned` : ''} |`,
  );
  out.push(`| server CPU over the window | ${f(b.serverCpuCores * 100)} % of a core; peak RSS ${f(b.peakRss / MB)} MB |`);
  const p = b.probe;
  if (p) {
    out.push(
      `| event loop, probe (1 ms resolution) | p50 ${ms(p.delay.p50)}, p90 ${ms(p.delay.p90)}, **p99 ${ms(p.delay.p99)}**, **max ${ms(p.delay.max)} ms**; ` +
        `stalls over 5 / 10 / 20 ms: ${p.stallCount.over5ms} / ${p.stallCount.over10ms} / **${p.stallCount.over20ms}** |`,
    );
    out.push(
      `| garbage collection in the window | ${p.gc.count} pauses, ${ms(p.gc.ms)} ms in all, longest ${ms(p.gc.maxMs)} ms, ${p.gc.over10ms} over 10 ms |`,
    );
  }
  out.push(
    `| event loop, /metrics (prom-client, 10 ms resolution) | ${b.metrics ? `p99 ${ms(b.metrics.p99Ms)}, max ${ms(b.metrics.maxMs)} ms` : 'no answer'} |`,
  );
  if (b.startup) out.push(`| start-up until ready (not judged) | max ${ms(b.startup.delay.max)} ms, ${b.startup.stallCount.over20ms} stalls over 20 ms |`);
  out.push('');
  out.push(
    'The probe (bench/lib/loop-probe.mjs, loaded into the server with `node --import`; no server change) reports the intervals between the ticks of ' +
      'a 1 ms timer (≈ 1.1 ms when idle; a block of B ms shows as about B + 1 ms), and for every gap over 5 ms the SQLite statements that ran inside it ' +
      '(better-sqlite3 calls timed) and the garbage-collection pauses. /metrics samples every 10 ms, so its figures are at least 10 ms and blur anything shorter.',
    '',
  );
  if (p?.over20msByLead.length) {
    out.push(
      'Stalls over 20 ms, by the statement that says what work it was (of the single statements and the per-row loops, i.e. statements run ' +
        'the same number of times, 10 or more, the one that took longest; for a loop, its first statement):',
      '',
    );
    out.push(
      '| stalls | longest ms | mean ms | of which SQLite, mean ms | lead statement | in the longest: calls × SQL (total ms, longest ms); GC |',
      '|---:|---:|---:|---:|---|---|',
    );
    for (const g of p.over20msByLead.slice(0, 8)) {
      out.push(
        `| ${g.n} | ${ms(g.maxMs)} | ${ms(g.meanMs)} | ${ms(g.meanSqlMs)} | \`${g.lead.slice(0, 120)}\` | ` +
          `${
            g.longest.top
              .slice(0, 4)
              .map((x) => `${x.n} × \`${x.sql.slice(0, 70)}\` (${ms(x.ms)}, ${ms(x.maxMs)})`)
              .join('<br>') || 'no statement'
          }; GC ${ms(g.longest.gcMs)} ms |`,
      );
    }
    out.push('');
  }
  if (p?.stalls.length) {
    out.push('Longest stalls in the window, with what ran inside them:', '');
    out.push(
      '| at (s after ready) | stall ms | SQLite ms (statements) | GC ms | heaviest statements: calls × SQL (total ms, longest ms) |',
      '|---:|---:|---:|---:|---|',
    );
    for (const st of p.stalls.slice(0, 8)) {
      out.push(
        `| ${f((st.at - p.from) / 1000, 1)} | ${ms(st.ms)} | ${ms(st.sqlMs)} (${st.statements}) | ${ms(st.gcMs)} | ` +
          `${st.top
            .slice(0, 3)
            .map((x) => `${x.n} × \`${x.sql.slice(0, 110)}\` (${ms(x.ms)}, ${ms(x.maxMs)})`)
            .join('<br>')} |`,
      );
    }
    out.push('');
  }
  if (p?.sql.length) {
    out.push('SQLite statements over the whole window, by total time:', '');
    out.push('| calls | total ms | longest ms | SQL |', '|---:|---:|---:|---|');
    for (const x of p.sql.slice(0, 10)) out.push(`| ${int(x.n)} | ${ms(x.ms)} | ${ms(x.maxMs)} | \`${x.sql.slice(0, 160)}\` |`);
    out.push('');
  }
  for (const n of b.notes) out.push(`- ${n}`);
  if (b.notes.length) out.push('');
  return out;
}

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine;
  const sum = (name: string) => r.scenarios.find((s) => s.name === name);
  const env = Object.entries(r.settings.serverEnv)
    .map(([k, v]) => `\`${k}=${v}\``)
    .join(', ');
  const out: string[] = [];
  out.push('# cvvops benchmark results', '');
  const pg = r.scenarios.some((sc) => sc.engine === 'postgres');
  out.push(
    `Run ${r.startedAt} – ${r.finishedAt} at commit ${r.commit}, with \`npm run bench${pg || r.settings.only ? ' --' : ''}${pg ? ' --postgres' : ''}${r.settings.only ? ` --only ${r.settings.only.join(',')}` : ''}\`` +
      ` (${r.settings.reps} × ${r.settings.durationSeconds} s per scenario after a ${r.settings.warmupSeconds} s warm-up).`,
    '',
  );
  out.push(
    `**Machine:** ${m.cpus} cores (${m.model}; available parallelism ${m.availableParallelism}), ${m.memoryGiB} GiB, ${m.platform}, Linux ${m.kernel}, ` +
      `Node ${m.node}${m.postgres ? `, PostgreSQL ${m.postgres}` : ''}. Load average at start: ${m.loadAverageAtStart.join(' ')}. ` +
      'These machines are shared and noisy: compare figures only with the baselines of the same run.',
    '',
  );
  out.push(`**Database:** ${r.settings.database}.`, '');
  out.push(
    "**The load generator shares the cores with the server:** autocannon (programmatic API) and the flow client run in the benchmark's own process, " +
      `on the same ${m.cpus} cores as the server under test. The "cores busy" column shows, over the measured windows, the CPU time of the server, of ` +
      'the runner (load generator) and of everything else on the machine (other processes: noise), in cores (from `/proc/<pid>/stat`, ' +
      '`process.cpuUsage()` and `/proc/stat`); with PostgreSQL, every `postgres` process on the machine is shown apart.',
    '',
  );

  out.push('## Results', '');
  out.push(
    'Medians of the repetitions, spread (min–max) of the rate in brackets. Latency is per request (autocannon scenarios) or per whole flow ' +
      '(flow scenarios, client measured). "vs Express + helmet" compares requests per second (a flow is 5 requests). Server CPU is utime + stime from ' +
      "`/proc/<pid>/stat` (every thread of every server process) over the measured window divided by the requests; the main (JavaScript) thread's share in brackets. " +
      'Peak RSS is VmHWM from `/proc/<pid>/status` at the end of the scenario (a fresh server process per scenario, so it covers start-up, warm-up and every repetition); ' +
      "with several workers it is the sum over the primary and the workers (largest single process in brackets). Event-loop delay comes from the server's own " +
      '`/metrics` (prom-client), scraped at the start and end of each window; one process only. Under saturation it is mostly the length of one ' +
      'event-loop turn serving the requests that are waiting, not one long blocking task.',
    '',
  );
  out.push(renderTable(r), '');
  const steps = stepTable(r);
  if (steps) out.push('### Full flows: each step, p50 / p95 / p99 ms (client measured)', '', steps, '');
  out.push(...growthSection(r), ...soakSection(r), ...backgroundSection(r.background));

  out.push('## Targets (PERFORMANCE.md)', '');
  out.push('| target | requirement | measured | status |', '|---|---|---|---|');
  for (const t of r.targets) out.push(`| ${t.target} | ${t.requirement} | ${t.measured} | **${t.status}** |`);
  out.push('');

  const notes = r.scenarios.filter((s) => s.notes.length);
  if (notes.length || r.warnings.length) {
    out.push('## Notes and anomalies', '');
    for (const w of r.warnings) out.push(`- ⚠ ${w}`);
    for (const s of notes) for (const n of s.notes) out.push(`- ${s.name}: ${n}`);
    out.push('');
  }

  if (r.tokens?.length) {
    const flow = r.scenarios.find((sc) => sc.name === 'flows-50' && sc.workers === 1)?.cpuPerFlowUs?.median;
    out.push('## Session tokens: TokenService against jose', '');
    out.push(
      "Measured in the benchmark process (bench/lib/tokens.ts), one call at a time: the server's TokenService (node:crypto, synchronous, with the " +
        "shortcut that skips the signature of a token this process signed) against jose's CompactSign and compactVerify (asynchronous; given the key " +
        "object, and charged only for the payload's JSON.parse after it, not the header, kid and claim checks TokenService also does). A flow signs 4 " +
        'tokens (create and the three operations) and verifies 4 (the three operations, whose tokens this process signed, and validateToken, counted ' +
        'here as a token signed elsewhere).',
      '',
    );
    out.push('| algorithm | call | CPU µs | wall µs |', '|---|---|---:|---:|');
    for (const t of r.tokens) for (const c of t.costs) out.push(`| ${t.alg} | ${c.what} | ${f(c.cpuUs, 1)} | ${f(c.wallUs, 1)} |`);
    out.push('');
    out.push(
      "| algorithm | a flow's tokens now | without the shortcut | with jose |" + (flow ? ' server CPU a flow (flows-50) |' : ''),
      '|---|---:|---:|---:|' + (flow ? '---:|' : ''),
    );
    for (const t of r.tokens) {
      const share = (us: number) => (flow ? ` (${f((100 * us) / flow, 1)} %)` : '');
      out.push(
        `| ${t.alg} | ${f(t.perFlow.ours)} µs${share(t.perFlow.ours)} | ${f(t.perFlow.oursWithoutShortcut)} µs${share(t.perFlow.oursWithoutShortcut)} | ${f(t.perFlow.jose)} µs${share(t.perFlow.jose)} |` +
          (flow ? ` ${f(flow)} µs |` : ''),
      );
    }
    out.push('');
  }

  if (r.profile) {
    const p = r.profile;
    out.push('## CPU profile', '');
    out.push(
      `\`${p.savedAs}\` — ${p.scenario}. ${f(p.busyMs)} ms busy of ${f(p.sampledMs)} ms sampled (main thread). Ten heaviest functions by self time:`,
      '',
    );
    out.push('| self ms | % of busy | function | where |', '|---:|---:|---|---|');
    for (const h of p.top) out.push(`| ${f(h.selfMs, 1)} | ${f(h.percentOfBusy, 1)} | \`${h.functionName}\` | ${h.location || '(native)'} |`);
    out.push('');
    if (p.layers?.length) {
      out.push(
        "Self time by layer (better-sqlite3 runs statements natively: their time is the self time of the JavaScript that called them, the store and better-sqlite3's transaction wrapper):",
        '',
      );
      out.push('| layer | self ms | % of busy |', '|---|---:|---:|');
      for (const l of p.layers) out.push(`| ${l.layer} | ${f(l.selfMs, 1)} | ${f(l.percentOfBusy, 1)} |`);
      out.push('');
    }
    const w = r.profileWorkers;
    if (w && p.mainCpuMsPerFlow) {
      out.push(
        `**Two workers.** ${w.scenario}: ${f(w.flowsPerSecond, 1)} flows/s under the profiler. CPU a flow by layer (µs), one process (the profile above) against the two workers together: each layer's share of the profile's busy time times the main threads' CPU a flow from /proc (the profiler samples in wall time, so a process waiting for a core has every layer inflated alike; its shares hold):`,
        '',
      );
      out.push('| layer | one process | two workers | change |', '|---|---:|---:|---:|');
      for (const l of layerCosts(p, w))
        out.push(`| ${l.layer} | ${f(l.one)} | ${f(l.two)} | ${l.one > 0 ? `${l.two >= l.one ? '+' : ''}${f(((l.two - l.one) / l.one) * 100)} %` : '—'} |`);
      out.push('');
    }
    if (p.http?.length) {
      out.push(
        'The HTTP stack on the hot path, what each part costs (self time; each package of the Express stack as one line, our middleware and handlers by function):',
        '',
      );
      out.push('| self ms | % of busy | function | where |', '|---:|---:|---|---|');
      for (const h of p.http) out.push(`| ${f(h.selfMs, 1)} | ${f(h.percentOfBusy, 2)} | \`${h.functionName}\` | ${h.location} |`);
      out.push('');
    }
  }

  out.push('## Method and settings', '');
  out.push(
    `- The server under test is the built \`dist/server/main.js\` (\`npm run build\` first), run as \`npm start\` runs it (\`node ${startFlags().join(' ')} dist/server/main.js\`: the V8 heap settings of package.json's start script), started as its own process per scenario on a fresh database, with ${env}, ` +
      '`PORT` a free port chosen by the runner. **`NODE_ENV` is unset** (not `production`): production refuses `CVVOPS_RATE_LIMIT=off`; otherwise the ' +
      "settings are production's (demo off, fixed master key). **Access logs were off** (`LOG_LEVEL=warn`: the per-request log line is at info level). " +
      '`CVVOPS_SQLITE_SYNCHRONOUS` is left at its default (`NORMAL` for ordinary writes; charge intents and outcomes wait for an fdatasync of the WAL that started after their commit, which is what `FULL` guarantees, shared by concurrent charges). ' +
      'Readiness is `GET /readyz` answering 200 (with workers, until every worker process exists, then 1.5 s).',
  );
  out.push(
    '- The merchant is created with the built CLI (`node dist/server/cli.js merchant create --name Bench --json`, same environment), its ' +
      '`cvvBlockThreshold` set to 20 (the highest); one test card is tokenized with CVV 123 per connection or shopper (`POST /Cards`), in turn ' +
      '4000000000001018, 4000000000004046 and 5555555555554402 (frictionless 3DS `Y`, `A`, `Y`; approved). A charge reserves its CVV attempt per card ' +
      'number (at most the threshold in flight), so 50 shoppers cannot all use one card number, as they did in runs before 2026-12-05.',
  );
  out.push(
    `- Baselines, each its own process (plain JavaScript under \`node\`, bench/baselines/): Express 5 with \`helmet()\` and \`express.json()\`, and a bare ` +
      '`node:http` server, answering `POST /echo` with the small JSON body `{"name":"bench","amount":1999,"items":[1,2,3]}` and a small JSON answer.',
  );
  out.push(
    `- Request scenarios: autocannon ${r.settings.connections} connections, a ${r.settings.warmupSeconds} s warm-up run, then ${r.settings.reps} runs of ` +
      `${r.settings.durationSeconds} s. \`create\`: \`POST /CvvOperations\` (all three operations, amount, require3DS) with a pre-made card token. ` +
      '`validateToken`: the final token of a completed flow, validated over and over. `collectCvv`, `threeDS`, `charge`: every request carries the current ' +
      'token of a pre-created session and the token it returns is chained per connection (autocannon `requests` with `setupRequest`/`onResponse`); a ' +
      "connection moves to the next pre-created session when one's attempts are used up (`maxAttempts: 10` for collectCvv and threeDS) or it completed " +
      "(a charge completes the session, so `charge` uses one session per request; the card's CVC session from `POST /Cards` with a CVV satisfies " +
      '`requireCvv` in test mode). The pool is filled before the warm-up and before each repetition from the rate just measured; requests sent ' +
      'with the pool empty would show as non-2xx and in the notes. `charge` sends an `Idempotency-Key` as the hosted form does.',
  );
  out.push(
    '- Flow scenarios: a keep-alive `node:http` client (one Agent, one socket per shopper); each shopper loops create → collectCvv → threeDS ' +
      '(browser data as the hosted form sends it) → charge (with `Idempotency-Key`) → validateToken, tokens chained, and checks the outcomes ' +
      '(3DS `Y`, charge approved, token valid, current and the session completed). A flow counts when it ends inside the window.',
  );
  out.push(
    "- Latency percentiles are nearest-rank over every response of the window (autocannon's own histogram has no p95 and only 2xx, so the " +
      'runner records each response time itself).',
  );
  const w2 = sum('flows-50-workers2');
  if (w2)
    out.push(
      `- \`flows-50-workers2\`: \`CVVOPS_WORKERS=2\` (node:cluster, one port); its RSS is the sum over ${w2.peakRss.processes} processes; its CPU sums every process.`,
    );
  if (sum('growth')) {
    out.push(
      '- `growth` (SQLite only): the merchant is created with the CLI (which migrates the file), then bench/lib/seed.ts writes the history straight into ' +
        'the file with better-sqlite3 (rollback journal in memory, no syncs, 50,000-row transactions, multi-row INSERTs; the indexes keyed by a random value ' +
        "built at the end; WAL mode put back and the file fsync'ed), then the server starts on it and the 50-shopper flows run as in flows-50. Rows have the " +
        "server's shapes and sizes (a completed session keeps its ~1.6 KB sealed replay record, a charge its ~1.6 KB sealed response; sealed columns are " +
        'random bytes of the real length with the key-version byte first). Seeded ids are ordered in insertion order (same format, 160 bits) so the ' +
        "primary-key indexes are appended to; the server's own rows get random ids as always. Compared with the empty-database flows-50 of the same run " +
        '(run first when the run has none).',
    );
  }
  if (sum('soak'))
    out.push(
      '- `soak` (SQLite only): one server process, flows at 50 shoppers in three equal parts (each a repetition in the tables), VmRSS sampled every second.',
    );
  if (r.background) {
    out.push(
      '- `background` (SQLite only): see its section; the server is started with `CVVOPS_ALLOW_PRIVATE_TARGETS=on` (test-mode webhooks to a loopback ' +
        'receiver) and the event-loop probe; the drain is watched with existence queries on a read-only connection four times a second.',
    );
  }
  out.push('');
  return `${out.join('\n')}\n`;
}
