import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics: counts and latencies by route template and status. Never a value from a request. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly duration: Histogram<'route'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'cvvops_' });
    this.requests = new Counter({
      name: 'cvvops_http_requests_total',
      help: 'HTTP requests by method, route template and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'cvvops_http_request_duration_seconds',
      help: 'HTTP request latency by route template.',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
  }

  /** Label children by route and status, so a request does not hash its labels again. */
  readonly #children = new Map<string, { count: { inc(): void }; time: { observe(v: number): void } }>();

  /** One finished request (called by the request middleware in app.ts, on 'finish'). */
  observe(method: string, route: string, status: number, seconds: number): void {
    const k = `${method} ${status} ${route}`;
    let c = this.#children.get(k);
    if (!c) {
      c = { count: this.requests.labels(method, route, String(status)), time: this.duration.labels(route) };
      // Routes are templates (never a raw path), so the set is small; the bound is a second net.
      if (this.#children.size < 5000) this.#children.set(k, c);
    }
    c.count.inc();
    c.time.observe(seconds);
  }
}
