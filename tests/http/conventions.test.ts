import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import request from 'supertest';
import type { Database } from '../../server/store/schema.js';
import { auth, type Harness, makeCard, makeHarness, makeMerchant, makeSession, TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { ERROR_TABLE } from '../helpers/api-errors.js';

const LIMIT = 16384;

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Starts the app on an ephemeral loopback port (for requests supertest cannot make: chunked bodies, raw header bytes). */
async function listen(h: Harness): Promise<{ port: number; close: () => Promise<void> }> {
  const server: Server = await new Promise((resolve) => {
    const s = h.app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends exactly these bytes on a fresh connection and parses the (Content-Length framed) response. */
function rawRequest(port: number, raw: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect(port, '127.0.0.1', () => sock.write(raw));
    const finish = () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const at = text.indexOf('\r\n\r\n');
      if (at < 0) return reject(new Error(`no response: ${JSON.stringify(text.slice(0, 200))}`));
      const [statusLine, ...lines] = text.slice(0, at).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      let body = text.slice(at + 4);
      if (headers['content-length'] !== undefined) body = body.slice(0, Number(headers['content-length']));
      resolve({ status: Number(statusLine!.split(' ')[1]), headers, body: Buffer.from(body, 'latin1').toString('utf8') });
    };
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', finish);
    sock.on('error', (e) => (chunks.length ? finish() : reject(e)));
  });
}

/** A request through node:http with the body written in several chunks and no Content-Length (Transfer-Encoding: chunked). */
function chunkedRequest(port: number, path: string, headers: Record<string, string>, chunks: string[]): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'POST', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: flat(res.headers), body: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (e) => reject(e));
    let i = 0;
    const writeNext = () => {
      if (i >= chunks.length) return void req.end();
      const ok = req.write(chunks[i++]!);
      if (ok) setImmediate(writeNext);
      else req.once('drain', writeNext);
    };
    writeNext();
  });
}

const flat = (h: IncomingHttpHeaders): Record<string, string> =>
  Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]));

/** Asserts the API.md error shape, with requestId equal to the X-Request-Id header. */
function assertError(res: { status: number; body: any; headers: Record<string, string> }, status: number, code: string, what = ''): void {
  assert.equal(res.status, status, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, code, `${what}: ${JSON.stringify(res.body)}`);
  assert.deepEqual(Object.keys(res.body).sort(), ['error'], what);
  assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'message', 'requestId'], what);
  assert.equal(typeof res.body.error.message, 'string');
  assert.ok(res.body.error.message.length > 0);
  assert.equal(res.body.error.requestId, res.headers['x-request-id'], `${what}: requestId equals the header`);
  if (status === 401) {
    // RFC 6750: the scheme, and for a credential sent and refused, error="invalid_token".
    const want = code === 'unauthenticated' ? 'Bearer realm="cvvops"' : 'Bearer realm="cvvops", error="invalid_token"';
    assert.equal(res.headers['www-authenticate'], want, `${what}: WWW-Authenticate`);
  } else assert.equal(res.headers['www-authenticate'], undefined, `${what}: no WWW-Authenticate on a ${status}`);
}

/** A seeded PRNG (mulberry32), so a failing fuzz case can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('HTTP conventions (API.md section 2, SECURITY.md "HTTP")', () => {
  let h: Harness;
  let m: TestMerchant;
  let cardToken: string;
  let session: { id: string; token: string };
  /** Every secret this file sends: none may ever appear in /metrics or in the logs. */
  const secrets: string[] = [];

  before(async () => {
    h = await makeHarness();
    m = await makeMerchant(h);
    cardToken = await makeCard(h, m.testKey);
    session = await makeSession(h, m.testKey, { card: cardToken });
    secrets.push(m.testKey, m.liveKey, session.token, TEST_CARD);
  });
  after(() => h.close());

  describe('X-Request-Id', () => {
    it("echoes the caller's value when it is 1-64 characters of [A-Za-z0-9._-]", async () => {
      for (const id of ['a', 'abc-DEF_123.x', 'A'.repeat(64), '...', '0', 'req_caller-chosen']) {
        const ok = await request(h.app).get('/healthz').set('X-Request-Id', id);
        assert.equal(ok.status, 200);
        assert.equal(ok.headers['x-request-id'], id);
        const err = await request(h.app).get('/Cards/tok_nope').set('X-Request-Id', id);
        assertError(err, 401, 'unauthenticated', id);
        assert.equal(err.body.error.requestId, id);
      }
    });

    it('replaces any other value with a fresh req_ id, and the error body carries the same id', async () => {
      const bad = ['A'.repeat(65), 'has space', 'tab\there', 'semi;colon', 'slash/x', 'quote"x', '<script>', 'caf\u00e9', 'a,b'];
      const seen = new Set<string>();
      for (const id of bad) {
        const res = await request(h.app).get('/Cards/tok_nope').set('X-Request-Id', id);
        const got = res.headers['x-request-id'] ?? '';
        assert.match(got, /^req_[A-Za-z0-9_-]{22,}$/, `${JSON.stringify(id)} → ${got}`);
        assert.notEqual(got, id);
        assertError(res, 401, 'unauthenticated', id);
        seen.add(got);
      }
      assert.equal(seen.size, bad.length, 'each request gets a new id');
      // No header at all, and an empty header: a new id too.
      const none = await request(h.app).get('/healthz');
      assert.match(none.headers['x-request-id'] ?? '', /^req_[A-Za-z0-9_-]{22,}$/);
      const empty = await request(h.app).get('/healthz').set('X-Request-Id', '');
      assert.match(empty.headers['x-request-id'] ?? '', /^req_[A-Za-z0-9_-]{22,}$/);
    });

    it('replaces non-ASCII (UTF-8 bytes on the wire) and over-long values', async () => {
      const srv = await listen(h);
      let reached = 0;
      try {
        for (const id of ['\u202ereq-evil', 'r\u00e9q-\u4e2d\u6587', '\ud83d\udca5boom', 'x'.repeat(65), 'x'.repeat(1000)]) {
          const raw = Buffer.concat([
            Buffer.from('GET /Cards/tok_nope HTTP/1.1\r\nHost: cvv.test\r\nConnection: close\r\nX-Request-Id: '),
            Buffer.from(id, 'utf8'),
            Buffer.from('\r\n\r\n'),
          ]);
          const res = await rawRequest(srv.port, raw);
          if (res.status === 400 && !res.body.startsWith('{')) continue; // refused by the HTTP parser itself: also fine
          reached++;
          const got = res.headers['x-request-id']!;
          assert.match(got, /^req_[A-Za-z0-9_-]{22,}$/, `${JSON.stringify(id)} → ${got}`);
          const body = JSON.parse(res.body);
          assertError({ status: res.status, body, headers: res.headers }, 401, 'unauthenticated', id);
        }
        assert.ok(reached >= 3, `the app saw most of these requests (${reached})`);
      } finally {
        await srv.close();
      }
    });
  });

  describe('response headers', () => {
    it('every API response, 2xx and 4xx, carries Cache-Control: no-store, frame-ancestors none and X-Frame-Options DENY', async () => {
      const card2 = await makeCard(h, m.testKey);
      const cases: Array<[string, () => request.Test]> = [
        ['GET /healthz', () => request(h.app).get('/healthz')],
        ['GET /readyz', () => request(h.app).get('/readyz')],
        ['GET /metrics', () => request(h.app).get('/metrics')],
        ['GET /openapi.json', () => request(h.app).get('/openapi.json')],
        ['GET /.well-known/jwks.json', () => request(h.app).get('/.well-known/jwks.json')],
        ['POST /Cards 201', () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030 })],
        ['GET /Cards/{token} 200', () => request(h.app).get(`/Cards/${cardToken}`).set(auth(m.testKey))],
        ['GET /CvvOperations/{id} 200', () => request(h.app).get(`/CvvOperations/${session.id}`).set(auth(m.testKey))],
        ['POST validateToken 200', () => request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: session.token })],
        ['DELETE /Cards/{token} 204', () => request(h.app).delete(`/Cards/${card2}`).set(auth(m.testKey))],
        ['400', () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: '1' })],
        ['401', () => request(h.app).get('/Cards/tok_x')],
        ['404 path', () => request(h.app).get('/nope')],
        ['404 object', () => request(h.app).get('/Cards/tok_nope').set(auth(m.testKey))],
        ['405', () => request(h.app).put('/CvvOperations').set(auth(m.testKey))],
        [
          '413',
          () =>
            request(h.app)
              .post('/Cards')
              .set(auth(m.testKey))
              .type('application/json')
              .send(`{"number":"${'4'.repeat(LIMIT)}"}`),
        ],
        ['415', () => request(h.app).post('/Cards').set(auth(m.testKey)).type('text/plain').send('hello')],
        ['session-token 401', () => request(h.app).post('/CvvOperations/collectCvv').set(auth('a.b.c')).send({ cvv: '123' })],
      ];
      for (const [what, make] of cases) {
        const res = await make();
        assert.ok(res.status < 500, `${what}: ${res.status}`);
        assert.equal(res.headers['cache-control'], 'no-store', `${what}: Cache-Control`);
        const csp = res.headers['content-security-policy'] ?? '';
        assert.match(csp, /(^|;)\s*frame-ancestors 'none'\s*(;|$)/, `${what}: CSP ${csp}`);
        assert.equal(res.headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
        assert.equal(res.headers['x-content-type-options'], 'nosniff', `${what}: helmet`);
        assert.equal(res.headers['x-powered-by'], undefined, `${what}: no X-Powered-By`);
        assert.ok(res.headers['x-request-id'], `${what}: X-Request-Id`);
      }
    });

    it('merchant endpoints send no CORS headers, even to an origin some merchant allows', async () => {
      const origin = 'https://shop.example';
      // Control: the operation endpoints do answer this origin's preflight, so the check below can see CORS headers.
      const pre = await request(h.app).options('/CvvOperations/collectCvv').set('Origin', origin).set('Access-Control-Request-Method', 'POST');
      assert.equal(pre.headers['access-control-allow-origin'], origin);

      const cases: Array<[string, () => request.Test]> = [
        ['POST /Cards', () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030 })],
        ['GET /Cards/{token}', () => request(h.app).get(`/Cards/${cardToken}`).set(auth(m.testKey))],
        [
          'POST /CvvOperations',
          () =>
            request(h.app)
              .post('/CvvOperations')
              .set(auth(m.testKey))
              .send({ card: cardToken, operations: ['collectCvv'] }),
        ],
        ['GET /CvvOperations/{id}', () => request(h.app).get(`/CvvOperations/${session.id}`).set(auth(m.testKey))],
        ['POST validateToken', () => request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: session.token })],
        ['DELETE /CvcSessions/{id}', () => request(h.app).delete('/CvcSessions/cvc_nope').set(auth(m.testKey))],
        ['401 on /Cards', () => request(h.app).get(`/Cards/${cardToken}`)],
        [
          'OPTIONS /Cards',
          () => request(h.app).options('/Cards').set('Access-Control-Request-Method', 'POST').set('Access-Control-Request-Headers', 'authorization'),
        ],
        ['OPTIONS /CvvOperations', () => request(h.app).options('/CvvOperations').set('Access-Control-Request-Method', 'POST')],
        ['OPTIONS /CvvOperations/{id}', () => request(h.app).options(`/CvvOperations/${session.id}`).set('Access-Control-Request-Method', 'GET')],
      ];
      for (const [what, make] of cases) {
        const res = await make().set('Origin', origin);
        assert.ok(res.status < 500, `${what}: ${res.status}`);
        const cors = Object.keys(res.headers).filter((k) => k.startsWith('access-control-'));
        assert.deepEqual(cors, [], `${what}: ${JSON.stringify(cors)}`);
      }
    });
  });

  describe('request bodies', () => {
    it('413 payload_too_large for a body over 16384 bytes with an honest Content-Length; exactly 16384 is accepted', async () => {
      const make = (size: number) => {
        const head = '{"token":"';
        const tail = '"}';
        return head + 'x'.repeat(size - head.length - tail.length) + tail;
      };
      const exact = make(LIMIT);
      assert.equal(Buffer.byteLength(exact), LIMIT);
      const ok = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).type('application/json').send(exact);
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.equal(ok.body.valid, false);

      const over = make(LIMIT + 1);
      const res = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).type('application/json').send(over);
      assertError(res, 413, 'payload_too_large', 'one byte over');

      // Multi-byte characters count as bytes, not characters.
      const utf8 = `{"token":"${'\u00e9'.repeat(LIMIT / 2)}"}`;
      assert.ok(utf8.length < LIMIT && Buffer.byteLength(utf8) > LIMIT);
      const res2 = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).type('application/json').send(utf8);
      assertError(res2, 413, 'payload_too_large', 'UTF-8 bytes');

      const big = await request(h.app)
        .post('/Cards')
        .set(auth(m.testKey))
        .type('application/json')
        .send(`{"holderName":"${'a'.repeat(100_000)}"}`);
      assertError(big, 413, 'payload_too_large', '100 kB');
    });

    it('413 payload_too_large for a chunked body over the limit (no Content-Length)', async () => {
      const srv = await listen(h);
      try {
        const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${m.testKey}` };
        // Control: a small chunked body is read and processed.
        const small = await chunkedRequest(srv.port, '/CvvOperations/validateToken', headers, ['{"tok', 'en":"', 'abc"}']);
        assert.equal(small.status, 200, small.body);
        assert.equal(JSON.parse(small.body).valid, false);

        const chunks = ['{"token":"', ...Array.from({ length: 40 }, () => 'x'.repeat(1000)), '"}'];
        const res = await chunkedRequest(srv.port, '/CvvOperations/validateToken', headers, chunks).catch((e: Error) => e);
        assert.ok(!(res instanceof Error), `the server answers before dropping the connection: ${res instanceof Error ? res.message : ''}`);
        assertError({ ...res, body: JSON.parse(res.body) }, 413, 'payload_too_large', 'chunked');
        assert.equal(res.headers['cache-control'], 'no-store');
      } finally {
        await srv.close();
      }
    });

    it('415 unsupported_media_type for anything but application/json in UTF-8', async () => {
      const before = await countCards(h);
      const json = JSON.stringify({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
      for (const type of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/json; charset=latin1',
        'application/json; charset=iso-8859-1',
        'application/json; charset=utf-16',
        'multipart/form-data; boundary=x',
        'application/xml',
        'text/json',
        'application/jsonx',
        'application/json-patch+json',
      ]) {
        const res = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Content-Type', type).send(json);
        assertError(res, 415, 'unsupported_media_type', type);
      }
      const form = await request(h.app).post('/Cards').set(auth(m.testKey)).type('form').send({ number: TEST_CARD, expMonth: '12', expYear: '2030' });
      assertError(form, 415, 'unsupported_media_type', 'form');
      assert.equal(await countCards(h), before, 'nothing was created');
      // Control: JSON in UTF-8 (with or without the charset) is accepted.
      for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8']) {
        const ok = await request(h.app).post('/Cards').set(auth(m.testKey)).set('Content-Type', type).send(json);
        assert.equal(ok.status, 201, `${type}: ${JSON.stringify(ok.body)}`);
      }
    });

    it('a body with several problems gets one 400 that names every one of them, in plain words', async () => {
      const res = await request(h.app)
        .post('/CvvOperations')
        .set(auth(m.testKey))
        .send({ operations: ['nope'], maxAttempts: 0, ttlSeconds: 'x', bogus: 1 });
      assertError(res, 400, 'invalid_card', 'several problems');
      const message = res.body.error.message as string;
      for (const part of [
        'card is required',
        'operations.0 must be one of "collectCvv", "threeDS", "charge"',
        'maxAttempts must be at least 1',
        'ttlSeconds must be a number',
        'unknown field: "bogus"',
      ]) {
        assert.ok(message.includes(part), `${JSON.stringify(part)} in ${message}`);
      }
      assert.doesNotMatch(message, /Invalid input|expected .*, received/, "no validator's wording");
    });

    it('400 invalid_request for malformed JSON', async () => {
      for (const text of ['{', '{"number": ', "{'number': '4000'}", '{"a":1} x', '{"a":1,}', 'undefined', '{"a":01}', '\u0000', '{"a":"\\x41"}']) {
        const res = await request(h.app).post('/Cards').set(auth(m.testKey)).type('application/json').send(text);
        assertError(res, 400, 'invalid_request', JSON.stringify(text));
        assert.ok(!res.text.includes('SyntaxError') && !res.text.includes(' at '), 'no parser detail or stack');
      }
    });

    it('400 for a JSON body that is not an object: array, null, string, number, boolean', async () => {
      const paths: Array<[string, string]> = [
        ['/Cards', m.testKey],
        ['/CvvOperations', m.testKey],
        ['/CvvOperations/validateToken', m.testKey],
        ['/CvvOperations/collectCvv', session.token],
      ];
      for (const [path, cred] of paths) {
        for (const text of ['[]', `[${JSON.stringify({ number: TEST_CARD, expMonth: 12, expYear: 2030 })}]`, 'null', '"a string"', '42', 'true']) {
          const res = await request(h.app).post(path).set(auth(cred)).type('application/json').send(text);
          assert.equal(res.status, 400, `${path} ${text}: ${res.status} ${JSON.stringify(res.body)}`);
          assert.ok(['invalid_request', 'invalid_cvv'].includes(res.body.error.code), `${path} ${text}: ${res.body.error.code}`);
          assert.equal(res.body.error.requestId, res.headers['x-request-id']);
        }
      }
    });

    it('refuses __proto__, constructor and prototype keys (400) and Object.prototype stays clean', async () => {
      const texts = [
        `{"__proto__": {"polluted": "yes"}, "number": "${TEST_CARD}", "expMonth": 12, "expYear": 2030}`,
        `{"number": "${TEST_CARD}", "expMonth": 12, "expYear": 2030, "constructor": {"prototype": {"polluted": "yes"}}}`,
        `{"number": "${TEST_CARD}", "expMonth": 12, "expYear": 2030, "prototype": {"polluted": "yes"}}`,
        '{"__proto__": {"isAdmin": true, "polluted": "yes"}}',
      ];
      const before = await countCards(h);
      for (const text of texts) {
        const res = await request(h.app).post('/Cards').set(auth(m.testKey)).type('application/json').send(text);
        assertError(res, 400, 'invalid_request', text);
      }
      for (const text of [
        `{"card": "${cardToken}", "operations": ["collectCvv"], "metadata": {"__proto__": {"polluted": "yes"}}}`,
        `{"card": "${cardToken}", "operations": ["collectCvv"], "metadata": {"constructor": "x"}}`,
        `{"card": "${cardToken}", "operations": ["collectCvv"], "amount": {"__proto__": {"value": 5}}}`,
      ]) {
        const res = await request(h.app).post('/CvvOperations').set(auth(m.testKey)).type('application/json').send(text);
        assertError(res, 400, 'invalid_request', text);
      }
      const cvv = await request(h.app)
        .post('/CvvOperations/collectCvv')
        .set(auth(session.token))
        .type('application/json')
        .send('{"__proto__": {"cvv": "123"}}');
      assert.equal(cvv.status, 400);
      assert.equal(await countCards(h), before, 'no card was created');
      const probe: Record<string, unknown> = {};
      assert.equal(probe.polluted, undefined, 'Object.prototype is not polluted');
      assert.equal(probe.isAdmin, undefined);
      assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), false);
      assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'cvv'), false);
    });

    /** POSTs a text field holding `v` (JSON escapes, written raw) to /Cards (holderName) and /CvvOperations (reference). */
    const postText = async (v: string) =>
      [
        [
          'holderName',
          await request(h.app)
            .post('/Cards')
            .set(auth(m.testKey))
            .type('application/json')
            .send(`{"number": "${TEST_CARD}", "expMonth": 12, "expYear": 2030, "holderName": "${v}"}`),
        ],
        [
          'reference',
          await request(h.app)
            .post('/CvvOperations')
            .set(auth(m.testKey))
            .type('application/json')
            .send(`{"card": "${cardToken}", "operations": ["collectCvv"], "reference": "${v}"}`),
        ],
      ] as const;

    it('odd Unicode in text fields: lone surrogates, NUL and C0/C1 controls are 400, never 500', async () => {
      // Raw JSON text, so the escapes reach the server exactly as written.
      for (const v of ['\\ud800', 'a\\udfffb', '\\udc00\\ud800', 'a\\u0000b', '\\u0000', 'a\\u0007b', 'a\\u001bb', 'a\\u0085b', 'a\\u2028b']) {
        for (const [field, res] of await postText(v)) assertError(res, 400, 'invalid_request', `${field} ${v}`);
      }
      // A lone surrogate in metadata is refused too (the schema promises well-formed Unicode).
      const meta = await request(h.app)
        .post('/CvvOperations')
        .set(auth(m.testKey))
        .type('application/json')
        .send(`{"card": "${cardToken}", "operations": ["collectCvv"], "metadata": {"k": "\\ud800"}}`);
      assertError(meta, 400, 'invalid_request', 'metadata lone surrogate');
      // Control: ordinary non-ASCII text is fine.
      for (const [field, res] of await postText('Zo\\u00eb \\u00c5ngstr\\u00f6m \\u674e \\ud83d\\ude00')) {
        assert.ok(res.status === 201, `${field}: ${res.status} ${JSON.stringify(res.body)}`);
      }
    });

    it('odd Unicode in text fields: bidi overrides and isolates (RTL override) are 400', async () => {
      // U+202E and friends are control characters too (Unicode "bidirectional controls"): in a
      // dashboard or a log viewer they make "abc\u202edcba" read differently than it is (Trojan Source).
      for (const v of ['abc\\u202edcba', '\\u202e', 'x\\u202ay\\u202c', 'x\\u2066y\\u2069', 'x\\u2067y', 'x\\u200fy', 'x\\u061cy']) {
        for (const [field, res] of await postText(v)) assertError(res, 400, 'invalid_request', `${field} ${v}`);
      }
    });

    it('odd Unicode anywhere else (ids, metadata, the CVV, the number, the token) is a 4xx from the table, never a 5xx', async () => {
      const odd = [
        '\\ud800',
        'a\\udfffb',
        '\\udc00\\ud800',
        'a\\u0000b',
        '\\u0000',
        'abc\\u202edcba',
        '\\u202e',
        'x\\u2066y\\u2069',
        'a\\u0007b',
        '\\ufeff',
        '\\uffff',
      ];
      for (const v of odd) {
        const bodies: Array<[string, string, string]> = [
          ['/Cards', m.testKey, `{"number": "${v}", "expMonth": 12, "expYear": 2030}`],
          ['/Cards', m.testKey, `{"number": "${TEST_CARD}${v}", "expMonth": 12, "expYear": 2030}`],
          ['/Cards', m.testKey, `{"number": "${TEST_CARD}", "expMonth": 12, "expYear": 2030, "cvv": "${v}"}`],
          ['/Cards', m.testKey, `{"number": "${TEST_CARD}", "expMonth": 12, "expYear": 2030, "cvv": "12${v}"}`],
          ['/CvvOperations', m.testKey, `{"card": "tok_${v}", "operations": ["collectCvv"]}`],
          ['/CvvOperations', m.testKey, `{"card": "${cardToken}", "operations": ["collectCvv"], "metadata": {"k": "${v}"}}`],
          ['/CvvOperations', m.testKey, `{"card": "${cardToken}", "operations": ["collectCvv"], "metadata": {"${v}": "x"}}`],
          ['/CvvOperations', m.testKey, `{"card": "${cardToken}", "operations": ["${v}"]}`],
          ['/CvvOperations', m.testKey, `{"card": "${cardToken}", "operations": ["collectCvv"], "returnUrl": "https://shop.example/${v}"}`],
          ['/CvvOperations/validateToken', m.testKey, `{"token": "${v}"}`],
          ['/CvvOperations/collectCvv', session.token, `{"cvv": "${v}"}`],
          ['/CvvOperations/collectCvv', session.token, `{"cvv": "12${v}"}`],
        ];
        for (const [path, cred, text] of bodies) {
          const res = await request(h.app).post(path).set(auth(cred)).type('application/json').send(text);
          assert.ok(res.status < 500, `${path} ${text}: ${res.status}`);
          if (res.status >= 400) {
            assert.equal(ERROR_TABLE[res.body.error.code], res.status, `${path} ${text}: ${JSON.stringify(res.body)}`);
            assert.equal(res.body.error.requestId, res.headers['x-request-id']);
          }
          if (path === '/CvvOperations/collectCvv') assert.equal(res.status, 400, `${text}: only three ASCII digits are a CVV`);
        }
      }
    });
  });

  describe('routing', () => {
    it('unknown paths are 404 not_found in the error shape', async () => {
      const cases: Array<() => request.Test> = [
        () => request(h.app).get('/nope'),
        () => request(h.app).get('/cards').set(auth(m.testKey)),
        () => request(h.app).get('/Cards/tok_x/extra/segments').set(auth(m.testKey)),
        () => request(h.app).post('/CvvOperations/foo/bar').set(auth(m.testKey)).send({}),
        () => request(h.app).delete('/').set(auth(m.testKey)),
        () => request(h.app).get('/.env'),
        () => request(h.app).get('/4242424242424242'),
      ];
      for (const [i, make] of cases.entries()) {
        const res = await make();
        assertError(res, 404, 'not_found', `case ${i}`);
        assert.match(res.headers['content-type'] ?? '', /^application\/json/);
      }
    });

    it('a known path with another method is 405 method_not_allowed with an Allow header', async () => {
      const cases: Array<[string, () => request.Test, string[]]> = [
        ['PUT /CvvOperations', () => request(h.app).put('/CvvOperations').set(auth(m.testKey)).send({}), ['POST']],
        ['DELETE /CvvOperations', () => request(h.app).delete('/CvvOperations').set(auth(m.testKey)), ['GET', 'POST']],
        ['GET /CvvOperations/validateToken', () => request(h.app).get('/CvvOperations/validateToken').set(auth(m.testKey)), ['POST']],
        ['DELETE /Cards', () => request(h.app).delete('/Cards').set(auth(m.testKey)), ['POST']],
        ['GET /Cards', () => request(h.app).get('/Cards').set(auth(m.testKey)), ['POST']],
        ['PATCH /Cards/{token}', () => request(h.app).patch(`/Cards/${cardToken}`).set(auth(m.testKey)).send({}), ['GET', 'DELETE']],
        ['POST /Cards/{token}', () => request(h.app).post(`/Cards/${cardToken}`).set(auth(m.testKey)).send({}), ['GET', 'DELETE']],
        ['PUT /CvvOperations/{id}', () => request(h.app).put(`/CvvOperations/${session.id}`).set(auth(m.testKey)).send({}), ['GET']],
        ['GET /CvvOperations/{id}/token', () => request(h.app).get(`/CvvOperations/${session.id}/token`).set(auth(m.testKey)), ['POST']],
        ['GET /CvvOperations/{id}/cancel', () => request(h.app).get(`/CvvOperations/${session.id}/cancel`).set(auth(m.testKey)), ['POST']],
        ['POST /CvvOperations/{id}/cvv', () => request(h.app).post(`/CvvOperations/${session.id}/cvv`).set(auth(m.testKey)).send({}), ['DELETE']],
        ['GET /CvvOperations/collectCvv', () => request(h.app).get('/CvvOperations/collectCvv').set(auth(session.token)), ['POST']],
        ['GET /CvcSessions/{id}', () => request(h.app).get('/CvcSessions/cvc_x').set(auth(m.testKey)), ['DELETE']],
      ];
      for (const [what, make, allowed] of cases) {
        const res = await make();
        assertError(res, 405, 'method_not_allowed', what);
        const allow = (res.headers.allow ?? '')
          .split(',')
          .map((s: string) => s.trim())
          .filter(Boolean);
        for (const a of allowed) assert.ok(allow.includes(a), `${what}: Allow ${res.headers.allow} lacks ${a}`);
        assert.ok(!allow.includes(what.split(' ')[0]!), `${what}: Allow must not list the refused method`);
      }
      // The session is untouched by the refused calls.
      const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: session.token });
      assert.equal(v.body.current, true);
    });
  });

  describe('credentials', () => {
    it('an API key in the query string is refused (401) and never logged', async () => {
      const card = await makeCard(h, m.testKey);
      const enc = encodeURIComponent;
      const urls = [
        `/Cards/${card}?api_key=${m.testKey}`,
        `/Cards/${card}?apiKey=${m.testKey}`,
        `/Cards/${card}?key=${m.liveKey}`,
        `/Cards/${card}?x=1&access_token=${m.testKey}`,
        `/Cards/${card}?k=${enc(m.testKey)}`,
        `/Cards/${card}?${m.testKey}`,
        `/CvvOperations/${session.id}?api_key=${m.testKey}`,
      ];
      for (const url of urls) {
        const noHeader = await request(h.app).get(url);
        assert.equal(noHeader.status, 401, `${url} (no header): ${noHeader.status}`);
        // Even with a good Authorization header the request is refused: the key has been exposed.
        const withHeader = await request(h.app).get(url).set(auth(m.testKey));
        assert.equal(withHeader.status, 401, `${url} (with header): ${withHeader.status} ${JSON.stringify(withHeader.body)}`);
        assert.ok(['invalid_api_key', 'unauthenticated'].includes(withHeader.body.error.code));
        assert.equal(withHeader.body.error.requestId, withHeader.headers['x-request-id']);
        assert.ok(!withHeader.text.includes(m.testKey) && !withHeader.text.includes(m.liveKey), 'not echoed');
      }
      const post = await request(h.app).post(`/Cards?api_key=${m.testKey}`).set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
      assert.equal(post.status, 401);
      const logs = h.logs.join('');
      assert.ok(logs.length > 0, 'the logs were captured');
      assert.ok(!logs.includes(m.testKey), 'the test key is not in the logs');
      assert.ok(!logs.includes(m.liveKey), 'the live key is not in the logs');
      assert.ok(!logs.includes(m.testKey.slice(8, 30)), 'no part of the key is in the logs');
    });

    it('an API key anywhere in the query string is refused, not only right after "=" (e.g. authorization=Bearer%20sk_…)', async () => {
      const card = await makeCard(h, m.testKey);
      const enc = encodeURIComponent;
      for (const q of [`authorization=${enc(`Bearer ${m.testKey}`)}`, `auth=Bearer+${m.testKey}`, `creds=x:${m.testKey}`, `q=%20${m.testKey}`]) {
        const res = await request(h.app).get(`/Cards/${card}?${q}`).set(auth(m.testKey));
        assert.equal(res.status, 401, `?${q.replace(m.testKey, 'sk_test_…')}: ${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'invalid_api_key');
      }
      assert.ok(!h.logs.join('').includes(m.testKey));
    });

    it('missing or malformed Authorization is 401 unauthenticated', async () => {
      const cases: Array<[string, Record<string, string>]> = [
        ['none', {}],
        ['empty', { Authorization: '' }],
        ['scheme only', { Authorization: 'Bearer' }],
        ['Basic', { Authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` }],
        ['no scheme', { Authorization: m.testKey }],
      ];
      for (const [what, headers] of cases) {
        for (const make of [
          () => request(h.app).get(`/Cards/${cardToken}`),
          () =>
            request(h.app)
              .post('/CvvOperations')
              .send({ card: cardToken, operations: ['collectCvv'] }),
        ]) {
          const res = await make().set(headers);
          assertError(res, 401, 'unauthenticated', what);
          assert.ok(!res.text.includes(m.testKey));
        }
      }
    });

    it('invalid, unknown, mode-swapped and revoked API keys are 401 invalid_api_key', async () => {
      const m2 = await makeMerchant(h);
      const card2 = await makeCard(h, m2.testKey);
      // Control: the key works before it is revoked.
      assert.equal((await request(h.app).get(`/Cards/${card2}`).set(auth(m2.testKey))).status, 200);
      const db = (h.deps.store as unknown as { db: Kysely<Database> }).db;
      await db.updateTable('api_keys').set({ revoked_at: h.clock.now() }).where('merchant_id', '=', m2.id).where('mode', '=', 'test').execute();

      const keys: Array<[string, string]> = [
        ['too short', 'sk_test_abc'],
        ['unknown, well-formed', `sk_test_${randomBytes(32).toString('base64url')}`],
        ['unknown live', `sk_live_${randomBytes(32).toString('base64url')}`],
        ['mode swapped', `sk_live_${m.testKey.slice('sk_test_'.length)}`],
        ['one character changed', m.testKey.slice(0, -1) + (m.testKey.endsWith('A') ? 'B' : 'A')],
        ['one character added', `${m.testKey}x`],
        ['upper-cased prefix', `SK_TEST_${m.testKey.slice(8)}`],
        ['publishable-looking', `pk_test_${randomBytes(32).toString('base64url')}`],
        ['revoked', m2.testKey],
        ['garbage', 'abc'],
      ];
      for (const [what, key] of keys) {
        const res = await request(h.app).get(`/Cards/${cardToken}`).set(auth(key));
        assertError(res, 401, 'invalid_api_key', what);
        assert.ok(!res.text.includes(key), `${what}: the key is not echoed`);
        const post = await request(h.app).post('/Cards').set(auth(key)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
        assertError(post, 401, 'invalid_api_key', `${what} (POST)`);
      }
      // The revoked key's merchant still has a working live key.
      assert.equal((await request(h.app).get(`/Cards/${card2}`).set(auth(m2.liveKey))).status, 404);
      // A session token on a merchant endpoint is the wrong kind of credential; an API key on an operation too.
      assertError(await request(h.app).get(`/Cards/${cardToken}`).set(auth(session.token)), 401, 'wrong_credential_type', 'JWS on merchant endpoint');
      assertError(
        await request(h.app).post('/CvvOperations/collectCvv').set(auth(m.testKey)).send({ cvv: '123' }),
        401,
        'wrong_credential_type',
        'key on operation',
      );
      secrets.push(m2.testKey, m2.liveKey);
    });
  });

  describe('public endpoints', () => {
    it('every file of the SDK and the hosted assets is served with its own content type (the .d.ts too)', async () => {
      const want: Array<[string, RegExp]> = [
        ['/sdk/v1/cvvops.js', /^(application|text)\/javascript; charset=utf-8$/],
        ['/sdk/v1/cvvops.mjs', /^(application|text)\/javascript; charset=utf-8$/],
        ['/sdk/v1/cvvops.d.ts', /^application\/typescript; charset=utf-8$/],
        ['/assets/form.js', /^(application|text)\/javascript; charset=utf-8$/],
        ['/assets/form.css', /^text\/css; charset=utf-8$/],
      ];
      for (const [path, type] of want) {
        const res = await request(h.app).get(path);
        assert.equal(res.status, 200, path);
        assert.match(res.headers['content-type'] ?? '', type, `${path}: ${res.headers['content-type']}`);
      }
    });

    it('GET /healthz is 200 and GET /readyz is 200 with storage and keys ok', async () => {
      const hz = await request(h.app).get('/healthz');
      assert.equal(hz.status, 200);
      assert.equal(hz.body.status, 'ok');
      const rz = await request(h.app).get('/readyz');
      assert.equal(rz.status, 200);
      assert.equal(rz.body.status, 'ready');
      assert.equal(rz.body.checks.storage, 'ok');
      assert.equal(rz.body.checks.keys, 'ok');
    });

    it('GET /openapi.json is an OpenAPI 3.1 document listing every path the app serves', async () => {
      const res = await request(h.app).get('/openapi.json');
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'] ?? '', /^application\/json/);
      const doc = res.body;
      assert.match(doc.openapi, /^3\.1\.\d+$/);
      assert.equal(typeof doc.info?.title, 'string');
      assert.equal(typeof doc.info?.version, 'string');
      const expected: Record<string, string[]> = {
        '/CvvOperations': ['post'],
        '/CvvOperations/{id}': ['get'],
        '/CvvOperations/validateToken': ['post'],
        '/CvvOperations/{id}/token': ['post'],
        '/CvvOperations/{id}/cancel': ['post'],
        '/CvvOperations/{id}/cvv': ['delete'],
        '/CvvOperations/collectCvv': ['post'],
        '/Cards': ['post'],
        '/Cards/{token}': ['get', 'delete'],
        '/CvcSessions/{id}': ['delete'],
      };
      for (const [path, methods] of Object.entries(expected)) {
        assert.ok(doc.paths?.[path], `the document lists ${path}`);
        for (const method of methods) assert.ok(doc.paths[path][method], `the document lists ${method.toUpperCase()} ${path}`);
      }
      for (const [path, method] of [
        ['/Cards', 'post'],
        ['/CvvOperations', 'post'],
        ['/CvvOperations/validateToken', 'post'],
        ['/CvvOperations/collectCvv', 'post'],
      ] as const) {
        assert.ok(doc.paths[path][method].requestBody?.content?.['application/json']?.schema, `${method} ${path} has a JSON request body schema`);
      }
      // And the other way round: every documented operation is served (an unauthenticated call is 401, not 404/405).
      let checked = 0;
      for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
        for (const method of Object.keys(item).filter((k) => ['get', 'post', 'put', 'patch', 'delete'].includes(k))) {
          const url = path.replace(/\{[^}]+\}/g, 'x_1');
          const r = await (request(h.app) as any)[method](url).send(method === 'get' || method === 'delete' ? undefined : {});
          assert.ok(![404, 405].includes(r.status), `${method.toUpperCase()} ${path} is documented but answers ${r.status}`);
          checked++;
        }
      }
      assert.ok(checked >= 11);
      assert.ok(!JSON.stringify(doc).includes(m.testKey));
    });

    it('GET /.well-known/jwks.json holds public keys only', async () => {
      const res = await request(h.app).get('/.well-known/jwks.json');
      assert.equal(res.status, 200);
      assert.ok(Array.isArray(res.body.keys) && res.body.keys.length >= 1);
      for (const k of res.body.keys) {
        assert.equal(k.d, undefined, 'no private key material');
        assert.equal(typeof k.kid, 'string');
      }
    });
  });

  describe('fuzzing the JSON endpoints', () => {
    it('~200 random bodies: every answer is a 2xx or a 4xx with a code from the table, never a 5xx', async () => {
      const seed = Number(process.env.FUZZ_SEED ?? 0x5eed1234);
      const rnd = prng(seed);
      const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)]!;
      const ODD = [
        '\ud800',
        '\udfff',
        '\u0000',
        '\u202e',
        '\u2066',
        '\ufeff',
        '\u200b',
        '\u0301',
        '\ud83d\udca5',
        '\u4e2d',
        '\u00e9',
        '\\',
        '"',
        '\n',
        '\u2028',
        '\u007f',
        '\u0085',
        '\uffff',
        '١',
        '４',
        ' ',
        '{',
        '}',
      ];
      const randString = (): string => {
        const n = pick([0, 1, 3, 4, 12, 16, 40, 200]);
        let s = '';
        for (let i = 0; i < n; i++) {
          const r = rnd();
          s += r < 0.4 ? String.fromCharCode(48 + Math.floor(rnd() * 10)) : r < 0.7 ? String.fromCharCode(32 + Math.floor(rnd() * 95)) : pick(ODD);
        }
        return s;
      };
      const randValue = (depth: number): unknown => {
        const r = Math.floor(rnd() * (depth > 2 ? 6 : 8));
        switch (r) {
          case 0:
            return null;
          case 1:
            return rnd() < 0.5;
          case 2:
            return pick([0, -1, 1, 3, 12, 13, 2030, 1999, 1.5, -0.5, 1e308, -1e308, 2 ** 53 + 1, 99_999_999_999, 100_000_000_000]);
          case 3:
            return randString();
          case 4:
            return pick(['123', '1234', TEST_CARD, '4242424242424242', cardToken, 'tok_x', 'collectCvv', 'EUR', 'eur', 'hosted', '', 'https://shop.example/x']);
          case 5:
            return pick([TEST_CARD, '378282246310005', '123', 'cvc_x', 'single_use', 'cache', 'charge', 'threeDS']);
          case 6:
            return Array.from({ length: Math.floor(rnd() * 4) }, () => randValue(depth + 1));
          default: {
            const o: Record<string, unknown> = {};
            const n = Math.floor(rnd() * 4);
            for (let i = 0; i < n; i++) o[rnd() < 0.5 ? randString() : pick(['value', 'currency', 'k', 'cart'])] = randValue(depth + 1);
            return o;
          }
        }
      };
      const FIELDS: Record<string, string[]> = {
        '/CvvOperations': [
          'card',
          'operations',
          'amount',
          'reference',
          'require3DS',
          'requireCvv',
          'maxAttempts',
          'ttlSeconds',
          'cvvRetention',
          'form',
          'returnUrl',
          'metadata',
        ],
        '/Cards': ['number', 'expMonth', 'expYear', 'cvv', 'holderName'],
        '/CvvOperations/validateToken': ['token'],
        '/CvvOperations/collectCvv': ['cvv'],
      };
      const randBody = (path: string): string => {
        const r = rnd();
        if (r < 0.1) return JSON.stringify(randValue(0));
        if (r < 0.15) return randString();
        const o: Record<string, unknown> = {};
        for (const f of FIELDS[path]!) if (rnd() < 0.6) o[f] = randValue(0);
        if (rnd() < 0.1) o[randString()] = randValue(1);
        let text = JSON.stringify(o);
        if (rnd() < 0.05) text = text.slice(0, Math.floor(rnd() * text.length)); // truncated JSON
        return text;
      };
      let token = session.token;
      const statuses = new Map<number, number>();
      for (let i = 0; i < 200; i++) {
        const path = pick(Object.keys(FIELDS));
        const body = randBody(path);
        const cred = path === '/CvvOperations/collectCvv' ? token : m.testKey;
        const res = await request(h.app).post(path).set(auth(cred)).type('application/json').send(body);
        const what = `seed ${seed} case ${i}: POST ${path} ${JSON.stringify(body).slice(0, 300)} → ${res.status} ${res.text.slice(0, 200)}`;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok((res.status >= 200 && res.status < 300) || (res.status >= 400 && res.status < 500), what);
        if (res.status >= 400) {
          assert.ok(res.body?.error?.code in ERROR_TABLE, `${what}: unknown code`);
          assert.equal(ERROR_TABLE[res.body.error.code], res.status, `${what}: code and status disagree`);
          assert.equal(res.body.error.requestId, res.headers['x-request-id'], what);
          assert.ok(!/\bat .+\.(ts|js):\d+/.test(res.text), `${what}: no stack trace`);
        } else if (path === '/CvvOperations/collectCvv') {
          token = res.body.token;
        }
      }
      assert.ok((statuses.get(400) ?? 0) > 50, `mostly refused: ${JSON.stringify([...statuses])}`);
      assert.ok(!h.logs.some((l) => /"level":"error"/.test(l)), 'no request failed on the server');
    });
  });

  describe('secrets stay out of metrics and logs', () => {
    it('GET /metrics is Prometheus text with cvvops_http_requests_total and no key, token or card number', async () => {
      // Requests with secrets in their paths, to make sure no raw path becomes a label.
      await request(h.app).get(`/Cards/${TEST_CARD}`).set(auth(m.testKey));
      await request(h.app).get(`/x/${session.token}`);
      await request(h.app).get(`/${m.testKey}`);
      const res = await request(h.app).get('/metrics');
      assert.equal(res.status, 200);
      assert.match(res.headers['content-type'] ?? '', /^text\/plain/);
      const text = res.text;
      assert.match(text, /^# HELP cvvops_http_requests_total /m);
      assert.match(text, /^# TYPE cvvops_http_requests_total counter$/m);
      assert.match(text, /^cvvops_http_requests_total\{[^}]*route="\/Cards\/:token"[^}]*\} \d+/m);
      assert.ok(secrets.length >= 4);
      for (const s of secrets) {
        assert.ok(!text.includes(s), `a secret (${s.slice(0, 8)}…) is in /metrics`);
      }
      assert.ok(!text.includes(cardToken), 'no card token as a label');
      assert.ok(!text.includes(session.id), 'no session id as a label');
      assert.ok(!/sk_(test|live)_/.test(text));
      assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(text), 'no JWS');
    });

    it('no API key, token or card number in the captured logs', () => {
      const logs = h.logs.join('');
      assert.ok(logs.includes('"request"'), 'the access log was captured');
      for (const s of secrets) assert.ok(!logs.includes(s), `a secret (${s.slice(0, 8)}…) is in the logs`);
    });
  });
});

async function countCards(h: Harness): Promise<number> {
  const db = (h.deps.store as unknown as { db: Kysely<Database> }).db;
  const r = await db.selectFrom('cards').select(db.fn.countAll().as('n')).executeTakeFirstOrThrow();
  return Number(r.n);
}
