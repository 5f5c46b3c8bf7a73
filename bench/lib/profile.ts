import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  functionName: string;
  /** url relative to the repository (or as given), with the 1-based line. */
  location: string;
  selfMs: number;
  /** Share of the sampled time that was not idle. */
  percentOfBusy: number;
}

export interface ProfileSummary {
  file: string;
  sampledMs: number;
  idleMs: number;
  busyMs: number;
  top: HotFunction[];
  /** Self time by layer (LAYERS), heaviest first. */
  layers: Array<{ layer: string; selfMs: number; percentOfBusy: number }>;
  /** Self time of each middleware and HTTP-layer function of ours and of each HTTP package, heaviest first. */
  http: HotFunction[];
}

/**
 * Where a function belongs, from its url (or name, for native frames):
 * better-sqlite3 runs statements natively, so their time is the self time of
 * the JavaScript that called them (the store, better-sqlite3's transaction
 * wrapper).
 */
const LAYERS: Array<[string, (url: string, name: string) => boolean]> = [
  [
    'SQLite (statements and commits, as self time of the store and better-sqlite3)',
    (u) => u.includes('/server/store/') || u.includes('node_modules/better-sqlite3/'),
  ],
  ['Kysely (query building, compiling)', (u) => u.includes('node_modules/kysely/')],
  ['cryptography (node:crypto: Ed25519, AES-GCM, HKDF, SHA-256, HMAC)', (u) => u.startsWith('node:internal/crypto')],
  [
    'Node HTTP, sockets and streams',
    (u, n) =>
      /^node:(_http_|net|internal\/(streams|stream_base_commons|http|url))/.test(u) || (!u && /^(writev|writeUtf8String|writeBuffer|onStreamRead)$/.test(n)),
  ],
  [
    'Express, its router, body parsing, helmet',
    (u) =>
      /node_modules\/(express|router|body-parser|raw-body|content-type|iconv-lite|helmet|parseurl|type-is|mime-types|mime-db|media-typer|finalhandler|on-finished|send|serve-static|qs|depd|http-errors|statuses|vary|cookie|encodeurl|escape-html|forwarded|proxy-addr|fresh|range-parser|accepts|negotiator|bytes|unpipe|ee-first|path-to-regexp|debug|ms)\//.test(
        u,
      ),
  ],
  ['our HTTP layer (middleware, auth, routes, metrics, app)', (u) => u.includes('/server/http/') || u.endsWith('/server/app.js')],
  ['our domain (sessions, operations, tokens, vault, charges)', (u) => u.includes('/server/domain/')],
  ['validation (zod)', (u) => u.includes('node_modules/zod/')],
  ['logging and metrics (pino, prom-client)', (u) => u.includes('node_modules/pino') || u.includes('node_modules/prom-client/')],
  ['jose', (u) => u.includes('node_modules/jose/')],
  ['garbage collection', (_u, n) => n === '(garbage collector)'],
];
const OTHER = 'everything else (Node internals, V8, the runtime)';
const HTTP_LAYER = /node_modules\/(express|router|body-parser|raw-body|helmet|content-type)\/|\/server\/http\/|\/server\/app\.js$/;

/**
 * Self time per function from a V8 .cpuprofile: each sample's time is the gap
 * to the next sample (as DevTools does), attributed to the sampled node, then
 * aggregated by callFrame (function name + url + line).
 */
export function summarizeProfile(file: string, root: string, topN = 10): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const n = prof.samples.length;
  for (let i = 0; i < n; i++) {
    const dt = i + 1 < n ? prof.timeDeltas[i + 1]! : 0;
    const id = prof.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const agg = new Map<string, { functionName: string; location: string; us: number }>();
  const layerUs = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const cf = node.callFrame;
    const name = cf.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += us;
      continue;
    }
    let url = cf.url;
    if (url.startsWith('file://')) {
      try {
        url = relative(root, fileURLToPath(url));
      } catch {
        /* keep */
      }
    }
    const layer = LAYERS.find(([, match]) => match(cf.url, name))?.[0] ?? OTHER;
    layerUs.set(layer, (layerUs.get(layer) ?? 0) + us);
    const location = url ? `${url}:${cf.lineNumber + 1}` : '';
    const key = `${name}|${location}`;
    const e = agg.get(key) ?? { functionName: name, location, us: 0 };
    e.us += us;
    agg.set(key, e);
  }
  const busy = total - idle;
  const top = [...agg.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({
      functionName: e.functionName,
      location: e.location,
      selfMs: e.us / 1000,
      percentOfBusy: busy > 0 ? (100 * e.us) / busy : 0,
    }));
  const share = (us: number) => (busy > 0 ? (100 * us) / busy : 0);
  const layers = [...layerUs].sort((a, b) => b[1] - a[1]).map(([layer, us]) => ({ layer, selfMs: us / 1000, percentOfBusy: share(us) }));
  // Our middleware by function; a package of the HTTP stack as one line.
  const httpAgg = new Map<string, HotFunction>();
  for (const e of agg.values()) {
    if (!HTTP_LAYER.test(e.location.replace(/:\d+$/, ''))) continue;
    const pkg = /node_modules\/([^/]+)\//.exec(e.location)?.[1];
    const key = pkg ? `npm:${pkg}` : `${e.functionName}|${e.location}`;
    const h = httpAgg.get(key) ?? {
      functionName: pkg ? `(all of ${pkg})` : e.functionName,
      location: pkg ? `node_modules/${pkg}` : e.location,
      selfMs: 0,
      percentOfBusy: 0,
    };
    h.selfMs += e.us / 1000;
    h.percentOfBusy = share(h.selfMs * 1000);
    httpAgg.set(key, h);
  }
  const http = [...httpAgg.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, 15);
  return { file, sampledMs: total / 1000, idleMs: idle / 1000, busyMs: busy / 1000, top, layers, http };
}

/**
 * CPU a flow by layer, one process against two workers: each layer's share of
 * the sampled busy time times the main threads' CPU a flow measured from
 * /proc. The profiler's own times cannot be compared directly: it samples in
 * wall time, so a process waiting for a core (two workers, the load generator
 * and the database on two cores) has every layer's self time inflated alike;
 * its shares stay right, the CPU from /proc is the true total.
 */
export function layerCosts(
  one: { layers: ProfileSummary['layers']; busyMs: number; mainCpuMsPerFlow?: number },
  two: { processes: Array<{ busyMs: number; layers: ProfileSummary['layers'] }>; mainCpuMsPerFlow: number },
): Array<{ layer: string; one: number; two: number }> {
  const busyTwo = two.processes.reduce((t, p) => t + p.busyMs, 0);
  const rows = one.layers.map((l) => {
    const selfTwo = two.processes.reduce((t, p) => t + (p.layers.find((x) => x.layer === l.layer)?.selfMs ?? 0), 0);
    return {
      layer: l.layer,
      one: (l.selfMs / one.busyMs) * (one.mainCpuMsPerFlow ?? 0) * 1000,
      two: (selfTwo / busyTwo) * two.mainCpuMsPerFlow * 1000,
    };
  });
  return [...rows, { layer: 'all (main threads, /proc)', one: (one.mainCpuMsPerFlow ?? 0) * 1000, two: two.mainCpuMsPerFlow * 1000 }];
}
