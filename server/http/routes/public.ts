import type { Deps } from '../../deps.js';
import type { Metrics } from '../metrics.js';
import type { Api } from '../api.js';
import { z } from '../schemas.js';

const common = { kid: z.string().openapi({ description: "The key's RFC 7638 thumbprint: a token's header names it." }), use: z.literal('sig') };
const Jwk = z
  .discriminatedUnion('kty', [
    z
      .object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string(), alg: z.literal('EdDSA'), ...common })
      .strict()
      .openapi('Ed25519Jwk'),
    z
      .object({ kty: z.literal('EC'), crv: z.literal('P-256'), x: z.string(), y: z.string(), alg: z.literal('ES256'), ...common })
      .strict()
      .openapi('P256Jwk'),
  ])
  .openapi('JWK', { description: 'A public signing key (RFC 7517): never a private member.' });
const Jwks = z
  .object({ keys: z.array(Jwk) })
  .strict()
  .openapi('JWKS');
const Health = z.object({ status: z.string() }).openapi('Health');
const Ready = z.object({ status: z.enum(['ready', 'not_ready']), checks: z.object({ storage: z.string(), keys: z.string() }) }).openapi('Readiness');

/** Section 9: public endpoints (no credentials). */
export function publicRoutes(api: Api, d: Pick<Deps, 'ping' | 'tokens'>, metrics: () => Metrics, document: () => Record<string, unknown>): void {
  api.add({
    method: 'get',
    path: '/.well-known/jwks.json',
    description:
      "The public keys that sign session tokens (JWK Set, RFC 7517): the active key and the retired keys whose tokens may still be alive. Verify a token offline with the key its header's `kid` names, and only with that key's `alg`; fetch the set again when a token names a `kid` you do not hold (a key rotation), at most once every few seconds.",
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
    description: "Liveness: the process answers. For a load balancer's or an orchestrator's liveness probe; it checks nothing else.",
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
    description:
      'Readiness: the database answers and the signing keys are loaded. Route traffic to an instance only while this is 200; 503 names the check that failed.',
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
    description:
      'Prometheus metrics in the text exposition format: requests by route and status, durations, operations and their outcomes, webhook deliveries, background work. Never card data, tokens or keys. Expose it to your monitoring network only (see docs/operations.md).',
    tag: 'Public',
    auth: 'none',
    summary: 'Prometheus metrics (no card data, no tokens)',
    responses: { 200: { description: 'Prometheus text exposition format.', schema: z.string(), mediaType: 'text/plain' } },
    handler: async (_req, res) => {
      const m = metrics();
      res.setHeader('Content-Type', m.registry.contentType);
      res.send(await m.registry.metrics());
    },
  });
  api.add({
    method: 'get',
    path: '/openapi.json',
    description: 'This document, generated from the schemas that validate requests, so it always matches the running server. `/docs` renders it.',
    tag: 'Public',
    auth: 'none',
    summary: 'This OpenAPI 3.1 document',
    responses: {
      200: {
        description: 'The document, generated from the schemas that validate requests.',
        schema: z.object({ openapi: z.literal('3.1.0'), info: z.object({ title: z.string(), version: z.string() }) }).openapi('OpenAPIDocument'),
      },
    },
    handler: async (_req, res) => {
      res.json(document());
    },
  });
}
