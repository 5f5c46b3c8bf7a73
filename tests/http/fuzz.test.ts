/**
 * The fuzz suite: thousands of generated requests (fast-check) against every
 * route of the committed openapi.json and the hosted pages, in process.
 *
 *   FUZZ_SEED=<n>   the seed (default: a fixed one, so every run is the same)
 *   FUZZ_RUNS=<n>   how many generated requests (default 2000)
 *   FUZZ_SHRINK=1   let fast-check shrink a failing request (slower)
 *   FUZZ_KEEP_GOING=1  go on after a failure and list them all at the end
 *   FUZZ_POSTGRES=1    with TEST_DATABASE_URL: against PostgreSQL (a fresh schema) instead of SQLite
 *   FUZZ_TRACE=1       print every request with its answer, and the statuses per route
 *
 * It asserts: never a 5xx; every error is API.md's shape with a code of its
 * table (and the status that code has), never a stack, never a run of 12+
 * digits, never an API key or a card number in any answer; the server keeps
 * answering; afterwards a whole flow still succeeds and the SQLite file passes
 * PRAGMA integrity_check. A failure names the seed and the request.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, type ClientRequest, createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import request from 'supertest';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';
import { AMEX_CARD, auth, type Harness, makeHarness, makeMerchant, TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { ERROR_TABLE } from '../helpers/api-errors.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x0c0ffee);
const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SHRINK = process.env.FUZZ_SHRINK === '1';
/** FUZZ_POSTGRES=1 (with TEST_DATABASE_URL): run against PostgreSQL instead of SQLite (NUL bytes, encodings…). */
const ON_PG = process.env.FUZZ_POSTGRES === '1' && PG_BASE !== undefined;
/** Record every failing request and go on (to see all a change breaks at once); the test still fails at the end. */
const KEEP_GOING = process.env.FUZZ_KEEP_GOING === '1';

const LONG_DIGITS = /\d(?:[ -]?\d){11,}/;

// ---------------------------------------------------------------------------------------------------------------
// The routes: every path and method of the committed OpenAPI document, plus the hosted pages.

type AuthKind = 'merchant' | 'session' | 'none';
interface Route {
  method: string;
  path: string;
  auth: AuthKind;
  /** The request body's JSON Schema (resolved against the document's components), when the route takes one. */
  schema?: Schema;
  /** How the body is sent: JSON (default), a raw proxied body, or an HTML form. */
  kind?: 'json' | 'proxy' | 'form';
}
type Schema = Record<string, any>;

const doc = JSON.parse(readFileSync(new URL('../../openapi.json', import.meta.url), 'utf8')) as {
  paths: Record<string, Record<string, any>>;
  components: { schemas: Record<string, Schema> };
};
const resolve = (s: Schema): Schema => (s?.$ref ? resolve(doc.components.schemas[String(s.$ref).split('/').pop()!]!) : s);

const ROUTES: Route[] = [];
for (const [path, methods] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(methods)) {
    const sec = JSON.stringify(op.security ?? []);
    const schema = op.requestBody?.content?.['application/json']?.schema;
    ROUTES.push({
      method: method.toUpperCase(),
      path,
      auth: sec.includes('apiKey') ? 'merchant' : sec.includes('sessionToken') ? 'session' : 'none',
      schema: schema ? resolve(schema) : undefined,
      kind: path === '/proxy' ? 'proxy' : 'json',
    });
  }
}
const DEMO_CHECKOUT: Schema = {
  type: 'object',
  properties: { card: { type: 'string', enum: ['4000000000002024', '4000000000001018', '4000000000006066', '378282246310005'] } },
  required: ['card'],
  additionalProperties: false,
};
const DEMO_VALIDATE: Schema = { type: 'object', properties: { token: { type: 'string' } }, required: ['token'], additionalProperties: false };
ROUTES.push(
  { method: 'GET', path: '/hosted/cvv', auth: 'none' },
  { method: 'GET', path: '/hosted/forms/{id}', auth: 'none' },
  { method: 'GET', path: '/hosted/3ds/{id}', auth: 'none' },
  { method: 'POST', path: '/hosted/3ds/{id}', auth: 'none', kind: 'form' },
  { method: 'GET', path: '/demo', auth: 'none' },
  { method: 'POST', path: '/demo/api/checkout', auth: 'none', schema: DEMO_CHECKOUT },
  { method: 'POST', path: '/demo/api/validate', auth: 'none', schema: DEMO_VALIDATE },
);

// ---------------------------------------------------------------------------------------------------------------
// Generated values. Bodies are built as a small JSON model (objects as key/value lists, so duplicate keys and
// __proto__ survive; raw number tokens like -0 or 1e400) and serialized at send time, when references to real
// objects (`Pick`: a card token, the current session token…) are resolved against what exists by then.

type IdKind = 'card' | 'session' | 'cvc' | 'form' | 'hook' | 'tds' | 'token' | 'staleToken';
class Pick {
  constructor(
    readonly kind: IdKind,
    readonly n: number,
  ) {}
}
class Raw {
  constructor(readonly text: string) {}
}
class Obj {
  constructor(readonly entries: Array<[string, J]>) {}
}
type J = null | boolean | number | string | Raw | Pick | Obj | J[];

/** What the fuzzer knows exists, updated from the answers it gets. */
interface World {
  m: TestMerchant;
  ids: Record<IdKind, string[]>;
  /** The current token of each session the fuzzer holds (sessionId → token). */
  current: Map<string, string>;
  target: string;
}

function pickId(w: World, kind: IdKind, n: number): string {
  if (kind === 'token') {
    const all = [...w.current.values()];
    return all.length ? all[n % all.length]! : 'none';
  }
  const list = w.ids[kind];
  return list.length ? list[list.length - 1 - (n % Math.min(list.length, 8))]! : `${kind}_missing`;
}

function ser(j: J, w: World): string {
  if (j === null || typeof j === 'boolean' || typeof j === 'number') return JSON.stringify(j) ?? 'null';
  if (typeof j === 'string') return JSON.stringify(j);
  if (j instanceof Raw) return j.text;
  if (j instanceof Pick) return JSON.stringify(pickId(w, j.kind, j.n));
  if (j instanceof Obj) return `{${j.entries.map(([k, v]) => `${JSON.stringify(k)}:${ser(v, w)}`).join(',')}}`;
  return `[${j.map((v) => ser(v, w)).join(',')}]`;
}

const ODD_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\udc00\ud800',
  '\u202eabc',
  '\u2066x\u2069',
  '\ufeff',
  '\uffff',
  '\u0085',
  '\u2028',
  '１２３',
  '١٢٣',
  '123\n',
  ' 123',
  '123 ',
  '12',
  '12345',
  'abc',
  '-0',
  'NaN',
  'Infinity',
  '-Infinity',
  '1e308',
  '0x1F',
  '1_000',
  '4000000000001018',
  '4000 0000 0000 1018',
  '4000-0000-0000-1018',
  '__proto__',
  'constructor',
  'prototype',
  '<script>alert(1)</script>',
  '${cvv}',
  '${cardNumber}',
  '%E0%A4%A',
  '%00',
  '../../etc/passwd',
  '\\',
  '"',
  "'; DROP TABLE cards; --",
  '\ud83d\udca5',
  'é',
  'e\u0301',
  'tok_',
  'tok_x',
  'cvo_x',
  'frm_x',
  'cvc_x',
  'sk_test_x',
  'eyJhbGciOiJub25lIn0.e30.',
  'x'.repeat(200),
  'y'.repeat(5000),
];
const oddString = fc.constantFrom(...ODD_STRINGS);
const oddNumber: fc.Arbitrary<J> = fc.oneof(
  fc.constantFrom<J>(
    0,
    -1,
    1,
    0.5,
    -0.5,
    1e308,
    -1e308,
    2 ** 53 + 1,
    -(2 ** 53) - 1,
    99_999_999_999,
    100_000_000_000,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_VALUE,
    1e-7,
    12,
    13,
    1999,
    2030,
    3600,
    3601,
    59,
  ),
  fc.constantFrom(
    new Raw('-0'),
    new Raw('1e400'),
    new Raw('-1e400'),
    new Raw('123456789012345678901234567890'),
    new Raw('1.0'),
    new Raw('1E3'),
    new Raw('0.0000000000000000000001'),
    new Raw('-0.0'),
  ),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const ODD_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  '4000731973197314',
  '4000 7319 7319 7314',
  '',
  ' ',
  '\u0000',
  'cvv',
  'CVV',
  'card ',
  'Amount',
  'x'.repeat(100),
  '\ud800',
  'toString',
  'hasOwnProperty',
  '$where',
  'a.b',
];

/** Any JSON value, with odd leaves, a few levels deep. */
const anyJson: fc.Arbitrary<J> = fc.letrec<{ v: J }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    oddNumber,
    oddString,
    fc.string({ maxLength: 30 }),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.array(fc.tuple(fc.oneof(fc.constantFrom(...ODD_KEYS), fc.string({ maxLength: 12 })), tie('v')), { maxLength: 4 }).map((e) => new Obj(e)),
  ),
})).v;

/** Deep nesting: arrays or objects thousands of levels deep (still under the size limit). */
const deep = fc
  .tuple(fc.integer({ min: 50, max: 7000 }), fc.boolean())
  .map(([n, arr]) => (arr ? new Raw('['.repeat(n) + ']'.repeat(n)) : new Raw('{"a":'.repeat(n) + '1' + '}'.repeat(n))));

/** URLs that are only stored or compared (returnUrl, origins). */
const URLS = [
  'https://shop.example/return',
  'https://shop.example/a\u0000b',
  'https://shop.example/a b',
  'http://localhost:3000/x',
  'javascript:alert(1)',
  'file:///etc/passwd',
  'http://[::1]/',
  'https://user:pw@shop.example/',
  'https://shop.example/' + 'p'.repeat(3000),
  'http://127.0.0.1:1/',
  'ftp://x.example/',
  'https://10.0.0.1/',
  'not a url',
];
/**
 * URLs the server may fetch (proxy targets, an http processor, webhooks): only the local stand-in provider, or
 * strings that are no fetchable URL, so the run never waits on the network or on an unreachable address.
 */
const fetchable = (target: string) =>
  fc.constantFrom(
    target,
    `${target}/`,
    `${target}/pay`,
    `${target}/a?b=c`,
    `${target}/a\u0000b`,
    `${target}/\ud800`,
    'javascript:alert(1)',
    'file:///etc/passwd',
    'ftp://x.example/',
    'not a url',
    'http://',
    'https://',
    '',
  );

/** Mostly one of the plausible values, sometimes an odd one. */
const mostly = (good: J[], odd: J[]): fc.Arbitrary<J> =>
  fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...good) }, { weight: 1, arbitrary: fc.constantFrom(...odd) });

/** Values for a field, by its name: real ids and plausible values most of the time, so the handlers run. */
function byName(name: string, s: Schema, w: () => World): fc.Arbitrary<J> | undefined {
  switch (name) {
    case 'card':
      return s.enum ? undefined : fc.nat().map((n) => new Pick('card', n));
    case 'form':
      return fc.oneof({ weight: 3, arbitrary: fc.constant('hosted') }, { weight: 1, arbitrary: fc.nat().map((n) => new Pick('form', n)) });
    case 'token':
      return fc.oneof(
        fc.nat().map((n) => new Pick('token', n)),
        fc.nat().map((n) => new Pick('staleToken', n)),
        oddString,
      );
    case 'cvv':
      return mostly(['123'], ['1234', '12', '12345', '１２３', ' 123', '0000', '999', '12a']);
    case 'number':
      return mostly(
        [TEST_CARD, '4000000000002024', AMEX_CARD, '5555555555554402'],
        ['4242424242424242', '4000000000001019', '0', '4000 0000 0000 1018', '4000000000001018\u0000'],
      );
    case 'holderName':
      return mostly(['Ada Lovelace', 'Zoë Ångström', '李小龍', "O'Brien-Smith"], ['x'.repeat(101), 'a\u0000b', '\u202eevil', '']);
    case 'name':
      return mostly(['Checkout CVV', 'Zoë', 'x'.repeat(100)], ['x'.repeat(101), '<b>bold</b>', '\u0007', '']);
    case 'reference':
      return mostly(['order-1234', 'x'.repeat(128), 'Ω'], ['x'.repeat(129), '\ud800', '']);
    case 'expMonth':
      return mostly([1, 6, 12], [0, 13, -1, 1.5, '12', new Raw('-0')]);
    case 'expYear':
      return mostly([2030, 2031, 2035, 2100], [2000, 2025, 1999, 2101, 20300, '2030', new Raw('2030.0')]);
    case 'operations':
      return fc.oneof(
        { weight: 4, arbitrary: fc.subarray(['collectCvv', 'threeDS', 'charge'], { minLength: 1 }) },
        { weight: 1, arbitrary: fc.array(fc.constantFrom('collectCvv', 'threeDS', 'charge', 'refund', ''), { maxLength: 5 }) },
      );
    case 'value':
      return mostly([1, 500, 1999], [0, 2000, -1, 1.5, 99_999_999_999, 100_000_000_000, new Raw('-0'), new Raw('1e400'), '1999']);
    case 'currency':
      return mostly(['EUR'], ['USD', 'JPY', 'BHD', 'eur', 'XXX', 'EU', 'EURO', '']);
    case 'url':
      return fetchable(w().target);
    case 'returnUrl':
      return mostly(['https://shop.example/return'], URLS);
    case 'metadata':
      return fc.oneof(
        {
          weight: 4,
          arbitrary: fc
            .array(fc.tuple(fc.constantFrom('cart', 'a.b', 'k_1', 'x-y'), fc.constantFrom('c_77', '', 'Ω', 'v'.repeat(500))), { maxLength: 3 })
            .map((e) => new Obj(e)),
        },
        {
          weight: 1,
          arbitrary: fc
            .array(fc.tuple(fc.constantFrom('', 'a b', '__proto__', 'k'.repeat(41), '\u0000'), fc.oneof(oddString, oddNumber)), { maxLength: 22 })
            .map((e) => new Obj(e)),
        },
      );
    case 'allowedOrigins':
      return fc.array(
        mostly(
          ['https://shop.example', 'http://localhost:3000'],
          ['null', '*', 'https://shop.example/path', 'http://cvv.test', 'https://xn--80ak6aa92e.example', 'javascript:x'],
        ),
        { maxLength: 3 },
      );
    case 'allowedProxyTargets':
      return fc.array(fetchable(w().target), { maxLength: 3 });
    case 'language':
      return mostly(['en-GB', 'fr'], ['x'.repeat(40), 'en_GB']);
    case 'html':
      return mostly(
        ['<input data-cvvops="cvv"><button data-cvvops="submit">Pay</button><p data-cvvops="message"></p>'],
        [
          '<script>alert(1)</script><input data-cvvops="cvv">',
          '<p>a\u0000b</p>',
          '<p>\ud800</p>',
          '<img src=x onerror=alert(1)>',
          '<a href="javascript:alert(1)">x</a>',
          '<div style="background:url(https://evil.example/x)">',
          '<',
          'h'.repeat(20000),
        ],
      );
    case 'css':
      return mostly(
        ['body{color:red}'],
        [
          'a{}\u0000',
          '@import url(https://evil.example/x.css);',
          'input[value^="1"]{background:url(https://evil.example/1)}',
          '</style><script>alert(1)</script>',
          '',
        ],
      );
    case 'path':
      return fc.constantFrom('status', 'result.approved', 'a.b.c', '__proto__.x', 'constructor.prototype', '', 'x'.repeat(199));
    default:
      return undefined;
  }
}

/** A value valid (mostly) for a JSON Schema of the document: the starting point that mutations then break. */
function fromSchema(s0: Schema, name: string, w: () => World, depth = 0): fc.Arbitrary<J> {
  const s = resolve(s0);
  const named = byName(name, s, w);
  if (named) return named;
  if (s.anyOf || s.oneOf) return fc.oneof(...((s.anyOf ?? s.oneOf) as Schema[]).map((x): fc.Arbitrary<J> => fromSchema(x, name, w, depth + 1)));
  if (s.const !== undefined) return fc.constant(s.const as J);
  if (s.enum) return fc.constantFrom(...(s.enum as J[]));
  switch (s.type) {
    case 'boolean':
      return fc.boolean();
    case 'integer': {
      const min = s.minimum ?? -1_000_000;
      const max = s.maximum ?? 1_000_000;
      return fc.oneof(fc.integer({ min, max }), fc.constantFrom(min, max));
    }
    case 'number':
      return fc.double({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6, noNaN: true });
    case 'string': {
      if (s.pattern) {
        const prefix = /^\^([a-z]+)_/.exec(s.pattern)?.[1];
        if (prefix) return fc.stringMatching(/^[A-Za-z0-9_-]{1,30}$/).map((x) => `${prefix}_${x}`);
      }
      const max = Math.min(s.maxLength ?? 40, 40);
      return fc.string({ minLength: Math.min(s.minLength ?? 0, max), maxLength: max });
    }
    case 'array':
      return fc.array(fromSchema(s.items ?? {}, name, w, depth + 1), { minLength: s.minItems ?? 0, maxLength: Math.min(s.maxItems ?? 4, 4) });
    case 'object': {
      if (depth > 4) return fc.constant(new Obj([]));
      const props = Object.entries((s.properties ?? {}) as Record<string, Schema>);
      const required = new Set<string>(s.required ?? []);
      const fields = props.map(([k, ps]) => fc.tuple(fc.constant(k), fromSchema(ps, k, w, depth + 1), fc.boolean()));
      const extra =
        s.additionalProperties && typeof s.additionalProperties === 'object'
          ? fc.array(
              fc.tuple(
                fc.oneof(fc.constantFrom('cart', 'a.b', 'k'), fc.string({ minLength: 1, maxLength: 10 })),
                fromSchema(s.additionalProperties, '', w, depth + 1),
              ),
              { maxLength: 3 },
            )
          : fc.constant([] as Array<[string, J]>);
      return fc
        .tuple(fc.tuple(...fields), extra)
        .map(([fs, ex]) => new Obj([...fs.filter(([k, , keep]) => required.has(k) || keep).map(([k, v]) => [k, v] as [string, J]), ...ex]));
    }
    default:
      return anyJson;
  }
}

/** Breaks a body: a field replaced by an odd value, dropped, duplicated, or an odd key added; nested objects too. */
type Mutation = { at: number; what: 'replace' | 'drop' | 'add' | 'dup' | 'nest'; key: string; value: J };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  what: fc.constantFrom('replace', 'replace', 'drop', 'add', 'dup', 'nest'),
  key: fc.constantFrom(...ODD_KEYS),
  value: fc.oneof(anyJson, oddNumber, oddString, deep, fc.constant(null)),
});
function mutate(j: J, ms: Mutation[]): J {
  let out = j;
  for (const mu of ms) {
    if (!(out instanceof Obj)) break;
    const e = [...out.entries];
    const i = e.length ? mu.at % e.length : 0;
    if (mu.what === 'replace' && e.length) e[i] = [e[i]![0], mu.value];
    else if (mu.what === 'drop' && e.length) e.splice(i, 1);
    else if (mu.what === 'dup' && e.length) e.push([e[i]![0], mu.value]);
    else if (mu.what === 'nest' && e.length && e[i]![1] instanceof Obj) e[i] = [e[i]![0], mutate(e[i]![1], [{ ...mu, what: 'replace' }])];
    else e.push([mu.key, mu.value]);
    out = new Obj(e);
  }
  return out;
}

/** A request body: what it is and how it goes on the wire. */
type Body = { t: 'none' } | { t: 'json'; j: J } | { t: 'text'; text: string } | { t: 'bytes'; hex: string };

const RAW_TEXTS = [
  '{',
  '}',
  '{"a":1,}',
  '{"a":01}',
  "{'a':1}",
  'undefined',
  'NaN',
  '[NaN]',
  '{"a":NaN}',
  '{"a":Infinity}',
  '\ufeff{}',
  '{}\u0000',
  '{"cvv":"12\u00003"}',
  'null',
  'true',
  '"x"',
  '42',
  '[]',
  '[{}]',
  '{"__proto__":{"polluted":1}}',
  '{"constructor":{"prototype":{"polluted":1}}}',
  '{"a":"\\ud800"}',
  '{"a":"\\u0000"}',
  '{"a":"\\x41"}',
  '{"a":1}{"b":2}',
  ' ',
  '\r\n',
  '{"a":1} x',
  'code=123456',
  '<xml/>',
];
const INVALID_UTF8 = [
  'ff',
  'fe',
  'c328',
  'a0a1',
  'e28228',
  'eda080',
  'f0288cbc',
  'c0af',
  'f8a1a1a1a1',
  '7b2261223a22ff227d' /* {"a":"\xff"} */,
  '7b2263767622203a2022eda08022207d',
  '00',
  '1f8b0800',
];

function bodyArb(route: Route, w: () => World): fc.Arbitrary<Body> {
  const valid = route.schema ? fromSchema(route.schema, '', w) : fc.constant(new Obj([]));
  const limit = route.path.startsWith('/CustomForms') ? 65536 : 16384;
  return fc.oneof(
    // Mostly valid or nearly valid, so the handlers run and their own checks meet odd values.
    { weight: 8, arbitrary: valid.map((j): Body => ({ t: 'json', j })) },
    { weight: 5, arbitrary: fc.tuple(valid, mutation).map(([j, mu]): Body => ({ t: 'json', j: mutate(j, [mu]) })) },
    { weight: 3, arbitrary: fc.tuple(valid, fc.array(mutation, { minLength: 2, maxLength: 4 })).map(([j, ms]): Body => ({ t: 'json', j: mutate(j, ms) })) },
    { weight: 1, arbitrary: fc.constant<Body>({ t: 'none' }) },
    { weight: 2, arbitrary: anyJson.map((j): Body => ({ t: 'json', j })) },
    { weight: 1, arbitrary: deep.map((j): Body => ({ t: 'json', j })) },
    { weight: 2, arbitrary: fc.constantFrom(...RAW_TEXTS).map((text): Body => ({ t: 'text', text })) },
    { weight: 1, arbitrary: fc.constantFrom(...INVALID_UTF8).map((hex): Body => ({ t: 'bytes', hex })) },
    // Over the limit, by a little or a lot; and just under it.
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(limit - 20, limit + 1, limit + 100, limit * 2, 300_000)
        .map((n): Body => ({ t: 'text', text: `{"name":"${'a'.repeat(Math.max(0, n - 11))}"}` })),
    },
  );
}

/** The credential of a request (resolved at send time). */
type Cred =
  | 'key'
  | 'liveKey'
  | 'otherKey'
  | 'randomKey'
  | 'token'
  | 'staleToken'
  | 'badJws'
  | 'noneAlg'
  | 'none'
  | 'basic'
  | 'empty'
  | 'long'
  | 'lowercase'
  | 'dup'
  | 'dupSame';
function credArb(route: Route): fc.Arbitrary<Cred> {
  const odd: fc.WeightedArbitrary<Cred>[] = (
    ['randomKey', 'badJws', 'noneAlg', 'none', 'basic', 'empty', 'long', 'lowercase', 'dup', 'dupSame', 'otherKey'] as Cred[]
  ).map((c) => ({ weight: 1, arbitrary: fc.constant(c) }));
  if (route.auth === 'merchant')
    return fc.oneof(
      { weight: 24, arbitrary: fc.constant<Cred>('key') },
      { weight: 2, arbitrary: fc.constant<Cred>('liveKey') },
      { weight: 2, arbitrary: fc.constant<Cred>('token') },
      ...odd,
    );
  if (route.auth === 'session')
    return fc.oneof(
      { weight: 24, arbitrary: fc.constant<Cred>('token') },
      { weight: 3, arbitrary: fc.constant<Cred>('staleToken') },
      { weight: 2, arbitrary: fc.constant<Cred>('key') },
      ...odd,
    );
  return fc.oneof({ weight: 10, arbitrary: fc.constant<Cred>('none') }, ...odd);
}

/** A path parameter: a real id of the right kind, of another kind, a made-up id, or an odd escape. */
type Param = { t: 'real'; kind: IdKind; n: number } | { t: 'raw'; text: string };
const ODD_SEGMENTS = [
  '%00',
  'tok_%00',
  '%2F',
  'a%2Fb',
  '%E0%A4%A',
  '%E0%A4',
  '%ZZ',
  '%',
  '%ED%A0%80',
  '%FF',
  '..',
  '../',
  '..%2F..%2Fetc%2Fpasswd',
  '%2E%2E',
  '.',
  '%C3%A9',
  '%F0%9F%92%A5',
  '%20',
  '%0D%0ASet-Cookie:%20x=1',
  'x'.repeat(2000),
  '4000000000001018',
  'tok_' + 'a'.repeat(70),
  '%25',
  '%252F',
  '%3Cscript%3E',
  'null',
  'undefined',
  '__proto__',
  'constructor',
];
function paramArb(kind: IdKind): fc.Arbitrary<Param> {
  return fc.oneof(
    { weight: 10, arbitrary: fc.nat().map((n): Param => ({ t: 'real', kind, n })) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom<IdKind>('card', 'session', 'cvc', 'form', 'hook', 'tds'), fc.nat())
        .map(([k, n]): Param => ({ t: 'real', kind: k, n })),
    },
    { weight: 2, arbitrary: fc.stringMatching(/^[a-z]{3}_[A-Za-z0-9_-]{1,40}$/).map((text): Param => ({ t: 'raw', text })) },
    { weight: 4, arbitrary: fc.constantFrom(...ODD_SEGMENTS).map((text): Param => ({ t: 'raw', text })) },
  );
}
const paramKind = (path: string): IdKind =>
  path.startsWith('/Cards')
    ? 'card'
    : path.startsWith('/CvvOperations')
      ? 'session'
      : path.startsWith('/CvcSessions')
        ? 'cvc'
        : path.startsWith('/CustomForms') || path.startsWith('/hosted/forms')
          ? 'form'
          : path.startsWith('/WebhookEndpoints')
            ? 'hook'
            : 'tds';

/** Headers beyond the credential: odd Content-Type and charset, Content-Encoding, duplicates, very long values. */
type Header = [string, string];
const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/json;charset="UTF-8"',
  'APPLICATION/JSON',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'application/json; charset=',
  'text/plain',
  'text/json',
  '',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
  'application/json, text/plain',
  'application/*',
  '*/*',
  'application/json; boundary=x; charset=utf-8',
  'application/merge-patch+json',
];
const headerArb: fc.Arbitrary<Header> = fc.oneof(
  fc.constantFrom(...CONTENT_TYPES).map((v): Header => ['Content-Type', v]),
  fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'GZIP', 'gzip, gzip', 'x-unknown', '').map((v): Header => ['Content-Encoding', v]),
  fc
    .constantFrom('a', 'idem-1', 'x'.repeat(256), 'x'.repeat(2000), 'ü', '', ' ', 'a b')
    .map((v): Header => ['Idempotency-Key', Buffer.from(v, 'utf8').toString('latin1')]),
  fc.constantFrom('req_fuzz', 'x'.repeat(65), 'a b', '\u00e9').map((v): Header => ['X-Request-Id', v]),
  fc.constantFrom('https://shop.example', 'https://evil.example', 'null', 'http://cvv.test', '*', 'x'.repeat(2000)).map((v): Header => ['Origin', v]),
  // Long, but the whole head stays under Node's 16 KiB header limit (beyond it Node itself answers 431, before the app).
  fc.integer({ min: 100, max: 2500 }).map((n): Header => ['X-Long', 'v'.repeat(n)]),
  fc.constantFrom('text/html', '*/*', 'application/json;q=0', '\u00ff').map((v): Header => ['Accept', v]),
  fc.constantFrom('tok_x', 'x'.repeat(300)).map((v): Header => ['X-Card-Token', v]),
  fc.constantFrom('cvc_x', '').map((v): Header => ['X-Cvc-Session-Id', v]),
  fc
    .constantFrom('https://psp.example/x', 'http://127.0.0.1:1/', 'file:///etc/passwd', 'not a url', 'http://169.254.169.254/latest/meta-data')
    .map((v): Header => ['X-Proxy-Target', v]),
);

interface Req {
  route: Route;
  method: string;
  param?: Param;
  query?: string;
  cred: Cred;
  body: Body;
  headers: Header[];
  /** Body sent gzipped for real (with Content-Encoding: gzip). */
  gzip: boolean;
  /** Proxy requests: real forwarding headers (the allowed target, a card, its CVC session). */
  proxy?: { target: boolean; card: number; cvc: number };
}

const QUERIES = [
  '?cvv=123',
  '?cvv=123&number=4000000000001018',
  '?a=%E0%A4%A',
  '?x=1&x=2',
  '?a[b]=1',
  '?key=sk_test_abc',
  '?api_key=x',
  `?${'a=1&'.repeat(300)}`,
  '?%00=%00',
  '?=',
  '?&&',
  '?session=',
];

function reqArb(w: () => World): fc.Arbitrary<Req> {
  return fc
    .constantFrom(...ROUTES)
    .chain((route) => {
      const hasParam = route.path.includes('{');
      return fc.record({
        route: fc.constant(route),
        method: fc.oneof(
          { weight: 12, arbitrary: fc.constant(route.method) },
          { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS') },
        ),
        param: hasParam ? paramArb(paramKind(route.path)) : fc.constant(undefined),
        query:
          route.path === '/hosted/cvv' || route.path === '/hosted/forms/{id}'
            ? fc.oneof(
                fc.nat().map((n) => `?session=${encodeURIComponent(pickIdLater('session', n))}`),
                fc.constantFrom(...QUERIES, '', '?session=%00', '?session=cvo_%E0%A4%A', '?session=a&session=b'),
              )
            : fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(...QUERIES) }),
        cred: credArb(route),
        body:
          route.kind === 'form'
            ? fc.oneof(
                fc
                  .constantFrom(
                    'code=123456',
                    'code=000000',
                    'code=',
                    `code=${'1'.repeat(13)}`,
                    'code[]=1',
                    'code=1&code=2',
                    'a=1&b=2&c=3&d=4&e=5&f=6',
                    'code=%E0%A4%A',
                    'code=%00',
                    'origin=https://evil.example&code=123456',
                  )
                  .map((text): Body => ({ t: 'text', text })),
                bodyArb(route, w),
              )
            : bodyArb(route, w),
        headers: fc.oneof({ weight: 3, arbitrary: fc.constant([] as Header[]) }, { weight: 2, arbitrary: fc.array(headerArb, { minLength: 1, maxLength: 3 }) }),
        gzip: fc.constant(false),
        proxy: route.kind === 'proxy' ? fc.record({ target: fc.boolean(), card: fc.nat(), cvc: fc.nat() }) : fc.constant(undefined),
      });
    })
    .chain((r) => fc.boolean().map((gz): Req => ({ ...r, gzip: gz && r.headers.some(([k, v]) => k === 'Content-Encoding' && v === 'gzip') })));
}
/** A session id looked up when the request is sent (the query string is built from it then). */
const pickIdLater = (kind: IdKind, n: number) => `\u0001${kind}:${n}\u0001`;

interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
  body: any;
}
class ClientRefused extends Error {}

// ---------------------------------------------------------------------------------------------------------------

describe('fuzz: generated requests against every route (fast-check)', () => {
  let h: Harness;
  let server: Server;
  let target: Server;
  let w: World;
  let pgSchema: Awaited<ReturnType<typeof freshPgSchema>> | undefined;
  const stats = { requests: 0, byRoute: new Map<string, number>(), byStatus: new Map<number, number>(), byRouteStatus: new Map<string, Map<number, number>>() };

  before(async () => {
    pgSchema = ON_PG ? await freshPgSchema() : undefined;
    h = await makeHarness({ databaseUrl: pgSchema?.url, env: { CVVOPS_DEMO: 'on', CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    // One listening server for every request (supertest would otherwise start one per request).
    server = await new Promise<Server>((res) => {
      const s = h.app.listen(0, '127.0.0.1', () => res(s));
    });
    // A local stand-in for a payment provider: the proxy and an http processor may forward here, never outside.
    target = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"approved","approved":true,"authorizationCode":"123456"}'));
    });
    await new Promise<void>((res) => target.listen(0, '127.0.0.1', res));
    const m = await makeMerchant(h, ['https://shop.example']);
    w = {
      m,
      ids: { card: [], session: [], cvc: [], form: [], hook: [], tds: [], token: [], staleToken: [] },
      current: new Map(),
      target: `http://127.0.0.1:${(target.address() as AddressInfo).port}`,
    };
    const patched = await request(server)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [`${w.target}/`] });
    assert.equal(patched.status, 200, patched.text);
    const form = await request(server)
      .post('/CustomForms')
      .set(auth(m.testKey))
      .send({ name: 'Fuzz', html: '<input data-cvvops="cvv"><button data-cvvops="submit">Pay</button>' });
    w.ids.form.push(form.body.id);
    const hook = await request(server)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url: `${w.target}/hook`, events: ['charge.succeeded'] });
    w.ids.hook.push(hook.body.id);
    await freshSession('4000000000002024');
    await freshSession(TEST_CARD);
  });
  after(async () => {
    agent.destroy();
    await new Promise<void>((res) => {
      server.closeAllConnections();
      server.close(() => res());
    });
    target.closeAllConnections();
    await new Promise<void>((res) => target.close(() => res()));
    await h.close();
    await pgSchema?.drop();
  });

  /** A new card (with its CVV) and an active session on it, so the operation handlers can be reached. */
  async function freshSession(number = TEST_CARD): Promise<void> {
    const card = await request(server).post('/Cards').set(auth(w.m.testKey)).send({ number, expMonth: 12, expYear: 2031, cvv: '123' });
    assert.equal(card.status, 201, card.text);
    w.ids.card.push(card.body.token);
    if (card.body.cvcSession) w.ids.cvc.push(card.body.cvcSession.id);
    const create = (form: string) =>
      request(server)
        .post('/CvvOperations')
        .set(auth(w.m.testKey))
        .send({ card: card.body.token, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 1999, currency: 'EUR' }, maxAttempts: 10, form });
    // Half the sessions use a custom form (so /hosted/forms/{id}?session= is reached), unless the fuzzer deleted it.
    let s = w.ids.form.length && w.ids.session.length % 2 ? await create(w.ids.form[w.ids.form.length - 1]!) : await create('hosted');
    if (s.status !== 201) s = await create('hosted');
    assert.equal(s.status, 201, s.text);
    w.ids.session.push(s.body.id);
    w.current.set(s.body.id, s.body.token);
    if (w.current.size > 6) w.current.delete(w.current.keys().next().value!);
  }

  /**
   * One request through node:http on a kept-alive connection: the headers exactly as given (an array is sent as
   * repeated headers, which supertest cannot do for every header), nothing added but Host.
   */
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  function rawSend(method: string, path: string, headers: Record<string, string | string[]>, body: Buffer | undefined): Promise<Answer> {
    return new Promise((resolveAnswer, reject) => {
      let req: ClientRequest;
      try {
        req = httpRequest({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, method, path, headers, agent, timeout: 15_000 }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => {
            const text = Buffer.concat(parts).toString('utf8');
            let parsed: any;
            if (/^application\/json/.test(String(res.headers['content-type']))) {
              try {
                parsed = JSON.parse(text);
              } catch {
                /* asserted below */
              }
            }
            resolveAnswer({ status: res.statusCode!, headers: res.headers as Record<string, string>, text, body: parsed });
          });
          res.on('error', reject);
        });
      } catch (e) {
        // node:http refuses some header values and paths itself: nothing reached the server.
        return reject(new ClientRefused(String(e)));
      }
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  function credHeader(c: Cred, n: number): string | string[] | undefined {
    switch (c) {
      case 'key':
        return `Bearer ${w.m.testKey}`;
      case 'liveKey':
        return `Bearer ${w.m.liveKey}`;
      case 'otherKey':
        return 'Bearer sk_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
      case 'randomKey':
        return `Bearer sk_live_${'x'.repeat(n % 60)}`;
      case 'token':
        return `Bearer ${pickId(w, 'token', n)}`;
      case 'staleToken':
        return `Bearer ${pickId(w, 'staleToken', n)}`;
      case 'badJws':
        return `Bearer ${pickId(w, 'token', n).slice(0, -3)}AAA`;
      case 'noneAlg':
        return `Bearer ${Buffer.from('{"alg":"none","typ":"cvvops-session+jwt"}').toString('base64url')}.${Buffer.from('{"sub":"cvo_x"}').toString('base64url')}.`;
      case 'none':
        return undefined;
      case 'basic':
        return 'Basic dXNlcjpwYXNz';
      case 'empty':
        return 'Bearer ';
      case 'long':
        return `Bearer ${'a'.repeat(4500)}`;
      case 'lowercase':
        return `bearer   ${w.m.testKey}`;
      case 'dup':
        return [`Bearer ${w.m.testKey}`, `Bearer ${pickId(w, 'token', n)}`];
      case 'dupSame':
        return [`Bearer ${w.m.testKey}`, `Bearer ${w.m.testKey}`];
    }
  }

  /** The request as it goes on the wire, described for a failure message (secrets shortened). */
  function describeReq(r: Req, path: string, headers: Record<string, string | string[]>, body: Buffer | undefined): string {
    const redact = (s: string) => s.replace(/sk_(test|live)_[A-Za-z0-9_-]+/g, 'sk_$1_…').replace(/eyJ[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*){0,2}/g, '<jws>');
    const b =
      body === undefined
        ? '(no body)'
        : body.length > 300
          ? `${JSON.stringify(body.subarray(0, 200).toString('latin1'))}… (${body.length} bytes)`
          : JSON.stringify(body.toString('latin1'));
    const short = (v: string) => (v.length > 80 ? `${v.slice(0, 40)}…(${v.length} chars)` : v);
    const hs = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.map((x) => short(redact(x))) : short(redact(v))]));
    return `${r.method} ${short(redact(path))} [route ${r.route.method} ${r.route.path}] headers ${JSON.stringify(hs)} body ${redact(b)}`;
  }

  async function send(r: Req, i: number): Promise<void> {
    // The path, with its parameter.
    let path = r.route.path;
    if (r.param) {
      const seg = r.param.t === 'real' ? encodeURIComponent(pickId(w, r.param.kind, r.param.n)) : r.param.text;
      path = path.replace(/\{\w+\}/, seg);
    }
    const query = (r.query ?? '').replace(/%01(\w+)%3A(\d+)%01/g, (_m, k: string, n: string) => pickId(w, k as IdKind, Number(n)));
    path += query;
    // The body.
    let body: Buffer | undefined;
    switch (r.body.t) {
      case 'none':
        break;
      case 'json':
        body = Buffer.from(ser(r.body.j, w), 'utf8');
        break;
      case 'text':
        body = Buffer.from(r.body.text, 'utf8');
        break;
      case 'bytes':
        body = Buffer.from(r.body.hex, 'hex');
        break;
    }
    if (body && r.gzip) body = gzipSync(body);
    // The headers: the credential, a Content-Type when there is a body, and the generated ones (repeats become duplicates).
    const headers: Record<string, string | string[]> = {};
    const add = (k: string, v: string | string[]) => {
      const key = k.toLowerCase();
      const prev = headers[key];
      headers[key] = prev === undefined ? v : ([] as string[]).concat(prev, v);
    };
    const cred = credHeader(r.cred, i);
    if (cred !== undefined) add('Authorization', cred);
    const generatedType = r.headers.some(([k]) => k === 'Content-Type');
    if (body && !generatedType) add('Content-Type', r.route.kind === 'form' ? 'application/x-www-form-urlencoded' : 'application/json');
    for (const [k, v] of r.headers) add(k, v);
    if (r.proxy) {
      if (r.proxy.target) headers['x-proxy-target'] = `${w.target}/pay`;
      headers['x-card-token'] ??= pickId(w, 'card', r.proxy.card);
      headers['x-cvc-session-id'] ??= pickId(w, 'cvc', r.proxy.cvc);
    }

    // Mostly Content-Length; sometimes chunked (node:http chunks POST, PUT and PATCH bodies by itself; for other
    // methods it would send the bytes unframed, which is no HTTP request at all).
    if (body !== undefined && (i % 7 !== 0 || !['POST', 'PUT', 'PATCH'].includes(r.method))) headers['content-length'] = String(body.length);
    const what = describeReq(r, path, headers, body);
    let res: Answer;
    try {
      res = await rawSend(r.method, path, headers, body);
    } catch (e) {
      if (e instanceof ClientRefused) return;
      throw new Error(`seed ${SEED}, request ${i}: no answer (${(e as Error).message}): ${what}`);
    }
    stats.requests++;
    if (process.env.FUZZ_TRACE) console.log(i, res.status, res.body?.error?.message ?? '', what.slice(0, 300));
    const key = `${r.route.method} ${r.route.path}`;
    stats.byRoute.set(key, (stats.byRoute.get(key) ?? 0) + 1);
    stats.byStatus.set(res.status, (stats.byStatus.get(res.status) ?? 0) + 1);
    const rs = stats.byRouteStatus.get(key) ?? new Map<number, number>();
    rs.set(res.status, (rs.get(res.status) ?? 0) + 1);
    stats.byRouteStatus.set(key, rs);
    const fail = (why: string) =>
      `seed ${SEED} (FUZZ_SEED=${SEED}), request ${i}: ${why}\n  request: ${what}\n  answer: ${res.status} ${String(res.text ?? '').slice(0, 400)}`;

    assert.ok(res.status < 500, fail('a 5xx'));
    const text = res.text ?? '';
    assert.ok(!text.includes(w.m.testKey) && !text.includes(w.m.liveKey), fail('an API key in the answer'));
    // The test card numbers are public (the OpenAPI examples and the demo page list them); nothing else shows them.
    if (!['GET /openapi.json', 'GET /demo'].includes(`${r.method} ${r.route.path}`)) {
      assert.ok(!text.includes(TEST_CARD) && !text.includes('4000000000002024'), fail('a card number in the answer'));
    }
    if (res.status >= 400 && r.method !== 'HEAD') {
      assert.match(String(res.headers['content-type']), /^application\/json/, fail('an error that is not JSON'));
      const body = res.body as { error?: Record<string, unknown> };
      assert.deepEqual(Object.keys(body ?? {}), ['error'], fail('not the error shape'));
      assert.deepEqual(Object.keys(body.error ?? {}).sort(), ['code', 'message', 'requestId'], fail('not the error shape'));
      const code = String(body.error!.code);
      assert.ok(code in ERROR_TABLE, fail(`code ${code} is not in API.md`));
      assert.equal(ERROR_TABLE[code], res.status, fail(`code ${code} goes with ${ERROR_TABLE[code]}`));
      assert.equal(body.error!.requestId, res.headers['x-request-id'], fail('requestId differs from X-Request-Id'));
      assert.ok(!LONG_DIGITS.test(String(body.error!.message)), fail('a run of 12+ digits in the message'));
      assert.ok(!/\bat .+\.(ts|js):\d+/.test(text), fail('a stack trace'));
    }

    // Learn from the answer, so later requests reach further.
    if (res.status < 300 && res.body && typeof res.body === 'object') {
      const b = res.body as Record<string, any>;
      if (typeof b.token === 'string' && b.token.startsWith('eyJ')) {
        const sub = JSON.parse(Buffer.from(b.token.split('.')[1]!, 'base64url').toString()).sub as string;
        const old = w.current.get(sub);
        if (old) w.ids.staleToken.push(old);
        w.current.set(sub, b.token);
      }
      if (key === 'POST /Cards' && typeof b.token === 'string') {
        w.ids.card.push(b.token);
        if (b.cvcSession?.id) w.ids.cvc.push(b.cvcSession.id);
      }
      if (key === 'POST /CvvOperations' && typeof b.id === 'string') w.ids.session.push(b.id);
      if (key === 'POST /CustomForms' && typeof b.id === 'string') w.ids.form.push(b.id);
      if (key === 'POST /WebhookEndpoints' && typeof b.id === 'string') w.ids.hook.push(b.id);
      const tx = b.result?.transactionId;
      if (typeof tx === 'string') w.ids.tds.push(tx);
      const cvc = b.result?.cvcSession?.id;
      if (typeof cvc === 'string') w.ids.cvc.push(cvc);
    }
    // A session that can no longer run operations is replaced.
    if (
      r.route.auth === 'session' &&
      ['session_completed', 'session_canceled', 'session_expired', 'attempts_exhausted', 'cvv_blocked'].includes(res.body?.error?.code)
    ) {
      const sub = r.cred === 'token' ? [...w.current.keys()][i % w.current.size] : undefined;
      if (sub) w.current.delete(sub);
      await freshSession(i % 2 ? TEST_CARD : '4000000000002024');
    }
  }

  it(`${RUNS} requests: never a 5xx, every error in the API.md shape with a code of its table, the server keeps answering`, async () => {
    const t0 = performance.now();
    let i = 0;
    const failures: string[] = [];
    const details = await fc.check(
      fc.asyncProperty(
        reqArb(() => w),
        async (r) => {
          const n = i++;
          try {
            await send(r, n);
          } catch (e) {
            if (!KEEP_GOING) throw e;
            failures.push((e as Error).message);
          }
          if (n % 100 === 99) {
            const alive = await request(server).get('/healthz').timeout(5000);
            assert.equal(alive.status, 200, `seed ${SEED}: the server stopped answering after request ${n}`);
            if (w.current.size < 2) await freshSession();
          }
        },
      ),
      { seed: SEED, numRuns: RUNS, endOnFailure: !SHRINK },
    );
    // fast-check's own report would hold the generated value (kilobytes); the assertion names the seed and the
    // request as it went on the wire, shortened.
    if (details.failed) {
      const cause = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
      assert.fail(
        `${cause}\n  (fast-check: seed ${details.seed}, path "${details.counterexamplePath}"; replay with FUZZ_SEED=${SEED}${SHRINK ? '' : ', FUZZ_SHRINK=1 to shrink'})`,
      );
    }
    if (failures.length) assert.fail(`${failures.length} failing requests:\n${failures.join('\n')}`);
    const secs = (performance.now() - t0) / 1000;
    console.log(
      `fuzz: seed ${SEED}, ${stats.requests} requests over ${stats.byRoute.size} routes in ${secs.toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries([...stats.byStatus].sort((a, b) => a[0] - b[0])))}`,
    );
    if (process.env.FUZZ_TRACE) for (const [k, v] of stats.byRouteStatus) console.log(k, JSON.stringify(Object.fromEntries(v)));
    assert.ok(stats.requests >= RUNS * 0.95, `most generated requests were sent (${stats.requests} of ${RUNS})`);
    // Every route was exercised, and with the default count, many times each.
    for (const r of ROUTES) {
      const n = stats.byRoute.get(`${r.method} ${r.path}`) ?? 0;
      assert.ok(n >= Math.min(10, RUNS / ROUTES.length / 4), `${r.method} ${r.path} got only ${n} requests`);
    }
    // Handlers were reached: a good share of answers are successes, not only refusals.
    const ok = [...stats.byStatus].filter(([s]) => s < 300).reduce((a, [, n]) => a + n, 0);
    assert.ok(ok >= stats.requests * 0.1, `too few successes (${ok}): the fuzzer no longer reaches the handlers`);
    assert.ok(!h.logs.some((l) => l.includes('"msg":"request failed"')), 'a request failed on the server (see the error log lines)');
  });

  it('afterwards: a whole flow still succeeds and the SQLite file is intact', async () => {
    const m = await makeMerchant(h);
    const card = await request(server).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2031 });
    assert.equal(card.status, 201, card.text);
    const s = await request(server)
      .post('/CvvOperations')
      .set(auth(m.testKey))
      .send({ card: card.body.token, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 1999, currency: 'EUR' }, require3DS: true });
    assert.equal(s.status, 201, s.text);
    const c = await request(server).post('/CvvOperations/collectCvv').set(auth(s.body.token)).send({ cvv: '123' });
    assert.equal(c.status, 200, c.text);
    const t = await request(server).post('/CvvOperations/threeDS').set(auth(c.body.token)).send({});
    assert.equal(t.status, 200, t.text);
    assert.equal(t.body.result.status, 'Y');
    const p = await request(server).post('/CvvOperations/charge').set(auth(t.body.token)).send({});
    assert.equal(p.status, 200, p.text);
    assert.equal(p.body.result.status, 'approved');
    const v = await request(server).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: p.body.token });
    assert.equal(v.status, 200);
    assert.equal(v.body.valid, true);
    assert.equal(v.body.current, true);
    assert.equal(v.body.session.status, 'completed');
    if (!ON_PG) {
      const db = new Database(h.dbPath, { readonly: true });
      try {
        assert.deepEqual(db.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
      } finally {
        db.close();
      }
    }
    const proto: Record<string, unknown> = {};
    assert.equal(proto.polluted, undefined, 'Object.prototype is not polluted');
  });
});
