import { STEPS } from './flows.js';
import type { Spread } from './stats.js';
import type { BenchResults, ScenarioResult } from './types.js';

const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '—');
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
const MB = 1e6;

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
    rows.push(`| ${s.name} | ${s.concurrency}${s.kind === 'flows' ? (s.concurrency === 1 ? ' shopper' : ' shoppers') : ' conns'}${s.workers > 1 ? `, ${s.workers} workers` : ''} | ${rate(s)} | `
      + `${ms(s.p50.median)} | ${ms(s.p95.median)} | ${ms(s.p99.median)} | ${errs} | ${s.ratioToExpress === undefined ? '—' : `${f(s.ratioToExpress * 100)} %`} | `
      + `${rss(s)} | ${cpu(s)} | ${f(s.serverCpuCores.median, 2)} / ${f(s.runnerCpuCores.median, 2)} / ${f(s.otherCpuCores.median, 2)}${s.databaseCpuCores ? ` (+ postgres ${f(s.databaseCpuCores.median, 2)})` : ''} | ${el} |`);
  }
  return rows.join('\n');
}

function stepTable(r: BenchResults): string {
  const flows = r.scenarios.filter((s) => s.kind === 'flows');
  if (!flows.length) return '';
  const rows = [
    `| scenario | whole flow p50 / p95 / p99 | ${STEPS.join(' | ')} |`,
    `|---|---:|${STEPS.map(() => '---:').join('|')}|`,
  ];
  for (const s of flows) {
    rows.push(`| ${s.name} | ${ms(s.p50.median)} / ${ms(s.p95.median)} / ${ms(s.p99.median)} | `
      + `${STEPS.map((st) => `${ms(s.steps![st]!.p50)} / ${ms(s.steps![st]!.p95)} / ${ms(s.steps![st]!.p99)}`).join(' | ')} |`);
  }
  return rows.join('\n');
}

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine;
  const sum = (name: string) => r.scenarios.find((s) => s.name === name);
  const env = Object.entries(r.settings.serverEnv).map(([k, v]) => `\`${k}=${v}\``).join(', ');
  const out: string[] = [];
  out.push('# cvvops benchmark results', '');
  out.push(`Run ${r.startedAt} – ${r.finishedAt} at commit ${r.commit}, with \`npm run bench${r.settings.only ? ` -- --only ${r.settings.only.join(',')}` : ''}\``
    + ` (${r.settings.reps} × ${r.settings.durationSeconds} s per scenario after a ${r.settings.warmupSeconds} s warm-up).`, '');
  out.push(`**Machine:** ${m.cpus} cores (${m.model}; available parallelism ${m.availableParallelism}), ${m.memoryGiB} GiB, ${m.platform}, Linux ${m.kernel}, `
    + `Node ${m.node}${m.postgres ? `, PostgreSQL ${m.postgres}` : ''}. Load average at start: ${m.loadAverageAtStart.join(' ')}. `
    + 'These machines are shared and noisy: compare figures only with the baselines of the same run.', '');
  out.push(`**Database:** ${r.settings.database}.`, '');
  out.push('**The load generator shares the cores with the server:** autocannon (programmatic API) and the flow client run in the benchmark\'s own process, '
    + `on the same ${m.cpus} cores as the server under test. The "cores busy" column shows, over the measured windows, the CPU time of the server, of `
    + 'the runner (load generator) and of everything else on the machine (other processes: noise), in cores (from `/proc/<pid>/stat`, '
    + '`process.cpuUsage()` and `/proc/stat`); with PostgreSQL, every `postgres` process on the machine is shown apart.', '');

  out.push('## Results', '');
  out.push('Medians of the repetitions, spread (min–max) of the rate in brackets. Latency is per request (autocannon scenarios) or per whole flow '
    + '(flow scenarios, client measured). "vs Express + helmet" compares requests per second (a flow is 5 requests). Server CPU is utime + stime from '
    + '`/proc/<pid>/stat` (every thread of every server process) over the measured window divided by the requests; the main (JavaScript) thread\'s share in brackets. '
    + 'Peak RSS is VmHWM from `/proc/<pid>/status` at the end of the scenario (a fresh server process per scenario, so it covers start-up, warm-up and every repetition); '
    + 'with several workers it is the sum over the primary and the workers (largest single process in brackets). Event-loop delay comes from the server\'s own '
    + '`/metrics` (prom-client), scraped at the start and end of each window; one process only. Under saturation it is mostly the length of one '
    + 'event-loop turn serving the requests that are waiting, not one long blocking task.', '');
  out.push(renderTable(r), '');
  const steps = stepTable(r);
  if (steps) out.push('### Full flows: each step, p50 / p95 / p99 ms (client measured)', '', steps, '');

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

  if (r.profile) {
    const p = r.profile;
    out.push('## CPU profile', '');
    out.push(`\`${p.savedAs}\` — ${p.scenario}. ${f(p.busyMs)} ms busy of ${f(p.sampledMs)} ms sampled (main thread). Ten heaviest functions by self time:`, '');
    out.push('| self ms | % of busy | function | where |', '|---:|---:|---|---|');
    for (const h of p.top) out.push(`| ${f(h.selfMs, 1)} | ${f(h.percentOfBusy, 1)} | \`${h.functionName}\` | ${h.location || '(native)'} |`);
    out.push('');
  }

  out.push('## Method and settings', '');
  out.push(`- The server under test is the built \`dist/server/main.js\` (\`npm run build\` first), started as its own process per scenario on a fresh database, with ${env}, `
    + '`PORT` a free port chosen by the runner. **`NODE_ENV` is unset** (not `production`): production refuses `CVVOPS_RATE_LIMIT=off`; otherwise the '
    + 'settings are production\'s (demo off, fixed master key). **Access logs were off** (`LOG_LEVEL=warn`: the per-request log line is at info level). '
    + '`CVVOPS_SQLITE_SYNCHRONOUS` is left at its default (`NORMAL` for ordinary writes; the server switches to `FULL` for charge intents and outcomes). '
    + 'Readiness is `GET /readyz` answering 200 (with workers, until every worker process exists, then 1.5 s).');
  out.push('- The merchant is created with the built CLI (`node dist/server/cli.js merchant create --name Bench --json`, same environment); one test card '
    + '4000000000001018 (frictionless 3DS `Y`, approved) is tokenized with CVV 123 per connection or shopper (`POST /Cards`).');
  out.push(`- Baselines, each its own process (plain JavaScript under \`node\`, bench/baselines/): Express 5 with \`helmet()\` and \`express.json()\`, and a bare `
    + '`node:http` server, answering `POST /echo` with the small JSON body `{"name":"bench","amount":1999,"items":[1,2,3]}` and a small JSON answer.');
  out.push(`- Request scenarios: autocannon ${r.settings.connections} connections, a ${r.settings.warmupSeconds} s warm-up run, then ${r.settings.reps} runs of `
    + `${r.settings.durationSeconds} s. \`create\`: \`POST /CvvOperations\` (all three operations, amount, require3DS) with a pre-made card token. `
    + '`validateToken`: the final token of a completed flow, validated over and over. `collectCvv`, `threeDS`, `charge`: every request carries the current '
    + 'token of a pre-created session and the token it returns is chained per connection (autocannon `requests` with `setupRequest`/`onResponse`); a '
    + 'connection moves to the next pre-created session when one\'s attempts are used up (`maxAttempts: 10` for collectCvv and threeDS) or it completed '
    + '(a charge completes the session, so `charge` uses one session per request; the card\'s CVC session from `POST /Cards` with a CVV satisfies '
    + '`requireCvv` in test mode). The pool is filled before the warm-up and before each repetition from the rate just measured; requests sent '
    + 'with the pool empty would show as non-2xx and in the notes. `charge` sends an `Idempotency-Key` as the hosted form does.');
  out.push('- Flow scenarios: a keep-alive `node:http` client (one Agent, one socket per shopper); each shopper loops create → collectCvv → threeDS '
    + '(browser data as the hosted form sends it) → charge (with `Idempotency-Key`) → validateToken, tokens chained, and checks the outcomes '
    + '(3DS `Y`, charge approved, token valid, current and the session completed). A flow counts when it ends inside the window.');
  out.push('- Latency percentiles are nearest-rank over every response of the window (autocannon\'s own histogram has no p95 and only 2xx, so the '
    + 'runner records each response time itself).');
  const w2 = sum('flows-50-workers2');
  if (w2) out.push(`- \`flows-50-workers2\`: \`CVVOPS_WORKERS=2\` (node:cluster, one port); its RSS is the sum over ${w2.peakRss.processes} processes; its CPU sums every process.`);
  out.push('');
  return `${out.join('\n')}\n`;
}
