import type { NextFunction, Request, Response } from 'express';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics: counts and latencies by route template and status. Never a value from a request. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly duration: Histogram<'route'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'cvvops_' });
    this.requests = new Counter({
      name: 'cvvops_http_requests_total', help: 'HTTP requests by method, route template and status.',
      labelNames: ['method', 'route', 'status'], registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'cvvops_http_request_duration_seconds', help: 'HTTP request latency by route template.',
      labelNames: ['route'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [this.registry],
    });
  }

  middleware() {
    return (req: Request, res: Response, next: NextFunction): void => {
      const t0 = process.hrtime.bigint();
      res.on('finish', () => {
        const route = req.route?.path ? `${req.baseUrl}${req.route.path}` : 'unmatched';
        this.requests.inc({ method: req.method, route, status: String(res.statusCode) });
        this.duration.observe({ route }, Number(process.hrtime.bigint() - t0) / 1e9);
      });
      next();
    };
  }
}
