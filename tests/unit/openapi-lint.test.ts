import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createConfig, lint } from '@redocly/openapi-core';

/**
 * openapi.json under Redocly's `recommended` rules: no error, and no warning
 * but one kind we keep on purpose: the five public GETs (JWKS, health,
 * readiness, metrics, this document) declare no 4XX response because they
 * answer none; declaring one would be false.
 */
describe('openapi.json passes Redocly recommended', () => {
  it('0 errors; the only warnings are the public endpoints without a 4XX they never send', async () => {
    const problems = await lint({ ref: 'openapi.json', config: await createConfig({ extends: ['recommended'] }) });
    const shown = problems.map((p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer ?? ''}: ${p.message}`);
    assert.deepEqual(
      problems.filter((p) => p.severity === 'error'),
      [],
      shown.join('\n'),
    );
    const unexpected = problems.filter(
      (p) =>
        !(
          p.ruleId === 'operation-4xx-response' &&
          ['/.well-known/jwks.json', '/healthz', '/readyz', '/metrics', '/openapi.json'].some(
            (path) => p.location[0]?.pointer === `#/paths/${path.replace(/~/g, '~0').replace(/\//g, '~1')}/get/responses`,
          )
        ),
    );
    assert.deepEqual(
      unexpected.map((p) => `${p.ruleId} ${p.location[0]?.pointer}`),
      [],
      shown.join('\n'),
    );
  });
});
