import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildRequest,
  HttpProcessorConfig,
  parseResponse,
  PLACEHOLDERS,
  type Placeholder,
  placeholderValues,
  scrub,
} from '../../server/connectors/processors/http.js';
import { type ChargeRequest, ProcessorError } from '../../server/connectors/processors/processor.js';
import { Secret } from '../../server/secret.js';

/** A holder name and a reference written to break out of a JSON string, a URL component and a header line. */
const NASTY_NAME = 'Ada "x" \\ </script>\n';
const NASTY_REF = 'order "7", "approved": true, "x": "\\"}\r\nX-Injected: 1';
const CAVV = 'AAABBJg0VhI0VniQEjRWAAAAAAA=';
const DS_ID = 'f25084f0-5b16-4c0a-ae5d-b24808a95e4b';

function chargeRequest(over: Partial<ChargeRequest> = {}): ChargeRequest {
  return {
    chargeId: 'ch_test',
    idempotencyKey: 'cvvops_0123abcd',
    mode: 'test',
    amount: { value: 1999, currency: 'EUR' },
    card: { number: new Secret('4000000000001018'), brand: 'visa', expMonth: 3, expYear: 2030, holderName: new Secret(NASTY_NAME) },
    cvv: new Secret('123'),
    threeDS: { eci: '05', authenticationValue: new Secret(CAVV), dsTransactionId: DS_ID },
    reference: NASTY_REF,
    ...over,
  };
}

/** Every placeholder of API.md section 6, each the whole content of a JSON string. */
const ALL_IN_JSON = `{${PLACEHOLDERS.map((p) => `"${p}":"\${${p}}"`).join(',')}}`;

const RESPONSE_MAP = {
  approved: { path: 'status', equals: 'succeeded' },
  authorizationCode: 'outcome.authorization_code',
  declineCode: 'outcome.decline_code',
  cvvResult: 'outcome.checks.cvc_check',
  avsResult: 'outcome.checks.address_check',
  networkTransactionId: 'outcome.network_transaction_id',
} as const;

function config(over: Record<string, unknown> = {}) {
  return {
    type: 'http',
    request: {
      url: 'https://psp.example/v1/payments?ref=${reference}',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer psp_secret', 'Idempotency-Key': '${idempotencyKey}' },
      body: ALL_IN_JSON,
    },
    response: RESPONSE_MAP,
    ...over,
  };
}

describe('http processor: buildRequest fills the placeholders of API.md section 6', () => {
  it("fills every placeholder with the charge's values: expMonth 2 digits, expYear 4 digits", () => {
    const cfg = HttpProcessorConfig.parse(config());
    const built = buildRequest(cfg.request, placeholderValues(chargeRequest()));
    assert.equal(built.method, 'POST', 'the default method');
    const body = JSON.parse(built.body!) as Record<Placeholder, string>;
    assert.deepEqual(body, {
      cardNumber: '4000000000001018',
      expMonth: '03',
      expYear: '2030',
      holderName: NASTY_NAME,
      cvv: '123',
      'amount.value': '1999',
      'amount.currency': 'EUR',
      'threeDS.eci': '05',
      'threeDS.authenticationValue': CAVV,
      'threeDS.dsTransactionId': DS_ID,
      reference: NASTY_REF,
      idempotencyKey: 'cvvops_0123abcd',
    });
    assert.ok(!built.body!.includes('${'), 'no placeholder is left');
    assert.equal(built.headers['Idempotency-Key'], 'cvvops_0123abcd');
    assert.equal(built.headers.Authorization, 'Bearer psp_secret', 'constant header values are kept');
  });

  it('pads short years and one-digit months; missing optional values become empty strings', () => {
    const v = placeholderValues(
      chargeRequest({
        card: { number: new Secret('4000000000001018'), brand: 'visa', expMonth: 11, expYear: 30, holderName: null },
        cvv: null,
        threeDS: null,
        reference: null,
      }),
    );
    assert.equal(v.expMonth, '11');
    assert.equal(v.expYear, '0030');
    const built = buildRequest({ method: 'POST', url: 'https://psp.example/', headers: {}, body: ALL_IN_JSON }, v);
    const body = JSON.parse(built.body!) as Record<string, string>;
    for (const k of ['holderName', 'cvv', 'threeDS.eci', 'threeDS.authenticationValue', 'threeDS.dsTransactionId', 'reference']) {
      assert.equal(body[k], '', `${k} is empty`);
    }
  });

  it('JSON-escapes in the body: quotes, backslashes, newlines and </script> cannot leave the string', () => {
    const attacks = [NASTY_NAME, NASTY_REF, '","approved":true,"x":"', '\\', '\\"', '"}', '\u2028\u2029', '\u0000\u001f', '${cvv}', '\ud83d\ude00 é'];
    for (const value of attacks) {
      const built = buildRequest(
        { method: 'POST', url: 'https://psp.example/', headers: {}, body: '{"name":"${holderName}","reference":"${reference}","n":${amount.value}}' },
        { holderName: value, reference: value, 'amount.value': '10' },
      );
      const parsed = JSON.parse(built.body!) as Record<string, unknown>;
      assert.deepEqual(Object.keys(parsed), ['name', 'reference', 'n'], `no key injected by ${JSON.stringify(value)}`);
      assert.equal(parsed.name, value, `holderName round-trips: ${JSON.stringify(value)}`);
      assert.equal(parsed.reference, value);
      assert.equal(parsed.n, 10);
    }
  });

  it('a value holding a placeholder is not filled a second time', () => {
    const built = buildRequest(
      { method: 'POST', url: 'https://psp.example/', headers: {}, body: '{"name":"${holderName}","cvv":"${cvv}"}' },
      { holderName: '${cvv}', cvv: '123' },
    );
    assert.deepEqual(JSON.parse(built.body!), { name: '${cvv}', cvv: '123' });
  });

  it('URL-encodes in the URL: a reference cannot add a path segment, a query parameter or a fragment', () => {
    const ref = 'a/../b?admin=1&x=y#frag %zz';
    const built = buildRequest(
      { method: 'GET', url: 'https://psp.example/v1/orders/${reference}?key=${idempotencyKey}&name=${holderName}', headers: {} },
      { reference: ref, idempotencyKey: 'k&v=1', holderName: NASTY_NAME },
    );
    const u = new URL(built.url);
    assert.equal(u.origin, 'https://psp.example');
    assert.equal(u.pathname, `/v1/orders/${encodeURIComponent(ref)}`);
    assert.equal(decodeURIComponent(u.pathname.slice('/v1/orders/'.length)), ref);
    assert.equal(u.hash, '');
    assert.deepEqual([...u.searchParams.keys()], ['key', 'name']);
    assert.equal(u.searchParams.get('key'), 'k&v=1');
    assert.equal(u.searchParams.get('name'), NASTY_NAME);
    assert.equal(built.body, undefined, 'no body template, no body');
  });

  it('strips CR and LF from header values (no header injection)', () => {
    const built = buildRequest(
      { method: 'POST', url: 'https://psp.example/', headers: { 'X-Reference': 'ref=${reference}', 'X-Holder': '${holderName}' } },
      { reference: 'o-1\r\nX-Injected: 1\r\n\r\n{"evil":1}', holderName: NASTY_NAME },
    );
    for (const v of Object.values(built.headers)) assert.doesNotMatch(v, /[\r\n]/);
    assert.equal(built.headers['X-Reference'], 'ref=o-1X-Injected: 1{"evil":1}');
    assert.equal(built.headers['X-Holder'], 'Ada "x" \\ </script>');
    assert.deepEqual(Object.keys(built.headers), ['X-Reference', 'X-Holder'], 'no header was added');
  });

  it('evaluates nothing else in the template: ${constructor}, ${process.env.HOME}, {{x}}, backticks, $${…} stay as written', () => {
    const template =
      '{"a":"${constructor}","b":"${process.env.HOME}","c":"{{x}}","d":"`${cardNumber}`","e":"${__proto__}",' +
      '"f":"${ cvv }","g":"$${cvv}","h":"${toString}","i":"#{cvv}","j":"<%= cvv %>","k":"${cardNumber.length}"}';
    const built = buildRequest(
      { method: 'POST', url: 'https://psp.example/${constructor}', headers: { 'X-A': '${process.env.HOME}' }, body: template },
      { cardNumber: '4000000000001018', cvv: '123' },
    );
    assert.deepEqual(JSON.parse(built.body!), {
      a: '${constructor}',
      b: '${process.env.HOME}',
      c: '{{x}}',
      d: '`4000000000001018`',
      e: '${__proto__}',
      f: '${ cvv }',
      g: '$123',
      h: '${toString}',
      i: '#{cvv}',
      j: '<%= cvv %>',
      k: '${cardNumber.length}',
    });
    assert.equal(built.headers['X-A'], '${process.env.HOME}');
    assert.ok(!built.body!.includes(process.env.HOME ?? '\u0000never'), 'no environment value was substituted');
    assert.equal(built.url, 'https://psp.example/${constructor}');
  });
});

describe('http processor: HttpProcessorConfig', () => {
  it('accepts a full configuration and fills the defaults', () => {
    const cfg = HttpProcessorConfig.parse(config({ lookup: { method: 'GET', url: 'https://psp.example/v1/payments?key=${idempotencyKey}' } }));
    assert.equal(cfg.request.method, 'POST');
    assert.equal(cfg.timeoutMs, 15000);
    assert.deepEqual(cfg.lookup?.headers, {});
  });

  const unknownPlaceholders: Array<[string, Record<string, unknown>]> = [
    ['${constructor} in the body', { request: { url: 'https://psp.example/', body: '{"a":"${constructor}"}' } }],
    ['${process.env.HOME} in the body', { request: { url: 'https://psp.example/', body: '{"a":"${process.env.HOME}"}' } }],
    ['${cardnumber} (wrong case) in the body', { request: { url: 'https://psp.example/', body: '{"a":"${cardnumber}"}' } }],
    ['${amount} in the URL', { request: { url: 'https://psp.example/${amount}' } }],
    ['${password} in a header', { request: { url: 'https://psp.example/', headers: { 'X-A': '${password}' } } }],
    ['${constructor} in the lookup URL', { lookup: { url: 'https://psp.example/lookup/${constructor}' } }],
    ['${process.env.HOME} in the lookup body', { lookup: { url: 'https://psp.example/lookup', body: '{"k":"${process.env.HOME}"}' } }],
  ];
  for (const [what, over] of unknownPlaceholders) {
    it(`refuses an unknown placeholder: ${what}`, () => {
      const r = HttpProcessorConfig.safeParse(config(over));
      assert.equal(r.success, false, `${what} was accepted`);
      assert.match(JSON.stringify(r.error?.issues), /unknown placeholder|placeholder/i);
    });
  }

  const unknownFields: Array<[string, Record<string, unknown>]> = [
    ['at the top level', { script: 'process.exit()' }],
    ['in request', { request: { url: 'https://psp.example/', followRedirects: true } }],
    ['in response', { response: { ...RESPONSE_MAP, eval: 'x' } }],
    ['in response.approved', { response: { ...RESPONSE_MAP, approved: { path: 'status', equals: 'succeeded', regex: '.*' } } }],
    ['in lookup', { lookup: { url: 'https://psp.example/l', proxy: 'http://evil' } }],
  ];
  for (const [what, over] of unknownFields) {
    it(`refuses an unknown field ${what}`, () => {
      const r = HttpProcessorConfig.safeParse(config(over));
      assert.equal(r.success, false);
      assert.ok(
        r.error.issues.some((i) => i.code === 'unrecognized_keys'),
        JSON.stringify(r.error.issues),
      );
    });
  }

  it('refuses CR/LF in a header value, a bad header name, a method other than POST/PUT/GET and timeouts out of range', () => {
    for (const over of [
      { request: { url: 'https://psp.example/', headers: { 'X-A': 'a\r\nX-B: b' } } },
      { request: { url: 'https://psp.example/', headers: { 'X A': 'a' } } },
      { request: { url: 'https://psp.example/', method: 'DELETE' } },
      { request: { url: 'not a url' } },
      { timeoutMs: 999 },
      { timeoutMs: 60001 },
      { type: 'simulator' },
    ]) {
      assert.equal(HttpProcessorConfig.safeParse(config(over)).success, false, JSON.stringify(over));
    }
  });
});

describe('http processor: parseResponse on recorded provider answers', () => {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));

  it('approved with an authorization code, CVC and AVS results and a network transaction id', () => {
    const r = parseResponse(
      RESPONSE_MAP,
      200,
      json({
        id: 'pay_8Kx2',
        status: 'succeeded',
        amount: 1999,
        outcome: { authorization_code: 'A1B2C3', network_transaction_id: '381234567890123', checks: { cvc_check: 'pass', address_check: 'Y' } },
      }),
    );
    assert.deepEqual(r, {
      status: 'approved',
      authorizationCode: 'A1B2C3',
      declineCode: null,
      cvvResult: 'M',
      avsResult: 'Y',
      networkTransactionId: '381234567890123',
    });
  });

  it("declined with the provider's decline code (and no authorization code even if the provider sent one)", () => {
    const r = parseResponse(
      RESPONSE_MAP,
      402,
      json({
        id: 'pay_9',
        status: 'failed',
        outcome: { decline_code: 'insufficient_funds', authorization_code: 'SHOULD-NOT-SHOW', checks: { cvc_check: 'pass' } },
      }),
    );
    assert.equal(r.status, 'declined');
    assert.equal(r.declineCode, 'insufficient_funds');
    assert.equal(r.authorizationCode, null);
    assert.equal(r.cvvResult, 'M');
    assert.equal(r.avsResult, 'U', 'no AVS result: U');
    assert.equal(r.networkTransactionId, null);
  });

  it('declined with CVV result N and no decline code → incorrect_cvc', () => {
    const r = parseResponse(RESPONSE_MAP, 200, json({ status: 'failed', outcome: { checks: { cvc_check: 'fail' } } }));
    assert.equal(r.status, 'declined');
    assert.equal(r.cvvResult, 'N');
    assert.equal(r.declineCode, 'incorrect_cvc');
  });

  it('declined without any code → do_not_honor; an unknown CVC check → U; a custom cvvResultMap applies', () => {
    const r = parseResponse(RESPONSE_MAP, 200, json({ status: 'failed', outcome: { checks: { cvc_check: 'weird' } } }));
    assert.deepEqual([r.status, r.declineCode, r.cvvResult], ['declined', 'do_not_honor', 'U']);
    const mapped = parseResponse({ ...RESPONSE_MAP, cvvResultMap: { '2': 'N' } }, 200, json({ status: 'failed', outcome: { checks: { cvc_check: 2 } } }));
    assert.deepEqual([mapped.cvvResult, mapped.declineCode], ['N', 'incorrect_cvc']);
  });

  it('approval needs a 2xx and the exact value (type included) at the path', () => {
    const body = { status: 'succeeded', outcome: { authorization_code: 'A1' } };
    assert.equal(parseResponse(RESPONSE_MAP, 200, json(body)).status, 'approved');
    assert.equal(parseResponse(RESPONSE_MAP, 402, json(body)).status, 'declined', 'a 4xx is never an approval');
    assert.equal(parseResponse(RESPONSE_MAP, 302, json(body)).status, 'declined', 'a redirect is never an approval');
    assert.equal(
      parseResponse({ ...RESPONSE_MAP, approved: { path: 'ok', equals: true } }, 200, json({ ok: 'true' })).status,
      'declined',
      '"true" is not true',
    );
    assert.equal(parseResponse({ ...RESPONSE_MAP, approved: { path: 'ok', equals: true } }, 200, json({ ok: true })).status, 'approved');
    assert.equal(parseResponse({ ...RESPONSE_MAP, approved: { path: 'code', equals: 0 } }, 200, json({ code: '0' })).status, 'declined');
  });

  it('a 5xx throws ProcessorError, even with an approved-looking body', () => {
    for (const status of [500, 502, 503, 504]) {
      assert.throws(() => parseResponse(RESPONSE_MAP, status, json({ status: 'succeeded' })), ProcessorError);
    }
    assert.throws(() => parseResponse(RESPONSE_MAP, 0, Buffer.alloc(0)), ProcessorError);
  });

  it('a body that is not JSON throws ProcessorError', () => {
    for (const body of ['<html><body>Bad Gateway</body></html>', '', 'status=succeeded', '{"status":"succeeded"']) {
      assert.throws(() => parseResponse(RESPONSE_MAP, 200, Buffer.from(body)), ProcessorError, JSON.stringify(body));
    }
  });

  it('follows dotted paths into nested objects and arrays', () => {
    const map = {
      approved: { path: 'data.payment.state', equals: 'AUTHORISED' },
      authorizationCode: 'data.payment.auth.code',
      networkTransactionId: 'data.payment.refs.0.id',
      cvvResult: 'data.payment.checks.cvv',
    };
    const r = parseResponse(
      map,
      201,
      json({ data: { payment: { state: 'AUTHORISED', auth: { code: 987654 }, refs: [{ id: 'nt_1' }], checks: { cvv: 'M' } } } }),
    );
    assert.deepEqual([r.status, r.authorizationCode, r.networkTransactionId, r.cvvResult], ['approved', '987654', 'nt_1', 'M']);
    const missing = parseResponse(map, 200, json({ data: { payment: { state: 'AUTHORISED', auth: null } } }));
    assert.equal(missing.authorizationCode, null, 'a path through null gives nothing');
    assert.equal(missing.networkTransactionId, null);
  });

  it('a path through __proto__, constructor or inherited properties finds nothing', () => {
    const body = json({ status: 'succeeded', outcome: { authorization_code: 'A1' } });
    const map = {
      ...RESPONSE_MAP,
      authorizationCode: '__proto__.constructor.name',
      declineCode: 'constructor.name',
      networkTransactionId: 'outcome.__proto__.toString',
      avsResult: 'status.length',
    };
    const r = parseResponse(map, 200, body);
    assert.equal(r.status, 'approved');
    assert.equal(r.authorizationCode, null);
    assert.equal(r.networkTransactionId, null);
    assert.equal(r.avsResult, 'U', 'no inherited property (length) is read');
    assert.equal(parseResponse({ ...RESPONSE_MAP, approved: { path: 'constructor.name', equals: 'Object' } }, 200, body).status, 'declined');
    assert.equal(parseResponse({ ...RESPONSE_MAP, approved: { path: '__proto__.constructor.name', equals: 'Object' } }, 200, body).status, 'declined');
    const declined = parseResponse({ ...RESPONSE_MAP, declineCode: '__proto__.decline_code' }, 200, json({ status: 'failed' }));
    assert.equal(declined.declineCode, 'do_not_honor');
    assert.equal(({} as Record<string, unknown>).decline_code, undefined, 'nothing was polluted');
  });
});

describe('http processor: scrub() (ActiveMerchant-style transcripts)', () => {
  const cardNumber = '4000000000001018';
  const cvv = '737';

  const preScrubbed = [
    'POST https://psp.example/v1/payments?ref=order-77',
    'Content-Type: application/json',
    'Authorization: Bearer psp_live_9aWx3Jk',
    'X-Api-Key: key_live_Q2w3e4',
    'Idempotency-Key: cvvops_5f2a',
    '',
    `{"card":{"number":"${cardNumber}","cvc":"${cvv}","exp_month":"12","exp_year":"2030","name":"Ada L"},"three_ds":{"eci":"05","cavv":"${CAVV}"},"amount":1999,"currency":"EUR","reference":"order-77"}`,
    '',
    '<- 200',
    '{"id":"pay_8Kx2","status":"succeeded","authorization_code":"A1B2C3","card":{"last4":"1018","brand":"visa"},"checks":{"cvc_check":"pass"}}',
  ].join('\n');

  const postScrubbed = [
    'POST https://psp.example/v1/payments?ref=order-77',
    'Content-Type: application/json',
    'Authorization: [FILTERED]',
    'X-Api-Key: [FILTERED]',
    'Idempotency-Key: cvvops_5f2a',
    '',
    '{"card":{"number":"[FILTERED]","cvc":"[FILTERED]","exp_month":"12","exp_year":"2030","name":"[FILTERED]"},"three_ds":{"eci":"05","cavv":"[FILTERED]"},"amount":1999,"currency":"EUR","reference":"order-77"}',
    '',
    '<- 200',
    '{"id":"pay_8Kx2","status":"succeeded","authorization_code":"A1B2C3","card":{"last4":"1018","brand":"visa"},"checks":{"cvc_check":"pass"}}',
  ].join('\n');

  it('removes the card number, CVV, CAVV, holder name and credentials and keeps everything else', () => {
    const out = scrub(preScrubbed, [new Secret(cardNumber), new Secret(cvv), new Secret(CAVV), new Secret('Ada L'), null]);
    assert.equal(out, postScrubbed);
    for (const gone of [cardNumber, cvv, CAVV, 'psp_live_9aWx3Jk', 'key_live_Q2w3e4']) assert.ok(!out.includes(gone), `${gone} is still there`);
  });

  it('without the secrets list: a card-number-shaped run of digits, a "cvc"/"cvv" JSON field and Authorization headers are still removed', () => {
    const raw =
      'authorization: Basic dXNlcjpwYXNz\nAPI-Key: abc\n\n{"pan":"5555555555554402","cvc":"123","CVV2" : "4567","security_code":"999","amount":1999,"order":"o-1"}';
    const out = scrub(raw, []);
    assert.equal(
      out,
      'authorization: [FILTERED]\nAPI-Key: [FILTERED]\n\n{"pan":"[FILTERED]","cvc":"[FILTERED]","CVV2" : "[FILTERED]","security_code":"[FILTERED]","amount":1999,"order":"o-1"}',
    );
  });

  it('leaves a transcript without secrets unchanged', () => {
    const clean = 'GET https://psp.example/v1/payments?key=cvvops_1\nAccept: application/json\n\n\n<- 404\n{"error":"not_found","amount":1999}';
    assert.equal(scrub(clean, []), clean);
    assert.equal(scrub(clean, [null, undefined, '', 'ab']), clean, 'empty and very short secrets are ignored');
  });
});
