import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import express, { type Express, type Request, type Response } from 'express';

/**
 * The response check of the HTTP tests: every JSON body the app sends is
 * validated against openapi.json (the operation's declared response for that
 * status, JSON Schema 2020-12 with ajv), so the document cannot drift from
 * the code. A response whose status the operation does not declare is a
 * violation too. Violations are collected; the harness's close() fails the
 * test file with them.
 */
const doc = JSON.parse(readFileSync(fileURLToPath(new URL('../../openapi.json', import.meta.url)), 'utf8')) as {
  paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> }>>;
};
const addFormats = (addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule;
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema(doc, 'openapi.json');

const routes = Object.keys(doc.paths)
  .map((tpl) => ({
    tpl,
    re: new RegExp(`^${tpl.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`),
    params: (tpl.match(/\{/g) ?? []).length,
  }))
  .sort((a, b) => a.params - b.params);

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
const compiled = new Map<string, ValidateFunction>();

export const violations: string[] = [];
/** How many responses were checked (a test of the check itself reads it). */
export const stats = { checked: 0 };

/** Checks one response; undocumented paths (hosted pages, the SDK files, /demo) are not API responses and are skipped. */
export function checkResponse(method: string, path: string, status: number, body: unknown): void {
  const m = method.toLowerCase();
  // The most specific path first (POST /CvvOperations/collectCvv is not GET /CvvOperations/{id}); a method the
  // path does not have is the server's 405, which belongs to no operation.
  const route = routes.find((r) => r.re.test(path));
  if (!route || !doc.paths[route.tpl]![m]) return;
  const responses = doc.paths[route.tpl]![m]!.responses ?? {};
  const key =
    String(status) in responses ? String(status) : `${String(status)[0]}XX` in responses ? `${String(status)[0]}XX` : 'default' in responses ? 'default' : null;
  const what = `${method} ${route.tpl} → ${status}`;
  if (key === null) {
    violations.push(`${what}: this status is not declared`);
    return;
  }
  stats.checked++;
  if (!responses[key]!.content?.['application/json']?.schema) return;
  const id = `openapi.json#/${pointer('paths', route.tpl, m, 'responses', key, 'content', 'application/json', 'schema')}`;
  let validate = compiled.get(id);
  if (!validate) {
    validate = ajv.compile({ $ref: id });
    compiled.set(id, validate);
  }
  if (!validate(body)) {
    violations.push(`${what}: ${ajv.errorsText(validate.errors, { separator: '; ' })} in ${JSON.stringify(body).slice(0, 300)}`);
  }
}

/** The app behind a front that checks every JSON response it sends (see above). */
export function withResponseCheck(app: Express): Express {
  const front = express();
  front.disable('x-powered-by');
  front.set('trust proxy', app.get('trust proxy'));
  front.use((req: Request, res: Response, next) => {
    const json = res.json.bind(res);
    res.json = (body: unknown) => {
      checkResponse(req.method, req.path, res.statusCode, body);
      return json(body);
    };
    next();
  });
  front.use(app);
  return front;
}
