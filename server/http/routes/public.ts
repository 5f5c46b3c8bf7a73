import type { Deps } from '../../deps.js';
import type { Metrics } from '../metrics.js';
import type { Api } from '../api.js';
import { z } from '../schemas.js';

const Jwks = z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).openapi('JWKS');
const Health = z.object({ status: z.string() }).openapi('Health');
const Ready = z.object({ status: z.enum(['ready', 'not_ready']), checks: z.object({ storage: z.string(), keys: z.string() }) }).openapi('Readiness');

/** Section 9: public endpoints (no credentials). */
export function publicRoutes(api: Api, d: Pick<Deps, 'ping' | 'tokens'>, metrics: () => Metrics, document: () => Record<string, unknown>): void {
  api.add({
    method: 'get',
    path: '/.well-known/jwks.json',
    tag: 'Public',
    auth: 'none',
    summary: 'Public signing keys, for offline token verification',
    responses: { 200: { description: 'The JWKS: the active key and retired keys whose tokens may still be alive.', schema: Jwks } },
    handler: async (_req, res) => {
      res.json(d.tokens.jwks());
    },
  });
  api.add({
    method: 'get',
    path: '/healthz',
    tag: 'Public',
    auth: 'none',
    summary: 'Liveness',
    responses: { 200: { description: 'The process is up.', schema: Health } },
    handler: async (_req, res) => {
      res.json({ status: 'ok' });
    },
  });
  api.add({
    method: 'get',
    path: '/readyz',
    tag: 'Public',
    auth: 'none',
    summary: 'Readiness: storage reachable, signing keys loaded',
    responses: { 200: { description: 'Ready.', schema: Ready }, 503: { description: 'Not ready.', schema: Ready } },
    handler: async (_req, res) => {
      const checks = { storage: 'ok', keys: d.tokens.ready ? 'ok' : 'missing' };
      try {
        await d.ping();
      } catch {
        checks.storage = 'unreachable';
      }
      const ok = checks.storage === 'ok' && checks.keys === 'ok';
      res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks });
    },
  });
  api.add({
    method: 'get',
    path: '/metrics',
    tag: 'Public',
    auth: 'none',
    summary: 'Prometheus metrics (no card data, no tokens)',
    responses: { 200: { description: 'Prometheus text exposition format.' } },
    handler: async (_req, res) => {
      const m = metrics();
      res.setHeader('Content-Type', m.registry.contentType);
      res.send(await m.registry.metrics());
    },
  });
  api.add({
    method: 'get',
    path: '/openapi.json',
    tag: 'Public',
    auth: 'none',
    summary: 'This OpenAPI 3.1 document',
    responses: { 200: { description: 'The document, generated from the schemas that validate requests.' } },
    handler: async (_req, res) => {
      res.json(document());
    },
  });
}
