/** A growable array of latencies (ms). */
export class Samples {
  #a = new Float64Array(4096);
  #n = 0;
  push(v: number): void {
    if (this.#n === this.#a.length) {
      const b = new Float64Array(this.#a.length * 2);
      b.set(this.#a);
      this.#a = b;
    }
    this.#a[this.#n++] = v;
  }
  get count(): number {
    return this.#n;
  }
  /** p50/p95/p99 (nearest rank), mean and max, in ms. */
  summary(): Latency {
    const n = this.#n;
    if (!n) return { count: 0, p50: NaN, p95: NaN, p99: NaN, mean: NaN, max: NaN };
    const s = this.#a.slice(0, n).sort();
    const at = (q: number) => s[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += s[i]!;
    return { count: n, p50: at(0.5), p95: at(0.95), p99: at(0.99), mean: sum / n, max: s[n - 1]! };
  }
}

export interface Latency {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  values: number[];
}

export function spread(xs: number[]): Spread {
  const v = xs.filter((x) => Number.isFinite(x));
  return { median: median(v), min: v.length ? Math.min(...v) : NaN, max: v.length ? Math.max(...v) : NaN, values: xs };
}
