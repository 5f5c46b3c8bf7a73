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
}

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
      } catch { /* keep */ }
    }
    const location = url ? `${url}:${cf.lineNumber + 1}` : '';
    const key = `${name}|${location}`;
    const e = agg.get(key) ?? { functionName: name, location, us: 0 };
    e.us += us;
    agg.set(key, e);
  }
  const busy = total - idle;
  const top = [...agg.values()].sort((a, b) => b.us - a.us).slice(0, topN).map((e) => ({
    functionName: e.functionName, location: e.location, selfMs: e.us / 1000, percentOfBusy: busy > 0 ? (100 * e.us) / busy : 0,
  }));
  return { file, sampledMs: total / 1000, idleMs: idle / 1000, busyMs: busy / 1000, top };
}
