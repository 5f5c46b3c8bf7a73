import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
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
        assert.equal(r401.content['application/json'].schema.$ref, '#/components/schemas/Error');
      }
    }
    assert.ok(authenticated > 20);
    const create = doc.paths['/CvvOperations'].post;
    assert.ok(create.parameters.some((p: { in: string; name: string }) => p.in === 'header' && p.name === 'idempotency-key'));
  });
});
