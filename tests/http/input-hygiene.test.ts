import assert from 'node:assert/strict';
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { auth, type Harness, makeCard, makeHarness, makeMerchant, makeSession, TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';
import { ERROR_TABLE } from '../helpers/api-errors.js';

function assertError(res: { status: number; body: any; headers: Record<string, string> }, status: number, code: string, what = ''): void {
  assert.equal(res.status, status, `${what}: ${res.status} ${JSON.stringify(res.body)}`);
  assert.equal(res.body?.error?.code, code, `${what}: ${JSON.stringify(res.body)}`);
  assert.deepEqual(Object.keys(res.body.error).sort(), ['code', 'message', 'requestId'], what);
  assert.equal(ERROR_TABLE[code], status);
  assert.equal(res.body.error.requestId, res.headers['x-request-id'], what);
}

/** A run of 12 or more digits, possibly split by spaces or dashes (a card number as people write it). */
const LONG_DIGITS = /\d(?:[ -]?\d){11,}/;

/** Starts the app on 127.0.0.1 (for requests from other loopback addresses and with raw headers). */
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

/** One request from a chosen loopback source address (127.0.0.x), so the server sees distinct clients. */
function from(
  port: number,
  source: string,
  method: string,
  path: string,
  headers: Record<string, string | string[]> = {},
  body?: string,
): Promise<{ status: number; headers: Record<string, string>; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, localAddress: source, method, path, headers: { Connection: 'close', ...headers } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode!, headers: Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, String(v)])), body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('input hygiene: bad input is a 4xx from API.md, never a 5xx, and never echoed', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_DEMO: 'on' } });
    m = await makeMerchant(h);
  });
  after(() => h.close());

  describe('malformed percent-encoding in the path', () => {
    const BAD = ['%E0%A4%A', '%E0%A4', '%ZZ', '%', 'abc%C3', '%ED%A0%80' /* a lone surrogate in UTF-8 */, '%FF%FE'];

    it('is 400 invalid_request on every {id} route, hosted page, static path and unknown path; the raw segment is neither logged nor echoed', async () => {
      const before = h.logs.length;
      for (const seg of BAD) {
        const cases: Array<[string, () => request.Test]> = [
          ['GET /Cards/{token}', () => request(h.app).get(`/Cards/${seg}`).set(auth(m.testKey))],
          ['GET /Cards/{token} without a key', () => request(h.app).get(`/Cards/${seg}`)],
          ['GET /Cards/{token}/cvv/status', () => request(h.app).get(`/Cards/${seg}/cvv/status`).set(auth(m.testKey))],
          ['DELETE /Cards/{token}', () => request(h.app).delete(`/Cards/${seg}`).set(auth(m.testKey))],
          ['GET /CvvOperations/{id}', () => request(h.app).get(`/CvvOperations/${seg}`).set(auth(m.testKey))],
          ['POST /CvvOperations/{id}/cancel', () => request(h.app).post(`/CvvOperations/${seg}/cancel`).set(auth(m.testKey))],
          ['DELETE /CvcSessions/{id}', () => request(h.app).delete(`/CvcSessions/${seg}`).set(auth(m.testKey))],
          ['GET /CustomForms/{id}', () => request(h.app).get(`/CustomForms/${seg}`).set(auth(m.testKey))],
          ['DELETE /WebhookEndpoints/{id}', () => request(h.app).delete(`/WebhookEndpoints/${seg}`).set(auth(m.testKey))],
          ['GET /hosted/forms/{id}', () => request(h.app).get(`/hosted/forms/${seg}`)],
          ['GET /hosted/3ds/{id}', () => request(h.app).get(`/hosted/3ds/${seg}`)],
          ['POST /hosted/3ds/{id}', () => request(h.app).post(`/hosted/3ds/${seg}`).type('form').send('code=123456')],
          ['GET /assets/…', () => request(h.app).get(`/assets/${seg}`)],
          ['GET /sdk/v1/…', () => request(h.app).get(`/sdk/v1/${seg}`)],
          ['GET an unknown path', () => request(h.app).get(`/nope/${seg}`)],
          ['in a static segment', () => request(h.app).get(`/Ca${seg}rds`).set(auth(m.testKey))],
        ];
        for (const [what, make] of cases) {
          const res = await make();
          assertError(res, 400, 'invalid_request', `${what} ${seg}`);
          assert.ok(!res.text.includes(seg) || seg === '%', `${what} ${seg}: the segment is echoed: ${res.text}`);
        }
      }
      const logs = h.logs.slice(before).join('');
      assert.ok(!/"level":"error"/.test(logs), 'no request failed on the server');
      for (const seg of BAD.filter((s) => s.length > 2)) assert.ok(!logs.includes(seg), `the logs carry the raw segment ${seg}`);
      assert.ok(!logs.includes('URIError') && !logs.includes('Failed to decode'), 'no decoder error is logged');
    });

    it('well-formed but impossible ids (%00, %2F, ../, over-long, non-ASCII) are 404 not_found, like any unknown id', async () => {
      for (const seg of ['%00', 'tok_%00', '%2F', 'tok_a%2F..%2Fb', '..', '%2E%2E', '%C3%A9', 'tok_' + 'a'.repeat(300), '%20', '%F0%9F%92%A5']) {
        for (const [what, make] of [
          ['GET /Cards/{token}', () => request(h.app).get(`/Cards/${seg}`).set(auth(m.testKey))],
          ['GET /CvvOperations/{id}', () => request(h.app).get(`/CvvOperations/${seg}`).set(auth(m.testKey))],
          ['GET /hosted/forms/{id}', () => request(h.app).get(`/hosted/forms/${seg}`)],
          ['GET /hosted/3ds/{id}', () => request(h.app).get(`/hosted/3ds/${seg}`)],
          ['GET /hosted/cvv?session=', () => request(h.app).get(`/hosted/cvv?session=${seg}`)],
        ] as Array<[string, () => request.Test]>) {
          const res = await make();
          assertError(res, 404, 'not_found', `${what} ${seg}`);
        }
        // CVC sessions answer one code for every missing kind (API.md section 5): no oracle here either.
        assertError(await request(h.app).delete(`/CvcSessions/${seg}`).set(auth(m.testKey)), 410, 'cvc_session_not_found', `DELETE /CvcSessions/${seg}`);
      }
    });
  });

  describe('values PostgreSQL cannot store', () => {
    it('NUL in a custom form (html, css) or in a URL (webhook, proxy target, returnUrl) is 400 invalid_request on every engine', async () => {
      const card = await makeCard(h, m.testKey);
      const cases: Array<[string, () => request.Test]> = [
        [
          'html',
          () =>
            request(h.app)
              .post('/CustomForms')
              .set(auth(m.testKey))
              .type('application/json')
              .send('{"name":"x","html":"<p>a\\u0000b</p><input data-cvvops=\\"cvv\\">"}'),
        ],
        [
          'css',
          () =>
            request(h.app)
              .post('/CustomForms')
              .set(auth(m.testKey))
              .type('application/json')
              .send('{"name":"x","html":"<input data-cvvops=\\"cvv\\">","css":"a{}\\u0000"}'),
        ],
        [
          'html, lone surrogate',
          () => request(h.app).post('/CustomForms').set(auth(m.testKey)).type('application/json').send('{"name":"x","html":"<p>\\ud800</p>"}'),
        ],
        [
          'webhook url',
          () =>
            request(h.app)
              .post('/WebhookEndpoints')
              .set(auth(m.testKey))
              .type('application/json')
              .send('{"url":"https://hooks.example/a\\u0000b","events":["cvv.blocked"]}'),
        ],
        [
          'proxy target',
          () =>
            request(h.app).patch('/Merchant').set(auth(m.testKey)).type('application/json').send('{"allowedProxyTargets":["https://psp.example/a\\u0000"]}'),
        ],
        [
          'returnUrl',
          () =>
            request(h.app)
              .post('/CvvOperations')
              .set(auth(m.testKey))
              .type('application/json')
              .send(`{"card":"${card}","operations":["collectCvv"],"returnUrl":"https://shop.example/a\\u0000b"}`),
        ],
      ];
      for (const [what, make] of cases) assertError(await make(), 400, 'invalid_request', what);
    });
  });

  describe("a library's own client errors", () => {
    it('an HTML form with too many fields (the 3-D Secure challenge) is 400 invalid_request, not a 500', async () => {
      for (const body of ['a=1&b=2&c=3&d=4&e=5&f=6', `${'x=1&'.repeat(50)}code=123456`]) {
        const res = await request(h.app).post('/hosted/3ds/tds_x').type('form').send(body);
        assertError(res, 400, 'invalid_request', body.slice(0, 30));
      }
      assert.ok(!h.logs.some((l) => /"level":"error"/.test(l)), 'no request failed on the server');
    });
  });

  describe('access logs', () => {
    it('never carry query-string values (a CVV typed into a form that fell back to GET), nor the raw path', async () => {
      const before = h.logs.length;
      const s = await makeSession(h, m.testKey);
      const paths = [
        `/CvvOperations/${s.id}?cvv=9371&number=4929123456781236`,
        `/hosted/cvv?session=${s.id}&cvv=9371`,
        '/hosted/cvv?cvv=9371',
        '/healthz?cvv=9371',
        '/nope?cvv=9371&holder=Zyxwvut',
        `/Cards/tok_9371x?cvv=9371`,
      ];
      for (const p of paths) await request(h.app).get(p).set(auth(m.testKey));
      const logs = h.logs.slice(before);
      assert.ok(logs.filter((l) => l.includes('"msg":"request"')).length >= paths.length, 'every request was logged');
      const text = logs.join('');
      assert.ok(!text.includes('9371'), 'a query value is in the logs');
      assert.ok(!text.includes('4929123456781236'), 'a card number is in the logs');
      assert.ok(!text.includes('Zyxwvut'), 'a query value is in the logs');
      assert.ok(!text.includes('?'), 'no query string at all');
    });
  });

  describe('Content-Encoding', () => {
    it('any coding but identity is 415 unsupported_media_type (corrupt or not), on the API, the proxy and the hosted forms; nothing is created', async () => {
      const json = JSON.stringify({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
      const bodies: Array<[string, Buffer | string]> = [
        ['gzip', 'this is not gzip'],
        ['gzip', gzipSync(json)],
        ['deflate', 'nope'],
        ['br', 'nope'],
        ['x-custom', json],
        ['gzip, identity', json],
        ['GZIP', 'x'],
        ['compress', json],
      ];
      const before = (await request(h.app).get('/metrics')).text.length; // just to warm up; counted below
      void before;
      for (const [coding, body] of bodies) {
        const cases: Array<[string, () => request.Test]> = [
          [
            'POST /Cards',
            () => request(h.app).post('/Cards').set(auth(m.testKey)).set('Content-Type', 'application/json').set('Content-Encoding', coding).send(body),
          ],
          [
            'POST /CustomForms',
            () => request(h.app).post('/CustomForms').set(auth(m.testKey)).set('Content-Type', 'application/json').set('Content-Encoding', coding).send(body),
          ],
          [
            'POST /proxy',
            () => request(h.app).post('/proxy').set(auth(m.testKey)).set('Content-Type', 'application/json').set('Content-Encoding', coding).send(body),
          ],
          [
            'POST /hosted/3ds/{id}',
            () => request(h.app).post('/hosted/3ds/tds_x').set('Content-Type', 'application/x-www-form-urlencoded').set('Content-Encoding', coding).send(body),
          ],
          [
            'POST /demo/api/checkout',
            () => request(h.app).post('/demo/api/checkout').set('Content-Type', 'application/json').set('Content-Encoding', coding).send(body),
          ],
        ];
        for (const [what, make] of cases) assertError(await make(), 415, 'unsupported_media_type', `${what} ${coding}`);
      }
      assert.ok(!h.logs.some((l) => /"level":"error"/.test(l)), 'no request failed on the server');
      // Control: identity (or no header) is accepted.
      const ok = await request(h.app)
        .post('/Cards')
        .set(auth(m.testKey))
        .set('Content-Type', 'application/json')
        .set('Content-Encoding', 'identity')
        .send(json);
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });
  });

  describe('duplicate Authorization headers', () => {
    it('are 400 invalid_request on merchant and operation endpoints, whichever comes first, even when identical', async () => {
      const s = await makeSession(h, m.testKey);
      const srv = await listen(h);
      try {
        const pairs: Array<[string, string, string[], string?]> = [
          ['GET', '/Merchant', [`Bearer ${m.testKey}`, 'Bearer sk_test_forged']],
          ['GET', '/Merchant', ['Bearer sk_test_forged', `Bearer ${m.testKey}`]],
          ['GET', '/Merchant', [`Bearer ${m.testKey}`, `Bearer ${m.testKey}`]],
          ['GET', '/Merchant', [`Bearer ${m.testKey}`, '']],
          ['POST', '/CvvOperations/collectCvv', [`Bearer ${s.token}`, `Bearer ${s.token}`], '{"cvv":"123"}'],
          ['POST', '/CvvOperations/collectCvv', [`Bearer ${s.token}`, `Bearer ${m.testKey}`], '{"cvv":"123"}'],
        ];
        for (const [method, path, values, body] of pairs) {
          const res = await from(srv.port, '127.0.0.1', method, path, { Authorization: values, ...(body ? { 'Content-Type': 'application/json' } : {}) }, body);
          assertError(res, 400, 'invalid_request', `${method} ${path} ${values.length}`);
        }
        // The token was not used: the session's token is still current (only a 200 rotates).
        const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token });
        assert.equal(v.body.current, true);
        // Control: one header works.
        assert.equal((await from(srv.port, '127.0.0.1', 'GET', '/Merchant', { Authorization: `Bearer ${m.testKey}` })).status, 200);
      } finally {
        await srv.close();
      }
    });
  });

  describe('digits in error messages', () => {
    it('a run of 12 or more digits is never echoed, in any error (unknown keys shaped like a card number, any message)', async () => {
      const card = await makeCard(h, m.testKey);
      const cases: Array<[string, () => request.Test]> = [
        [
          'unknown key on /Cards',
          () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, '4000731973197314': 1 }),
        ],
        ['only the unknown key', () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ '4000731973197314': 1 })],
        [
          'with spaces',
          () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, '4000 7319 7319 7314': 1 }),
        ],
        [
          'with dashes',
          () => request(h.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030, 'x4000-7319-7319-7314': 1 }),
        ],
        [
          'unknown key on /CvvOperations',
          () =>
            request(h.app)
              .post('/CvvOperations')
              .set(auth(m.testKey))
              .send({ card, operations: ['collectCvv'], '4000731973197314': true }),
        ],
        [
          'unknown key in amount',
          () =>
            request(h.app)
              .post('/CvvOperations')
              .set(auth(m.testKey))
              .send({ card, operations: ['charge'], amount: { value: 1, currency: 'EUR', '4000731973197314': 1 } }),
        ],
        ['unknown key on PATCH /Merchant', () => request(h.app).patch('/Merchant').set(auth(m.testKey)).send({ '4000731973197314': 1 })],
        ['unknown key on a no-body endpoint', () => request(h.app).post(`/Cards/${card}/cvv/unblock`).set(auth(m.testKey)).send({ '4000731973197314': 1 })],
        [
          'unknown key on validateToken',
          () => request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: 'x', '400073197319731400007': 1 }),
        ],
      ];
      for (const [what, make] of cases) {
        const res = await make();
        assert.equal(res.status, 400, `${what}: ${res.status} ${res.text}`);
        assert.ok(res.body.error.code in ERROR_TABLE);
        assert.ok(!LONG_DIGITS.test(res.body.error.message), `${what}: ${res.body.error.message}`);
        assert.ok(!res.text.includes('4000731973197314') && !res.text.includes('7319'), `${what}: ${res.text}`);
      }
      assert.ok(!h.logs.join('').includes('4000731973197314'), 'nor in the logs');
    });

    it('the mask sits in the one place that writes every error (the error handler), not in each message', async () => {
      const { errorHandler } = await import('../../server/http/middleware.js');
      const { AppError } = await import('../../server/errors.js');
      let sent: any;
      const res = {
        locals: { requestId: 'req_x' },
        headersSent: false,
        setHeader() {},
        status() {
          return this;
        },
        json(b: unknown) {
          sent = b;
        },
      };
      errorHandler(h.deps.log)(
        new AppError('not_found', 'No such card: 4000000000001018 (or 4000 0000 0000 1018), id 123456789012.'),
        {} as never,
        res as never,
        () => {},
      );
      assert.ok(!LONG_DIGITS.test(sent.error.message), sent.error.message);
      assert.match(sent.error.message, /No such card/);
      // Short numbers (limits, amounts, years) stay readable.
      errorHandler(h.deps.log)(
        new AppError('payload_too_large', 'The request body must be at most 16384 bytes (2030, 99999999999).'),
        {} as never,
        res as never,
        () => {},
      );
      assert.equal(sent.error.message, 'The request body must be at most 16384 bytes (2030, 99999999999).');
    });
  });

  describe('endpoints that take no body', () => {
    it('accept no body or {}, and refuse anything else with 400 invalid_request without acting', async () => {
      const JUNK: Array<[string, string]> = [
        ['an unknown field', '{"x":1}'],
        ['a card-like key', '{"4000731973197314":1}'],
        ['an array', '[]'],
        ['a nested object', '{"a":{"b":{}}}'],
        ['null', 'null'],
        ['a string', '"x"'],
        ['a number', '1'],
      ];
      const s = await makeSession(h, m.testKey);
      const card = await makeCard(h, m.testKey, { cvv: '123' });
      const status = await request(h.app).get(`/Cards/${card}/cvv/status`).set(auth(m.testKey));
      const cvc = status.body.cvcSession.id as string;
      const hook = await request(h.app)
        .post('/WebhookEndpoints')
        .set(auth(m.testKey))
        .send({ url: 'https://hooks.example/x', events: ['charge.succeeded'] });
      const form = await request(h.app)
        .post('/CustomForms')
        .set(auth(m.testKey))
        .send({ name: 'F', html: '<input data-cvvops="cvv"><button data-cvvops="submit">Pay</button>' });
      assert.equal(form.status, 201, form.text);
      const hooks = (await request(h.app).get('/WebhookEndpoints').set(auth(m.testKey))).body.data.length as number;
      const endpoints: Array<[string, string]> = [
        ['post', `/CvvOperations/${s.id}/token`],
        ['post', `/CvvOperations/${s.id}/cancel`],
        ['delete', `/CvvOperations/${s.id}/cvv`],
        ['post', `/Cards/${card}/cvv/unblock`],
        ['delete', `/Cards/${card}`],
        ['delete', `/CvcSessions/${cvc}`],
        ['delete', `/WebhookEndpoints/${hook.body.id}`],
        ['delete', `/CustomForms/${form.body.id}`],
      ];
      for (const [method, path] of endpoints) {
        for (const [what, text] of JUNK) {
          const res = await (request(h.app) as any)[method](path).set(auth(m.testKey)).type('application/json').send(text);
          assertError(res, 400, 'invalid_request', `${method.toUpperCase()} ${path} with ${what}`);
        }
      }
      // Nothing was acted on: the session is active with its first token, the card and its CVV are there, the hook and form too.
      const v = await request(h.app).post('/CvvOperations/validateToken').set(auth(m.testKey)).send({ token: s.token });
      assert.equal(v.body.current, true);
      assert.equal(v.body.session.status, 'active');
      assert.equal((await request(h.app).get(`/Cards/${card}/cvv/status`).set(auth(m.testKey))).body.cvcSession.available, true);
      assert.equal((await request(h.app).get(`/CustomForms/${form.body.id}`).set(auth(m.testKey))).status, 200);
      assert.equal((await request(h.app).get('/WebhookEndpoints').set(auth(m.testKey))).body.data.length, hooks);
      // Control: {} and no body at all are accepted.
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey)).send({})).status, 200);
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(m.testKey))).status, 200);
      assert.equal((await request(h.app).post(`/Cards/${card}/cvv/unblock`).set(auth(m.testKey)).type('application/json').send('{}')).status, 204);
      assert.equal((await request(h.app).delete(`/CvcSessions/${cvc}`).set(auth(m.testKey)).send({})).status, 204);
      assert.equal((await request(h.app).delete(`/WebhookEndpoints/${hook.body.id}`).set(auth(m.testKey))).status, 204);
      assert.equal((await request(h.app).delete(`/CustomForms/${form.body.id}`).set(auth(m.testKey)).send({})).status, 204);
      assert.equal((await request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(m.testKey)).send({})).status, 200);
      assert.equal((await request(h.app).delete(`/Cards/${card}`).set(auth(m.testKey))).status, 204);
    });
  });
});

describe('failed API-key attempts are throttled per client address', () => {
  it('after N failures from one address in a minute: 429 rate_limited with Retry-After, even for a valid key from there; other addresses are not affected', async () => {
    const h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'on', CVVOPS_RATE_LIMIT_API_KEY_FAILURES: '5' } });
    const srv = await listen(h);
    try {
      const m = await makeMerchant(h);
      // Successes do not count.
      for (let i = 0; i < 8; i++) assert.equal((await from(srv.port, '127.0.0.3', 'GET', '/Merchant', auth(m.testKey))).status, 200);
      const statuses: number[] = [];
      let limited: Awaited<ReturnType<typeof from>> | undefined;
      for (let i = 0; i < 8; i++) {
        const r = await from(srv.port, '127.0.0.3', 'GET', '/Merchant', auth(`sk_test_${randomBytes(24).toString('base64url')}`));
        statuses.push(r.status);
        if (r.status === 429) limited ??= r;
      }
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
      assertError(limited!, 429, 'rate_limited', 'the sixth failure');
      assert.ok(Number(limited!.headers['retry-after']) >= 1 && Number(limited!.headers['retry-after']) <= 60, limited!.headers['retry-after']);
      // The address is throttled, not the key: a right key from there waits too (a guess that succeeds must not stand out).
      assertError(await from(srv.port, '127.0.0.3', 'GET', '/Merchant', auth(m.testKey)), 429, 'rate_limited', 'valid key from the throttled address');
      // Another address is not affected, with a valid or a wrong key.
      assert.equal((await from(srv.port, '127.0.0.4', 'GET', '/Merchant', auth(m.testKey))).status, 200);
      assertError(await from(srv.port, '127.0.0.4', 'GET', '/Merchant', auth('sk_test_nope')), 401, 'invalid_api_key', 'other address');
      // The refusals are audited without the key.
      const logs = h.logs.join('');
      assert.ok(logs.includes('"outcome":"failure"'));
      assert.ok(!logs.includes(m.testKey));
    } finally {
      await srv.close();
      await h.close();
    }
  });

  it('500 random keys from one address: most are 429, not 401 (the default limit)', async () => {
    const h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'on' } });
    try {
      const counts = new Map<number, number>();
      for (let i = 0; i < 500; i++) {
        const r = await request(h.app)
          .get('/Merchant')
          .set(auth(`sk_live_${randomBytes(24).toString('base64url')}`));
        counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
      }
      assert.ok((counts.get(401) ?? 0) <= h.config.rateLimits.apiKeyFailures, JSON.stringify([...counts]));
      assert.equal((counts.get(429) ?? 0) + (counts.get(401) ?? 0), 500, JSON.stringify([...counts]));
    } finally {
      await h.close();
    }
  });

  it('CVVOPS_RATE_LIMIT=off turns it off; the variable is validated like the others', async () => {
    const h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'off', CVVOPS_RATE_LIMIT_API_KEY_FAILURES: '2' } });
    try {
      for (let i = 0; i < 20; i++) assert.equal((await request(h.app).get('/Merchant').set(auth('sk_test_nope'))).status, 401);
    } finally {
      await h.close();
    }
    const { loadConfig } = await import('../../server/config.js');
    assert.equal(loadConfig({}).rateLimits.apiKeyFailures, 30);
    assert.throws(() => loadConfig({ CVVOPS_RATE_LIMIT_API_KEY_FAILURES: '0' }), /CVVOPS_RATE_LIMIT_API_KEY_FAILURES/);
    assert.throws(() => loadConfig({ CVVOPS_RATE_LIMIT_API_KEY_FAILURES: 'many' }), /CVVOPS_RATE_LIMIT_API_KEY_FAILURES/);
  });
});

describe('on PostgreSQL', () => {
  if (!PG_BASE) {
    it('failed API-key attempts and odd ids on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
    return;
  }
  it('failed API-key attempts are counted in the shared store: two instances on one database share the count', async () => {
    const s = await freshPgSchema();
    const env = { CVVOPS_RATE_LIMIT: 'on', CVVOPS_RATE_LIMIT_API_KEY_FAILURES: '5' };
    const a = await makeHarness({ databaseUrl: s.url, env });
    // A second instance: its own app and rate limiter, the same database and master key.
    const { createDeps } = await import('../../server/deps.js');
    const { buildApp } = await import('../../server/app.js');
    const { Secret } = await import('../../server/secret.js');
    const depsB = await createDeps(a.config, a.deps.log, { masterKey: new Secret(a.masterKey) });
    const apps = [a.app, buildApp(depsB)];
    try {
      const codes: number[] = [];
      for (let i = 0; i < 7; i++)
        codes.push(
          (
            await request(apps[i % 2]!)
              .get('/Merchant')
              .set(auth(`sk_test_wrong${i}`))
          ).status,
        );
      assert.deepEqual(codes, [401, 401, 401, 401, 401, 429, 429]);
    } finally {
      await depsB.close();
      await a.close();
      await s.drop();
    }
  });

  it('ids PostgreSQL cannot hold (NUL, invalid UTF-8 once decoded) are 404 not_found or 400, never a 500', async () => {
    const s = await freshPgSchema();
    const h = await makeHarness({ databaseUrl: s.url });
    try {
      const m = await makeMerchant(h);
      for (const seg of ['%00', 'tok_%00', 'cvo_a%00b', '%C3%A9']) {
        for (const path of [`/Cards/${seg}`, `/CvvOperations/${seg}`, `/CustomForms/${seg}`, `/Cards/${seg}/cvv/status`]) {
          assertError(await request(h.app).get(path).set(auth(m.testKey)), 404, 'not_found', path);
        }
        for (const path of [`/hosted/forms/${seg}`, `/hosted/3ds/${seg}`, `/hosted/cvv?session=${seg}`]) {
          assertError(await request(h.app).get(path), 404, 'not_found', path);
        }
        assertError(await request(h.app).post(`/hosted/3ds/${seg}`).type('form').send('code=123456'), 404, 'not_found', `POST /hosted/3ds/${seg}`);
      }
      // NUL inside JSON bodies the store keeps as text.
      for (const [path, text] of [
        ['/CustomForms', '{"name":"x","html":"<p>a\\u0000b</p><input data-cvvops=\\"cvv\\">"}'],
        ['/CustomForms', '{"name":"x","html":"<input data-cvvops=\\"cvv\\">","css":"a{}\\u0000"}'],
        ['/WebhookEndpoints', '{"url":"http://127.0.0.1:9/a\\u0000b","events":["cvv.blocked"]}'],
      ]) {
        assertError(await request(h.app).post(path!).set(auth(m.testKey)).type('application/json').send(text), 400, 'invalid_request', `${path} ${text}`);
      }
      assert.ok(!h.logs.some((l) => /"level":"error"/.test(l)), 'no request failed on the server');
    } finally {
      await h.close();
      await s.drop();
    }
  });
});
