import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openapiDocument } from './app.js';
import { projectRoot } from './version.js';

/** `npm run openapi`: writes openapi.json, generated from the zod schemas that validate requests. */
export const OPENAPI_FILE = join(projectRoot(), 'openapi.json');
export const DOC_SERVER_URL = 'http://127.0.0.1:8080';

export function renderOpenapi(): string {
  return `${JSON.stringify(openapiDocument(DOC_SERVER_URL), null, 2)}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(OPENAPI_FILE, renderOpenapi());
  process.stdout.write(`wrote ${OPENAPI_FILE}\n`);
}
