import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { WEBHOOK_EVENTS } from '../../server/domain/webhooks.js';
import { ERRORS, type ErrorCode } from '../../server/errors.js';
import { OPENAPI_FILE, renderOpenapi } from '../../server/openapi-write.js';

describe('the OpenAPI document', () => {
  it('committed openapi.json is exactly what the schemas generate (run `npm run openapi` after changing them)', () => {
    assert.equal(readFileSync(OPENAPI_FILE, 'utf8'), renderOpenapi());
  });

  it('is OpenAPI 3.1 and describes request bodies with the validating schemas (strict objects)', () => {
    const doc = JSON.parse(renderOpenapi());
    assert.equal(doc.openapi, '3.1.0');
    const create = doc.components.schemas.CreateSessionRequest;
    assert.deepEqual(create.required, ['card', 'operations']);
    assert.equal(create.additionalProperties, false, 'unknown fields are refused, and the document says so');
    assert.deepEqual(doc.components.schemas.CollectCvvRequest.required, ['cvv']);
    assert.ok(doc.paths['/CvvOperations/collectCvv'].post.security[0].sessionToken);
    assert.ok(doc.paths['/Cards'].post.security[0].apiKey);
  });

  it('every authenticated route declares its 401 with the WWW-Authenticate header, and its Idempotency-Key where honoured', () => {
    const doc = JSON.parse(renderOpenapi());
    let authenticated = 0;
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        if (!op.security?.length) continue;
        authenticated++;
        const r401 = op.responses['401'];
        assert.ok(r401, `${method.toUpperCase()} ${path} declares 401`);
        assert.ok(r401.headers?.['WWW-Authenticate'], `${method.toUpperCase()} ${path}: 401 names WWW-Authenticate`);
        assert.equal(r401.content['application/json'].schema.allOf[0].$ref, '#/components/schemas/Error');
        assert.ok(r401.content['application/json'].schema.properties.error.properties.code.enum.includes('unauthenticated'));
      }
    }
    assert.ok(authenticated > 20);
    for (const [path, op] of [
      ['/CvvOperations', doc.paths['/CvvOperations'].post],
      ['/Cards', doc.paths['/Cards'].post],
      ['/CvvOperations/charge', doc.paths['/CvvOperations/charge'].post],
    ]) {
      assert.ok(
        op.parameters.some((p: { in: string; name: string }) => p.in === 'header' && p.name === 'idempotency-key'),
        `${path} declares Idempotency-Key`,
      );
      assert.ok(op.responses['409'].content['application/json'].schema.properties.error.properties.code.enum.includes('idempotency_key_reused'), path);
    }
  });

  it('every error status of every operation lists its codes, each of that status, with the Error schema; no catch-all default', () => {
    const doc = JSON.parse(renderOpenapi());
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(item)) {
        const what = `${method.toUpperCase()} ${path}`;
        assert.equal(op.responses.default, undefined, `${what}: no default response`);
        assert.ok(op.description?.length > 20, `${what}: described`);
        for (const [status, r] of Object.entries(op.responses as Record<string, any>)) {
          if (Number(status) < 400 || path === '/readyz') continue;
          const schema = r.content['application/json'].schema;
          assert.equal(schema.allOf[0].$ref, '#/components/schemas/Error', `${what} ${status}`);
          const codes: ErrorCode[] = schema.properties.error.properties.code.enum;
          assert.ok(codes.length > 0);
          for (const c of codes) assert.equal(ERRORS[c][0], Number(status), `${what}: ${c} is a ${ERRORS[c][0]}, listed under ${status}`);
          assert.ok(r.headers['X-Request-Id'], `${what} ${status}: X-Request-Id`);
          if (codes.includes('rate_limited')) assert.ok(r.headers['Retry-After'], `${what} ${status}: Retry-After`);
        }
        // Every route answers these, whatever it is: the checks that run before any route.
        for (const c of ['invalid_request', 'payload_too_large', 'unsupported_media_type', 'internal_error'] as const)
          assert.ok(op.responses[String(ERRORS[c][0])].content['application/json'].schema.properties.error.properties.code.enum.includes(c), `${what}: ${c}`);
      }
    }
    // Route-specific codes land where they belong.
    const charge = doc.paths['/CvvOperations/charge'].post.responses;
    assert.deepEqual(charge['423'].content['application/json'].schema.properties.error.properties.code.enum, ['cvv_blocked']);
    assert.ok(charge['409'].content['application/json'].schema.properties.error.properties.code.enum.includes('precondition_failed'));
    assert.ok(charge['502'].content['application/json'].schema.properties.error.properties.code.enum.includes('processor_error'));
  });

  it('bodies are optional where nothing in them is required (threeDS, threeDS/result, charge, resend)', () => {
    const doc = JSON.parse(renderOpenapi());
    for (const [path, required] of [
      ['/CvvOperations/threeDS', false],
      ['/CvvOperations/threeDS/result', false],
      ['/CvvOperations/charge', false],
      ['/Events/{id}/resend', false],
      ['/CvvOperations/collectCvv', true],
      ['/CvvOperations', true],
    ] as const)
      assert.equal(doc.paths[path].post.requestBody.required, required, path);
  });

  it('results, claims, JWKS keys and event payloads have exact schemas: no open object anywhere', () => {
    const doc = JSON.parse(renderOpenapi());
    const open: string[] = [];
    const walk = (o: unknown, at: string) => {
      if (!o || typeof o !== 'object') return;
      const s = o as Record<string, unknown>;
      if (s.additionalProperties !== undefined && typeof s.additionalProperties === 'object' && Object.keys(s.additionalProperties as object).length === 0)
        open.push(at);
      for (const [k, v] of Object.entries(s)) walk(v, `${at}/${k}`);
    };
    walk(doc.components.schemas, '#/components/schemas');
    // The one open object left on purpose: /openapi.json's own answer (this document).
    assert.deepEqual(open, []);
    for (const name of [
      'TokenClaims',
      'Results',
      'SessionResults',
      'ChargeResult',
      'ThreeDSResult',
      'CollectCvvResult',
      'Ed25519Jwk',
      'P256Jwk',
      'CvvCollectedEvent',
    ])
      assert.equal(doc.components.schemas[name].additionalProperties, false, `${name} is closed`);
    assert.equal(doc.components.schemas.JWKS.properties.keys.items.$ref, '#/components/schemas/JWK');
  });

  it('declares every webhook with its payload and the Cvvops-Signature header', () => {
    const doc = JSON.parse(renderOpenapi());
    assert.deepEqual(Object.keys(doc.webhooks).sort(), [...WEBHOOK_EVENTS, 'webhook.test'].sort());
    for (const [type, item] of Object.entries(doc.webhooks as Record<string, any>)) {
      const op = item.post;
      const ref: string = op.requestBody.content['application/json'].schema.$ref;
      const payload = doc.components.schemas[ref.split('/').pop()!];
      assert.deepEqual(payload.properties.type.enum ?? [payload.properties.type.const], [type], `${type}: its payload's type`);
      assert.ok(
        op.parameters.some((p: { in: string; name: string }) => p.in === 'header' && p.name === 'cvvops-signature'),
        `${type}: Cvvops-Signature`,
      );
      assert.deepEqual(op.security, [{ webhookSignature: [] }]);
    }
  });
});
