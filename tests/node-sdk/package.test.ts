import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as source from '../../packages/node/src/index.js';
import { GENERATED_TYPES, renderTypes } from '../../packages/node/scripts/generate-types.js';
import { TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { merchantOf, serve, type Served } from './helpers.js';

/** issue 17: the package itself: generated types in step with openapi.json, the ESM and CommonJS builds, no runtime dependencies. */

const PKG = join(process.cwd(), 'packages', 'node');
const pkg = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'));
type Sdk = typeof source;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

describe('@cvvops/node: the package', () => {
  it('src/generated/openapi.ts is exactly what openapi-typescript makes of openapi.json now (npm run generate -w @cvvops/node)', async () => {
    assert.equal(readFileSync(GENERATED_TYPES, 'utf8'), await renderTypes());
  });

  it("VERSION is package.json's; no runtime dependencies", () => {
    assert.equal(source.VERSION, pkg.version);
    assert.equal(pkg.dependencies, undefined);
    assert.equal(pkg.peerDependencies, undefined);
  });

  it('the builds exist (npm run build -w @cvvops/node), with declarations, and load only node: built-ins and their own files', () => {
    for (const half of ['esm', 'cjs']) {
      const dir = join(PKG, 'dist', half);
      assert.ok(existsSync(join(dir, 'index.js')) && existsSync(join(dir, 'index.d.ts')), `dist/${half} is not built`);
      assert.equal(JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).type, half === 'esm' ? 'module' : 'commonjs');
      for (const f of files(dir).filter((x) => x.endsWith('.js'))) {
        const text = readFileSync(f, 'utf8');
        const specs = [...text.matchAll(/(?:\bfrom\s*|\brequire\(|\bimport\()\s*["']([^"']+)["']/g)].map((x) => x[1]!);
        for (const spec of specs) assert.ok(spec.startsWith('node:') || spec.startsWith('./') || spec.startsWith('../'), `${f} loads ${spec}`);
      }
    }
  });

  describe('the built entry points, through the package name (workspace link)', () => {
    let s: Served;
    let m: TestMerchant;
    let esm: Sdk;
    let cjs: Sdk;
    before(async () => {
      s = await serve();
      m = await merchantOf(s);
      const name = '@cvvops/node';
      esm = (await import(name)) as Sdk;
      cjs = createRequire(import.meta.url)(name) as Sdk;
    });
    after(() => s.close());

    it('resolve to dist/esm and dist/cjs, two different module instances', () => {
      const req = createRequire(import.meta.url);
      assert.equal(req.resolve('@cvvops/node'), join(PKG, 'dist', 'cjs', 'index.js'));
      assert.equal(import.meta.resolve('@cvvops/node'), `file://${join(PKG, 'dist', 'esm', 'index.js')}`);
      assert.notEqual(esm.CvvOps, cjs.CvvOps);
      assert.deepEqual(Object.keys(esm).sort(), Object.keys(cjs).sort());
      assert.deepEqual(Object.keys(esm).sort(), Object.keys(source).sort());
    });

    for (const which of ['esm', 'cjs'] as const) {
      it(`${which}: a card, a session, validateToken, verifyToken and an error, against the server`, async () => {
        const sdk = which === 'esm' ? esm : cjs;
        const cvvops = new sdk.CvvOps(m.testKey, { baseUrl: s.base });
        const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
        const session = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'] });
        const v = await cvvops.sessions.validateToken(session.token);
        assert.ok(v.valid && v.current);
        assert.equal((await cvvops.verifyToken(session.token)).sub, session.id);
        await assert.rejects(
          cvvops.cards.retrieve('tok_nope'),
          (err: unknown) => err instanceof sdk.CvvOpsError && err.status === 404 && err.code === 'not_found',
        );
        const header = cvvops.webhooks.generateTestHeader({ payload: '{"type":"x"}', secret: 'whsec_1' });
        assert.equal(cvvops.webhooks.constructEvent('{"type":"x"}', header, 'whsec_1').type, 'x');
      });
    }
  });

  it('a TypeScript consumer type-checks against the declarations, as ES module (.mts) and as CommonJS (.cts)', async () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const r = await promisify(execFile)(process.execPath, [tsc, '-p', join('tests', 'node-sdk', 'consumer', 'tsconfig.json')]).catch((e) => e);
    assert.equal(r.code ?? 0, 0, `${r.stdout}${r.stderr}`);
  });
});
