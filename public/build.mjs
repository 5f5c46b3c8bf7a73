// Builds the browser code with esbuild: the SDK (IIFE defining window.CvvOps, and an ES module),
// the hosted form runtime, the 3DS challenge enhancement and the demo page. Deterministic output,
// so the SRI hash in the README stays true until the source changes.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const common = { bundle: true, minify: true, target: ['es2020'], legalComments: 'none', charset: 'utf8', logLevel: 'warning' };
mkdirSync(join(here, 'sdk/v1'), { recursive: true });
mkdirSync(join(here, 'assets'), { recursive: true });
await Promise.all([
  build({
    ...common,
    entryPoints: [join(here, 'src/sdk.ts')],
    outfile: join(here, 'sdk/v1/cvvops.js'),
    format: 'iife',
    globalName: '__cvvops',
    footer: { js: 'window.CvvOps=__cvvops.CvvOps;' },
  }),
  build({ ...common, entryPoints: [join(here, 'src/sdk.ts')], outfile: join(here, 'sdk/v1/cvvops.mjs'), format: 'esm' }),
  build({ ...common, entryPoints: [join(here, 'src/form-runtime.ts')], outfile: join(here, 'assets/form.js'), format: 'iife' }),
  build({ ...common, entryPoints: [join(here, 'src/challenge.ts')], outfile: join(here, 'assets/challenge.js'), format: 'iife' }),
  build({ ...common, entryPoints: [join(here, 'src/demo.ts')], outfile: join(here, 'assets/demo.js'), format: 'iife' }),
  // The API reference page: Swagger UI bundled in, so /docs works offline and under a CSP of 'self' only.
  build({ ...common, entryPoints: [join(here, 'src/docs.ts')], outfile: join(here, 'assets/docs.js'), format: 'iife' }),
]);
copyFileSync(createRequire(import.meta.url).resolve('swagger-ui-dist/swagger-ui.css'), join(here, 'assets/docs.css'));
copyFileSync(join(here, 'src/cvvops.d.ts'), join(here, 'sdk/v1/cvvops.d.ts'));
