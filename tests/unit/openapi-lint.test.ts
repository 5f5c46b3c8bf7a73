import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createConfig, lint } from '@redocly/openapi-core';
import spectralCore from '@stoplight/spectral-core';
import Parsers from '@stoplight/spectral-parsers';
import rulesets from '@stoplight/spectral-rulesets';

/**
 * openapi.json under the two common linters' default rule sets: Redocly's
 * `recommended` and Spectral's `spectral:oas` (its recommended rules). Not an
 * error and not a warning from either.
 */
describe('openapi.json passes Redocly recommended and Spectral spectral:oas', () => {
  it('Redocly recommended: 0 errors, 0 warnings', async () => {
    const problems = await lint({ ref: 'openapi.json', config: await createConfig({ extends: ['recommended'] }) });
    assert.deepEqual(
      problems.map((p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer ?? ''}: ${p.message}`),
      [],
    );
  });

  it('Spectral spectral:oas: 0 errors, 0 warnings', async () => {
    const spectral = new spectralCore.Spectral();
    spectral.setRuleset({ extends: [[rulesets.oas, 'recommended']] } as never);
    const results = await spectral.run(new spectralCore.Document(readFileSync('openapi.json', 'utf8'), Parsers.Json, 'openapi.json'));
    assert.deepEqual(
      results.map((r) => `${['error', 'warning', 'info', 'hint'][r.severity]} ${String(r.code)} ${r.path.join('.')}: ${r.message}`),
      [],
    );
  });

  it('Spectral does report a problem in a broken document (the check can fail)', async () => {
    const doc = JSON.parse(readFileSync('openapi.json', 'utf8')) as {
      info: Record<string, unknown>;
      paths: Record<string, Record<string, Record<string, unknown>>>;
    };
    delete doc.info.contact;
    delete doc.paths['/healthz']!.get!.description;
    const spectral = new spectralCore.Spectral();
    spectral.setRuleset({ extends: [[rulesets.oas, 'recommended']] } as never);
    const codes = (await spectral.run(new spectralCore.Document(JSON.stringify(doc), Parsers.Json, 'openapi.json'))).map((r) => String(r.code)).sort();
    assert.deepEqual(codes, ['info-contact', 'operation-description']);
  });
});
