import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  CompactSign,
  createLocalJWKSet,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  importJWK,
  jwtVerify,
  UnsecuredJWT,
  type CompactJWSHeaderParameters,
  type CryptoKey,
  type JWK,
  type SignOptions,
} from 'jose';
import request from 'supertest';
import { auth, collect, decodeJws, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * The token rules of API.md sections 2–4 and 10 and SECURITY.md "Tokens":
 * what the server must accept, and, above all, what it must refuse, and that
 * a refusal never rotates the session's current token.
 */

const TYP = 'cvvops-session+jwt';
const ISSUER = 'http://cvv.test';
type Claims = Record<string, any>;
type SigningKey = CryptoKey | Uint8Array;

const b64json = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');
const segments = (token: string): [string, string, string] => token.split('.') as [string, string, string];

/** A compact JWS over exactly these header and claims, signed with any key jose can use. */
async function signJws(key: SigningKey, header: CompactJWSHeaderParameters, claims: Claims, options?: SignOptions): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader(header).sign(key, options);
}

/** The server's own private signing key for `kid` (out of its encrypted store): forgeries that differ only in the header. */
async function serverKey(h: Harness, kid: string, alg?: string): Promise<SigningKey> {
  const row = (await h.deps.store.signingKeys.list()).find((r) => r.kid === kid);
  assert.ok(row, `signing key ${kid} is in the store`);
  const jwk = JSON.parse(h.deps.keyring.open('signing-key', row.privateSealed, `signing-key|${kid}`).toString('utf8')) as JWK;
  return importJWK(jwk, alg ?? row.alg);
}

async function validate(h: Harness, key: string, token: string): Promise<Record<string, any>> {
  const r = await request(h.app).post('/CvvOperations/validateToken').set(auth(key)).send({ token });
  assert.equal(r.status, 200, `validateToken: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** POST collectCvv with a raw Authorization value (or none) and insist on the refusal. */
async function expectRefusal(h: Harness, authorization: string | undefined, status: number, code: string, what: string): Promise<void> {
  const req = request(h.app).post('/CvvOperations/collectCvv');
  if (authorization !== undefined) req.set('Authorization', authorization);
  const r = await req.send({ cvv: '123' });
  assert.equal(r.status, status, `${what}: ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error?.code, code, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.token, undefined, `${what}: no token is handed out`);
  assert.equal(r.body.result, undefined, `${what}: no result`);
}

/** The session's token is still the current one and nothing was counted: no refusal rotated it. */
async function assertUntouched(h: Harness, m: TestMerchant, s: { id: string }, token: string, what: string): Promise<void> {
  const v = await validate(h, m.testKey, token);
  assert.equal(v.valid, true, `${what}: ${JSON.stringify(v)}`);
  assert.equal(v.current, true, `${what}: the current token was rotated by a refused call`);
  assert.equal(v.claims.seq, decodeJws(token).payload.seq);
  const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
  assert.equal(g.body.attempts.collectCvv.used, 0, `${what}: a refused call counted an attempt`);
  assert.deepEqual(g.body.results, {}, `${what}: a refused call left a result`);
}

/** Replaces a method on one object (an instance the app shares through deps) until restore(). */
function patchMethod<T extends object, K extends keyof T>(obj: T, name: K, make: (original: T[K]) => T[K]): () => void {
  const hadOwn = Object.prototype.hasOwnProperty.call(obj, name);
  const original = obj[name];
  obj[name] = make(original);
  return () => {
    if (hadOwn) obj[name] = original;
    else delete obj[name];
  };
}

/** A promise and its resolver. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Counts the server's signature verifications (TokenService.signatureChecks, also exported as a metric). */
let currentTokens: { signatureChecks: number } | null = null;
function spyOnVerify(): { readonly calls: number; restore(): void } {
  const tokens = currentTokens!;
  const start = tokens.signatureChecks;
  return {
    get calls() {
      return tokens.signatureChecks - start;
    },
    restore() {},
  };
}

describe('session tokens: refusals on the operation endpoint', () => {
  let h: Harness;
  let a: TestMerchant;
  let b: TestMerchant;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'off' } });
    currentTokens = h.deps.tokens;
    a = await makeMerchant(h);
    b = await makeMerchant(h);
  });
  after(() => h.close());

  it('the forging kit is sound: the real claims re-signed with the server key and the normal header are accepted', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const copy = await signJws(await serverKey(h, header.kid), { alg: header.alg, kid: header.kid, typ: TYP }, payload);
    const v = await validate(h, a.testKey, copy);
    assert.equal(v.valid, true, JSON.stringify(v));
    assert.equal(v.current, true);
    assert.equal(v.claims.jti, payload.jti);
  });

  it('a token signed by a foreign Ed25519 key under our kid is 401 invalid_token', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: header.kid, typ: TYP }, payload);
    await expectRefusal(h, `Bearer ${forged}`, 401, 'invalid_token', 'foreign key, our kid');
    // Even claims that would widen the session.
    const wider = await signJws(
      attacker.privateKey,
      { alg: 'EdDSA', kid: header.kid, typ: TYP },
      { ...payload, amt: { value: 99_999_999, currency: 'EUR' }, exp: payload.exp + 86_400 },
    );
    await expectRefusal(h, `Bearer ${wider}`, 401, 'invalid_token', 'foreign key, widened claims');
    await assertUntouched(h, a, s, s.token, 'forged');
    assert.equal((await collect(h, s.token)).status, 200, 'the real token still works');
  });

  it('a tampered payload (ops, aud, amt, exp, sub) with the original signature is 401 invalid_token', async () => {
    const s = await makeSession(h, a.testKey, { operations: ['threeDS'], amount: undefined });
    const other = await makeSession(h, b.testKey);
    const [hd, pl, sig] = segments(s.token);
    const { payload } = decodeJws(s.token);
    const variants: Array<[string, Claims]> = [
      ['ops widened', { ...payload, ops: ['collectCvv', 'threeDS', 'charge'] }],
      ['aud changed', { ...payload, aud: b.id }],
      ['amt added', { ...payload, amt: { value: 1_000_000, currency: 'EUR' } }],
      ['exp extended', { ...payload, exp: payload.exp + 86_400 }],
      ['sub changed', { ...payload, sub: other.id }],
      ['mode changed', { ...payload, mode: 'live' }],
    ];
    for (const [what, claims] of variants) {
      const tampered = `${hd}.${b64json(claims)}.${sig}`;
      assert.notEqual(tampered, s.token);
      await expectRefusal(h, `Bearer ${tampered}`, 401, 'invalid_token', what);
    }
    // A signature transplanted from another real token.
    await expectRefusal(h, `Bearer ${hd}.${pl}.${segments(other.token)[2]}`, 401, 'invalid_token', 'transplanted signature');
    // The untampered token is refused only for the reason the session gives (collectCvv is not allowed).
    const r = await collect(h, s.token);
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'operation_not_allowed');
    assert.equal((await validate(h, a.testKey, s.token)).current, true);
    assert.equal((await collect(h, other.token)).status, 200, 'the other session was not touched either');
  });

  it('alg "none" (unsecured JWT), with or without our typ and kid, is 401 invalid_token', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const unsecured = new UnsecuredJWT(payload).encode();
    assert.ok(unsecured.endsWith('.'));
    const noneHeader = b64json({ alg: 'none', kid: header.kid, typ: TYP });
    const pl = segments(s.token)[1];
    for (const [what, t] of [
      ['UnsecuredJWT', unsecured],
      ['none + our typ and kid, empty signature', `${noneHeader}.${pl}.`],
      ['none + our typ and kid, original signature kept', `${noneHeader}.${pl}.${segments(s.token)[2]}`],
      ['"None" spelled differently', `${b64json({ alg: 'None', kid: header.kid, typ: TYP })}.${pl}.${segments(s.token)[2]}`],
    ] as const) {
      await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', what);
      const v = await validate(h, a.testKey, t);
      assert.equal(v.valid, false, what);
    }
    await assertUntouched(h, a, s, s.token, 'alg none');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('HMAC (HS256) tokens under our kid, keyed with our public key or any secret, are 401 invalid_token', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const jwks = (await request(h.app).get('/.well-known/jwks.json')).body as { keys: JWK[] };
    const pub = jwks.keys.find((k) => k.kid === header.kid);
    assert.ok(pub?.x, 'our public key is in the JWKS');
    const pem = await exportSPKI((await importJWK(pub, 'EdDSA')) as CryptoKey);
    const secrets: Array<[string, Uint8Array]> = [
      ['raw public key bytes', new Uint8Array(Buffer.from(pub.x, 'base64url'))],
      ['public JWK JSON', new TextEncoder().encode(JSON.stringify(pub))],
      ['public key PEM', new TextEncoder().encode(pem)],
      ['an arbitrary secret', new TextEncoder().encode('secret-secret-secret-secret-32by')],
    ];
    for (const [what, secret] of secrets) {
      for (const alg of ['HS256', 'HS512']) {
        const t = await signJws(secret, { alg, kid: header.kid, typ: TYP }, payload);
        await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', `${alg} with ${what}`);
        const v = await validate(h, a.testKey, t);
        assert.equal(v.valid, false, `${alg} with ${what}`);
      }
    }
    await assertUntouched(h, a, s, s.token, 'HMAC');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('another algorithm than the configured one is refused even when signed by our own key', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    // 'Ed25519' (RFC 9864) names the same key type, but only the configured 'EdDSA' is on the allowlist.
    const ed = await signJws(await serverKey(h, header.kid, 'Ed25519'), { alg: 'Ed25519', kid: header.kid, typ: TYP }, payload);
    await expectRefusal(h, `Bearer ${ed}`, 401, 'invalid_token', 'alg Ed25519');
    // ES256 from a foreign P-256 key, under our kid.
    const p256 = await generateKeyPair('ES256');
    await expectRefusal(
      h,
      `Bearer ${await signJws(p256.privateKey, { alg: 'ES256', kid: header.kid, typ: TYP }, payload)}`,
      401,
      'invalid_token',
      'ES256 foreign',
    );
    await assertUntouched(h, a, s, s.token, 'other alg');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('an embedded attacker key (jwk header), signed with that key, is 401 invalid_token', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(attacker.publicKey);
    for (const [what, hdr] of [
      ['jwk + our kid', { alg: 'EdDSA', kid: header.kid, typ: TYP, jwk }],
      ['jwk, no kid', { alg: 'EdDSA', typ: TYP, jwk }],
    ] as const) {
      const t = await signJws(attacker.privateKey, hdr, payload);
      await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', what);
      assert.equal((await validate(h, a.testKey, t)).valid, false, what);
    }
    await assertUntouched(h, a, s, s.token, 'jwk');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('jwk, jku, x5u, x5c or crit in the header is refused even when the signature is ours, before any signature check', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const ours = await serverKey(h, header.kid);
    const pub = ((await request(h.app).get('/.well-known/jwks.json')).body.keys as JWK[]).find((k) => k.kid === header.kid)!;
    const base = { alg: header.alg as string, kid: header.kid as string, typ: TYP };
    const variants: Array<[string, CompactJWSHeaderParameters, SignOptions?]> = [
      ['jwk (our own public key)', { ...base, jwk: { kty: pub.kty!, crv: pub.crv, x: pub.x } }],
      ['jku', { ...base, jku: 'https://attacker.example/jwks.json' }],
      ['x5u', { ...base, x5u: 'https://attacker.example/cert.pem' }],
      ['x5c', { ...base, x5c: ['MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGU='] }],
      ['crit (an extension)', { ...base, crit: ['x-ext'], 'x-ext': true }, { crit: { 'x-ext': true } }],
      ['crit (exp)', { ...base, crit: ['exp'], exp: payload.exp }, { crit: { exp: true } }],
    ];
    for (const [what, hdr, opts] of variants) {
      const t = await signJws(ours, hdr, payload, opts);
      const spy = spyOnVerify();
      try {
        await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', what);
        assert.equal(spy.calls, 0, `${what}: refused before any signature verification`);
      } finally {
        spy.restore();
      }
      const v = await validate(h, a.testKey, t);
      assert.equal(v.valid, false, `${what}: ${JSON.stringify(v)}`);
    }
    // The spy does see a real verification: the control token (our key and header, bytes this server never issued,
    // so its signature cannot be taken as known) is verified cryptographically.
    const control = await signJws(ours, { alg: base.alg, kid: base.kid, typ: TYP }, { ...payload, control: 1 });
    const spy = spyOnVerify();
    try {
      const v = await validate(h, a.testKey, control);
      assert.equal(v.valid, true);
      assert.ok(!('control' in v.claims), 'validateToken answers the claims of our profile, never one a token adds');
      assert.ok(spy.calls > 0, 'the spy counts verifications');
    } finally {
      spy.restore();
    }
    await assertUntouched(h, a, s, s.token, 'forbidden header params');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('a wrong or missing typ is 401 invalid_token, even when signed by our key', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const ours = await serverKey(h, header.kid);
    for (const typ of ['JWT', 'at+jwt', 'CVVOPS-SESSION+JWT', 'application/cvvops-session+jwt+x', undefined]) {
      const hdr: CompactJWSHeaderParameters = { alg: header.alg, kid: header.kid, ...(typ === undefined ? {} : { typ }) };
      const t = await signJws(ours, hdr, payload);
      await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', `typ ${typ}`);
      assert.deepEqual(await validate(h, a.testKey, t), { valid: false, reason: 'wrong_type' }, `typ ${typ}`);
    }
    await assertUntouched(h, a, s, s.token, 'typ');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('missing required claims or a foreign issuer are refused, even when signed by our key', async () => {
    const s = await makeSession(h, a.testKey);
    const { header, payload } = decodeJws(s.token);
    const ours = await serverKey(h, header.kid);
    const variants: Array<[string, Claims]> = [['iss foreign', { ...payload, iss: 'https://attacker.example' }]];
    for (const claim of ['exp', 'iat', 'jti', 'sub', 'aud', 'iss']) {
      const { [claim]: _dropped, ...rest } = payload;
      variants.push([`no ${claim}`, rest]);
    }
    variants.push(['exp as a string', { ...payload, exp: String(payload.exp) }]);
    for (const [what, claims] of variants) {
      const t = await signJws(ours, { alg: header.alg, kid: header.kid, typ: TYP }, claims);
      await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', what);
      const v = await validate(h, a.testKey, t);
      assert.equal(v.valid, false, `${what}: ${JSON.stringify(v)}`);
    }
    await assertUntouched(h, a, s, s.token, 'claims');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('an unknown kid (or none) is 401 invalid_token', async () => {
    const s = await makeSession(h, a.testKey);
    const { payload } = decodeJws(s.token);
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    for (const kid of ['unknown-kid', '__proto__', 'constructor', '', undefined]) {
      const hdr: CompactJWSHeaderParameters = { alg: 'EdDSA', typ: TYP, ...(kid === undefined ? {} : { kid }) };
      await expectRefusal(h, `Bearer ${await signJws(attacker.privateKey, hdr, payload)}`, 401, 'invalid_token', `kid ${kid}`);
    }
    await assertUntouched(h, a, s, s.token, 'kid');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('an Authorization value over 4 KiB is 401 invalid_token before any cryptography, whatever it carries', async () => {
    const s = await makeSession(h, a.testKey);
    const [hd, pl, sig] = segments(s.token);
    const cases: Array<[string, string]> = [
      ['a 5000-character base64url token', `Bearer ${'A'.repeat(2000)}.${'B'.repeat(2000)}.${'C'.repeat(1000)}`],
      ['the real token with a signature padded past 4 KiB', `Bearer ${hd}.${pl}.${sig}${'A'.repeat(4096)}`],
      ['a huge value', `Bearer ${'x'.repeat(10_000)}`],
      // The whole Authorization value is what is limited: 4097 characters, the current token inside, padded with spaces.
      ['4097 characters carrying the current token', `Bearer${' '.repeat(4097 - 'Bearer'.length - s.token.length)}${s.token}`],
    ];
    for (const [what, value] of cases) {
      assert.ok(value.length > 4096, what);
      const spy = spyOnVerify();
      try {
        await expectRefusal(h, value, 401, 'invalid_token', what);
        assert.equal(spy.calls, 0, `${what}: no signature verification`);
      } finally {
        spy.restore();
      }
    }
    await assertUntouched(h, a, s, s.token, 'over 4 KiB');
    // Exactly 4 KiB is not "over": the same padding one character shorter is accepted.
    const exact = `Bearer${' '.repeat(4096 - 'Bearer'.length - s.token.length)}${s.token}`;
    assert.equal(exact.length, 4096);
    const ok = await request(h.app).post('/CvvOperations/collectCvv').set('Authorization', exact).send({ cvv: '123' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  it('characters outside base64url and "." are 401 invalid_token before any cryptography', async () => {
    // A token whose signature has a base64url-only character ('-' or '_'), so that its standard-base64 twin differs.
    let s = await makeSession(h, a.testKey);
    for (let i = 0; i < 50 && !/[-_]/.test(segments(s.token)[2]); i++) s = await makeSession(h, a.testKey);
    const [hd, pl, sig] = segments(s.token);
    // The same token in the standard base64 alphabet: lenient decoders read the very same bytes.
    const std = (x: string) => x.replace(/-/g, '+').replace(/_/g, '/');
    assert.match(sig, /[-_]/, 'the signature has a base64url-only character to convert');
    const cases: Array<[string, string]> = [
      ['standard base64 alphabet', `${std(hd)}.${std(pl)}.${std(sig)}`],
      ['padding "=" appended', `${s.token}=`],
      ['padding "==" in the signature', `${hd}.${pl}.${sig}==`],
      ['a "+" in the signature', `${hd}.${pl}.+${sig}`],
      ['a "/" in the payload', `${hd}.${pl}/.${sig}`],
      ['a "~"', `${hd}.${pl}.${sig}~`],
      ['a "!"', `${hd}!.${pl}.${sig}`],
      ['a "%"', `${hd}.${pl}.${sig}%3D`],
      ['a "," for a "."', `${hd},${pl}.${sig}`],
      ['four segments', `${s.token}.${sig}`],
      ['two segments', `${hd}.${pl}`],
      ['a trailing "."', `${s.token}.`],
      ['JSON serialization', JSON.stringify({ protected: hd, payload: pl, signature: sig })],
    ];
    for (const [what, t] of cases) {
      assert.notEqual(t, s.token);
      const spy = spyOnVerify();
      try {
        await expectRefusal(h, `Bearer ${t}`, 401, 'invalid_token', what);
        assert.equal(spy.calls, 0, `${what}: no signature verification`);
      } finally {
        spy.restore();
      }
      assert.deepEqual(await validate(h, a.testKey, t), { valid: false, reason: 'malformed' }, what);
    }
    await assertUntouched(h, a, s, s.token, 'charset');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('an expired token is 401 token_expired, and the clock turned back finds the token untouched', async () => {
    const s = await makeSession(h, a.testKey, { ttlSeconds: 60 });
    h.clock.advance(61_000);
    try {
      await expectRefusal(h, `Bearer ${s.token}`, 401, 'token_expired', 'expired');
      assert.deepEqual(await validate(h, a.testKey, s.token), { valid: false, reason: 'expired' });
      // An expired token whose signature is forged is not "expired": the signature is checked first.
      const { header, payload } = decodeJws(s.token);
      const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
      const forged = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: header.kid, typ: TYP }, payload);
      await expectRefusal(h, `Bearer ${forged}`, 401, 'invalid_token', 'forged and expired');
      assert.deepEqual(await validate(h, a.testKey, forged), { valid: false, reason: 'bad_signature' });
    } finally {
      h.clock.advance(-61_000);
    }
    await assertUntouched(h, a, s, s.token, 'expired');
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('an API key on an operation endpoint is 401 wrong_credential_type', async () => {
    for (const key of [a.testKey, a.liveKey, 'sk_test_not_a_real_key']) {
      await expectRefusal(h, `Bearer ${key}`, 401, 'wrong_credential_type', key.slice(0, 8));
    }
  });

  it('a session token on a merchant endpoint is 401 wrong_credential_type and reveals nothing', async () => {
    const s = await makeSession(h, a.testKey);
    const calls = [
      request(h.app).get(`/CvvOperations/${s.id}`).set(auth(s.token)),
      request(h.app).post('/CvvOperations/validateToken').set(auth(s.token)).send({ token: s.token }),
      request(h.app).post(`/CvvOperations/${s.id}/token`).set(auth(s.token)),
      request(h.app).post(`/CvvOperations/${s.id}/cancel`).set(auth(s.token)),
    ];
    for (const call of calls) {
      const r = await call;
      assert.equal(r.status, 401, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'wrong_credential_type');
      assert.deepEqual(Object.keys(r.body), ['error']);
      assert.ok(!r.text.includes(s.id) && !r.text.includes(a.id), 'nothing about the session or merchant');
    }
    await assertUntouched(h, a, s, s.token, 'token on merchant endpoints');
  });

  it('no credential (or not a Bearer one) is 401 unauthenticated', async () => {
    await expectRefusal(h, undefined, 401, 'unauthenticated', 'no Authorization');
    const s = await makeSession(h, a.testKey);
    await expectRefusal(h, `Basic ${Buffer.from(`x:${s.token}`).toString('base64')}`, 401, 'unauthenticated', 'Basic');
    await expectRefusal(h, s.token, 401, 'unauthenticated', 'no scheme');
    await assertUntouched(h, a, s, s.token, 'unauthenticated');
  });

  it('a rotated-out token is 409 token_superseded and leaves the current token alone', async () => {
    const s = await makeSession(h, a.testKey);
    const r1 = await collect(h, s.token, '123');
    assert.equal(r1.status, 200);
    const r2 = await collect(h, r1.body.token, '123');
    assert.equal(r2.status, 200);
    for (const [what, t, cvv] of [
      ['t0', s.token, '123'],
      ['t0 other body', s.token, '456'],
      ['t1 other body', r1.body.token, '456'],
    ] as const) {
      const r = await collect(h, t, cvv);
      assert.equal(r.status, 409, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'token_superseded');
    }
    const v = await validate(h, a.testKey, r2.body.token);
    assert.equal(v.current, true);
    assert.equal(v.claims.seq, 2);
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(a.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 2, 'superseded calls count nothing');
    assert.equal((await collect(h, r2.body.token, '789')).status, 200);
  });

  it("merchant A's token works on an operation; validated with merchant B's key it is wrong_merchant and nothing else", async () => {
    const s = await makeSession(h, a.testKey);
    const r = await collect(h, s.token);
    assert.equal(r.status, 200, 'the operation endpoint does not care which merchant the token is for');
    for (const [what, key] of [
      ['B test key', b.testKey],
      ['B live key', b.liveKey],
      ["A's live key for a test token", a.liveKey],
    ] as const) {
      for (const t of [r.body.token, s.token]) {
        const res = await request(h.app).post('/CvvOperations/validateToken').set(auth(key)).send({ token: t });
        assert.equal(res.status, 200);
        assert.deepEqual(res.body, { valid: false, reason: 'wrong_merchant' }, what);
        assert.ok(!res.text.includes(s.id) && !res.text.includes(a.id), `${what}: nothing of A leaks`);
      }
    }
    // Nor does B learn that A's token has expired.
    h.clock.advance(901_000);
    try {
      assert.deepEqual(await validate(h, b.testKey, r.body.token), { valid: false, reason: 'wrong_merchant' });
      assert.deepEqual(await validate(h, a.testKey, r.body.token), { valid: false, reason: 'expired' });
    } finally {
      h.clock.advance(-901_000);
    }
    const own = await validate(h, a.testKey, r.body.token);
    assert.equal(own.valid, true);
    assert.equal(own.current, true);
  });
});

describe('validateToken: every reason, exactly', () => {
  let h: Harness;
  let m: TestMerchant;
  let other: TestMerchant;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'off' } });
    currentTokens = h.deps.tokens;
    m = await makeMerchant(h);
    other = await makeMerchant(h);
  });
  after(() => h.close());

  it('malformed', async () => {
    const s = await makeSession(h, m.testKey);
    const [hd, pl, sig] = segments(s.token);
    for (const t of [
      '',
      'not-a-token',
      'a.b',
      'a.b.c.d',
      `${hd}.${pl}.${sig}=`,
      `${b64json('x').slice(0, -1)}.${pl}.${sig}`,
      `${Buffer.from('not json').toString('base64url')}.${pl}.${sig}`,
      `${b64json([1, 2])}.${pl}.${sig}`,
      `${'A'.repeat(3000)}.${'B'.repeat(3000)}.${'C'.repeat(100)}`,
    ]) {
      assert.deepEqual(await validate(h, m.testKey, t), { valid: false, reason: 'malformed' }, t.slice(0, 60));
    }
    // Over 4 KiB is malformed before any cryptography, even when the signature is genuinely ours.
    const { header, payload } = decodeJws(s.token);
    const big = await signJws(await serverKey(h, header.kid), { alg: header.alg, kid: header.kid, typ: TYP }, { ...payload, pad: 'x'.repeat(4000) });
    assert.ok(big.length > 4096);
    for (const t of [big, `${hd}.${pl}.${sig}${'A'.repeat(4096)}`]) {
      const spy = spyOnVerify();
      try {
        assert.deepEqual(await validate(h, m.testKey, t), { valid: false, reason: 'malformed' }, 'over 4 KiB');
        assert.equal(spy.calls, 0, 'no signature verification');
      } finally {
        spy.restore();
      }
    }
  });

  it('wrong_type', async () => {
    const s = await makeSession(h, m.testKey);
    const { header, payload } = decodeJws(s.token);
    const t = await signJws(await serverKey(h, header.kid), { alg: header.alg, kid: header.kid, typ: 'JWT' }, payload);
    assert.deepEqual(await validate(h, m.testKey, t), { valid: false, reason: 'wrong_type' });
  });

  it('unknown_key', async () => {
    const s = await makeSession(h, m.testKey);
    const { payload } = decodeJws(s.token);
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const t = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: 'no-such-key', typ: TYP }, payload);
    assert.deepEqual(await validate(h, m.testKey, t), { valid: false, reason: 'unknown_key' });
  });

  it('bad_signature: a foreign key under our kid, and a tampered payload', async () => {
    const s = await makeSession(h, m.testKey);
    const { header, payload } = decodeJws(s.token);
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: header.kid, typ: TYP }, payload);
    assert.deepEqual(await validate(h, m.testKey, forged), { valid: false, reason: 'bad_signature' });
    const [hd, , sig] = segments(s.token);
    const tampered = `${hd}.${b64json({ ...payload, ops: ['collectCvv'] })}.${sig}`;
    assert.deepEqual(await validate(h, m.testKey, tampered), { valid: false, reason: 'bad_signature' });
    // Signed by a foreign key and claiming another merchant: still bad_signature, never wrong_merchant.
    const foreignAud = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: header.kid, typ: TYP }, { ...payload, aud: other.id });
    assert.deepEqual(await validate(h, m.testKey, foreignAud), { valid: false, reason: 'bad_signature' });
  });

  it('expired', async () => {
    const s = await makeSession(h, m.testKey, { ttlSeconds: 60 });
    const now = h.clock.now();
    const exp = decodeJws(s.token).payload.exp * 1000;
    try {
      h.clock.set(exp - 1);
      assert.equal((await validate(h, m.testKey, s.token)).valid, true, 'alive a millisecond before exp');
      h.clock.set(exp);
      assert.deepEqual(await validate(h, m.testKey, s.token), { valid: false, reason: 'expired' }, 'dead at exp (RFC 7519: now must be before exp)');
    } finally {
      h.clock.set(now);
    }
    assert.equal((await validate(h, m.testKey, s.token)).valid, true);
  });

  it('wrong_merchant: another merchant, and the same merchant in the other mode', async () => {
    const s = await makeSession(h, m.testKey);
    assert.deepEqual(await validate(h, other.testKey, s.token), { valid: false, reason: 'wrong_merchant' });
    assert.deepEqual(await validate(h, m.liveKey, s.token), { valid: false, reason: 'wrong_merchant' });
    const live = await makeSession(h, m.liveKey, { card: await makeCard(h, m.liveKey, { number: '4111111111111111' }) });
    assert.equal(decodeJws(live.token).payload.mode, 'live');
    assert.deepEqual(await validate(h, m.testKey, live.token), { valid: false, reason: 'wrong_merchant' });
    assert.equal((await validate(h, m.liveKey, live.token)).valid, true);
    assert.equal((await validate(h, m.testKey, s.token)).valid, true);
  });
});

describe('concurrent calls with one token', () => {
  let h: Harness;
  let m: TestMerchant;
  let server: Server;
  let base: string;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'off' } });
    currentTokens = h.deps.tokens;
    m = await makeMerchant(h);
    server = h.app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    server.close();
    await h.close();
  });

  const post = async (token: string, cvv: string): Promise<{ status: number; body: Record<string, any> }> => {
    const r = await fetch(`${base}/CvvOperations/collectCvv`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ cvv }),
    });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };

  /** The CVV the session's CVC session holds, decrypted. */
  async function storedCvv(s: { id: string; body: Record<string, any> }): Promise<{ id: string; cvv: string }> {
    const c = await h.deps.store.cvc.findUsable(m.id, s.body.card.token, s.id, h.clock.now());
    assert.ok(c, 'a CVC session was stored');
    return { id: c.id, cvv: (await h.deps.vault.open(c)).expose() };
  }

  async function race(cvvs: string[]): Promise<void> {
    const s = await makeSession(h, m.testKey);
    const out = await Promise.all(cvvs.map((cvv) => post(s.token, cvv)));
    const winners = out.map((r, i) => ({ ...r, cvv: cvvs[i]! })).filter((r) => r.status === 200);
    assert.equal(winners.length, 1, `exactly one winner: ${JSON.stringify(out.map((r) => r.status))}`);
    const winner = winners[0]!;
    for (const r of out) {
      if (r.status === 200) continue;
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'token_superseded');
      assert.equal(r.body.token, undefined);
    }
    const stored = await storedCvv(s);
    assert.equal(stored.id, winner.body.result.cvcSession.id, "the stored CVC session is the winner's");
    assert.equal(stored.cvv, winner.cvv, "the stored CVV is the winner's");
    const v = await validate(h, m.testKey, winner.body.token);
    assert.equal(v.current, true);
    assert.equal(v.claims.seq, 1, 'one rotation only');
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 1, 'the losers counted nothing');
  }

  it("two concurrent calls with different CVVs: one 200, one 409 token_superseded, the winner's CVV stored", async () => {
    await race(['123', '456']);
  });

  it('twenty sessions, four concurrent different calls each: always exactly one winner', async () => {
    for (let i = 0; i < 20; i++) await race(['123', '456', '789', '000']);
  });

  it('forced interleaving: four calls that all read the session before any wins: still exactly one winner (one conditional write)', async () => {
    for (let round = 0; round < 5; round++) {
      const n = 4;
      let arrived = 0;
      const barrier = gate();
      // A server that serializes the calls some other way must not hang the test: the barrier opens by itself after 3 s.
      const fallback = setTimeout(() => barrier.open(), 3000);
      // Every call holds after its checks (it has read the session and its jti, and signs its next token just before
      // its transaction) until all four are there.
      const restore = patchMethod(
        h.deps.tokens,
        'sign',
        (original) =>
          async function (this: unknown, ...args: Parameters<typeof original>) {
            // Only the operations' next tokens (seq 1), not the session's first one (seq 0, made by the race itself).
            if (args[0].seq === 1) {
              if (++arrived === n) barrier.open();
              await barrier.promise;
            }
            return original.apply(h.deps.tokens, args);
          },
      );
      try {
        await race(['123', '456', '789', '000']);
        assert.equal(arrived, n, 'all four calls passed the current-token check before any committed');
      } finally {
        clearTimeout(fallback);
        restore();
      }
    }
  });

  it('two concurrent identical calls: one 200 and one 409, or the same response twice; never two new tokens', async () => {
    for (let i = 0; i < 20; i++) {
      const s = await makeSession(h, m.testKey);
      const [x, y] = await Promise.all([post(s.token, '123'), post(s.token, '123')]);
      const ok = [x, y].filter((r) => r.status === 200);
      assert.ok(ok.length >= 1, `one proceeds: ${x.status} ${y.status}`);
      if (ok.length === 2) {
        assert.deepEqual(y.body, x.body, 'a second 200 is the replayed response');
      } else {
        const loser = x.status === 200 ? y : x;
        assert.equal(loser.status, 409, JSON.stringify(loser.body));
        assert.equal(loser.body.error.code, 'token_superseded');
      }
      const v = await validate(h, m.testKey, ok[0]!.body.token);
      assert.equal(v.current, true);
      assert.equal(v.claims.seq, 1);
      assert.equal((await storedCvv(s)).id, ok[0]!.body.result.cvcSession.id);
    }
  });
});

describe('the idempotent replay rule', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_RATE_LIMIT: 'off' } });
    currentTokens = h.deps.tokens;
    m = await makeMerchant(h);
  });
  after(() => h.close());

  it('same token + same body within 60 s: the identical response, no second rotation, no second attempt', async () => {
    const s = await makeSession(h, m.testKey);
    const first = await collect(h, s.token, '123');
    assert.equal(first.status, 200);
    const again = await collect(h, s.token, '123');
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, first.body);
    // A different body with the consumed token is 409, and does not spoil the replay.
    const other = await collect(h, s.token, '456');
    assert.equal(other.status, 409);
    assert.equal(other.body.error.code, 'token_superseded');
    // An error with the produced token does not rotate it, so the replay still holds.
    const bad = await collect(h, first.body.token, '12');
    assert.equal(bad.status, 400);
    h.clock.advance(59_000);
    try {
      const late = await collect(h, s.token, '123');
      assert.equal(late.status, 200, JSON.stringify(late.body));
      assert.deepEqual(late.body, first.body);
    } finally {
      h.clock.advance(-59_000);
    }
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 1, 'replays count nothing');
    assert.equal(g.body.cvv.available, true);
    const v = await validate(h, m.testKey, first.body.token);
    assert.equal(v.current, true);
    assert.equal(v.claims.seq, 1);
    const stored = await h.deps.store.cvc.findUsable(m.id, s.body.card.token, s.id, h.clock.now());
    assert.equal(stored?.id, first.body.result.cvcSession.id, 'a replay stores no new CVC session');
    assert.equal((await h.deps.vault.open(stored!)).expose(), '123');
  });

  it('after 61 s the same repeat is 409 token_superseded', async () => {
    const s = await makeSession(h, m.testKey);
    const first = await collect(h, s.token, '123');
    assert.equal(first.status, 200);
    h.clock.advance(61_000);
    try {
      const r = await collect(h, s.token, '123');
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'token_superseded');
      assert.equal((await validate(h, m.testKey, first.body.token)).current, true);
    } finally {
      h.clock.advance(-61_000);
    }
  });

  it('a call commits at its end: while one with the produced token runs, the first call is still replayed, and of two uses of the produced token the first to commit wins', async () => {
    const s = await makeSession(h, m.testKey);
    const first = await collect(h, s.token, '123');
    assert.equal(first.status, 200);
    const entered = gate();
    const release = gate();
    let held = false;
    // The first call made from here on holds after its checks, just before its transaction.
    const restore = patchMethod(
      h.deps.tokens,
      'sign',
      (original) =>
        async function (this: unknown, ...args: Parameters<typeof original>) {
          if (!held) {
            held = true;
            entered.open();
            await release.promise;
          }
          return original.apply(h.deps.tokens, args);
        },
    );
    try {
      const inFlight = collect(h, first.body.token, '456').then((r) => r); // supertest sends on then()
      await entered.promise; // it has read the session and passed every check; nothing is written yet
      const replay = await collect(h, s.token, '123');
      assert.equal(replay.status, 200, `the token it produced is still current: ${JSON.stringify(replay.body)}`);
      assert.deepEqual(replay.body, first.body, 'the first response again');
      const second = await collect(h, first.body.token, '789');
      assert.equal(second.status, 200, `the use that commits first wins: ${JSON.stringify(second.body)}`);
      release.open();
      const late = await inFlight;
      assert.equal(late.status, 409, JSON.stringify(late.body));
      assert.equal(late.body.error.code, 'token_superseded');
      assert.equal((await validate(h, m.testKey, second.body.token)).current, true);
      const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
      assert.equal(g.body.attempts.collectCvv.used, 2, 'the loser counted nothing');
      const c = await h.deps.store.cvc.findUsable(m.id, s.body.card.token, s.id, h.clock.now());
      assert.ok(c);
      assert.equal((await h.deps.vault.open(c)).expose(), '789', "the winner's CVV is stored, never the loser's");
    } finally {
      release.open();
      restore();
    }
  });

  it('an error in the work (500) changes nothing: no rotation, no attempt, no CVV', async () => {
    const s = await makeSession(h, m.testKey);
    const restore = patchMethod(h.deps.vault, 'sealCvv', () => () => {
      throw new Error('sealing failed');
    });
    let r: Awaited<ReturnType<typeof collect>>;
    try {
      r = await collect(h, s.token, '123');
    } finally {
      restore();
    }
    assert.equal(r.status, 500, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'internal_error');
    assert.equal(r.body.token, undefined);
    const v = await validate(h, m.testKey, s.token);
    assert.equal(v.current, true, 'the presented token is still current');
    assert.equal(v.claims.seq, 0);
    const g = await request(h.app).get(`/CvvOperations/${s.id}`).set(auth(m.testKey));
    assert.equal(g.body.attempts.collectCvv.used, 0);
    assert.equal(g.body.cvv.available, false);
    const ok = await collect(h, s.token, '123');
    assert.equal(ok.status, 200, 'the same call now succeeds (it is not a replay of the error)');
    assert.equal(decodeJws(ok.body.token).payload.seq, 1);
  });

  it('the same token with a different body is 409 at once', async () => {
    const s = await makeSession(h, m.testKey);
    assert.equal((await collect(h, s.token, '123')).status, 200);
    const r = await collect(h, s.token, '456');
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'token_superseded');
  });

  it('once the produced token has been used, the first call can no longer be replayed', async () => {
    const s = await makeSession(h, m.testKey);
    const first = await collect(h, s.token, '123');
    const second = await collect(h, first.body.token, '123');
    assert.equal(second.status, 200);
    const r = await collect(h, s.token, '123');
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'token_superseded');
    // The latest call is itself replayable, with its own response.
    const again = await collect(h, first.body.token, '123');
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, second.body);
    assert.notEqual(second.body.token, first.body.token);
  });
});

describe('offline verification with the JWKS', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    currentTokens = h.deps.tokens;
    m = await makeMerchant(h);
  });
  after(() => h.close());

  const verifyOptions = (aud: string) => ({ algorithms: ['EdDSA'], issuer: ISSUER, audience: aud, typ: TYP, currentDate: new Date(h.clock.now()) });

  it('publishes only public key material', async () => {
    const r = await request(h.app).get('/.well-known/jwks.json');
    assert.equal(r.status, 200);
    assert.ok(Array.isArray(r.body.keys) && r.body.keys.length >= 1);
    for (const k of r.body.keys as JWK[]) {
      assert.equal(k.kty, 'OKP');
      assert.equal(k.crv, 'Ed25519');
      assert.equal(k.alg, 'EdDSA');
      assert.equal(k.use, 'sig');
      assert.equal(typeof k.kid, 'string');
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'])
        assert.equal((k as Record<string, unknown>)[secret], undefined, `no "${secret}" in the JWKS`);
    }
  });

  it('a server token verifies with jose alone; a tampered or forged one does not', async () => {
    const s = await makeSession(h, m.testKey);
    const r = await collect(h, s.token);
    const jwks = createLocalJWKSet((await request(h.app).get('/.well-known/jwks.json')).body);
    for (const t of [s.token, r.body.token]) {
      const { payload, protectedHeader } = await jwtVerify(t, jwks, verifyOptions(m.id));
      assert.equal(payload.sub, s.id);
      assert.equal(payload.aud, m.id);
      assert.equal(protectedHeader.alg, 'EdDSA');
      assert.equal(protectedHeader.typ, TYP);
    }
    const { payload } = decodeJws(r.body.token);
    assert.equal(payload.res.collectCvv.status, 'succeeded');
    const [hd, , sig] = segments(r.body.token);
    const tampered = `${hd}.${b64json({ ...payload, res: { ...payload.res, charge: { status: 'approved' } } })}.${sig}`;
    await assert.rejects(jwtVerify(tampered, jwks, verifyOptions(m.id)), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: decodeJws(r.body.token).header.kid, typ: TYP }, payload);
    await assert.rejects(jwtVerify(forged, jwks, verifyOptions(m.id)), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    // Another merchant verifying offline sees that the token is not theirs.
    await assert.rejects(jwtVerify(r.body.token, jwks, verifyOptions('mer_someoneelse')), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
  });
});

describe('signing key rotation', () => {
  let h: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness();
    currentTokens = h.deps.tokens;
    m = await makeMerchant(h);
  });
  after(() => h.close());

  const jwksKids = async (): Promise<string[]> => ((await request(h.app).get('/.well-known/jwks.json')).body.keys as JWK[]).map((k) => k.kid!);

  it('the JWKS lists both keys (new first); old tokens keep working until they expire; the old key goes after its last token', async () => {
    const s = await makeSession(h, m.testKey, { ttlSeconds: 3600 });
    const s2 = await makeSession(h, m.testKey, { ttlSeconds: 3600 });
    const oldKid = decodeJws(s.token).header.kid as string;
    assert.equal(decodeJws(s2.token).header.kid, oldKid);
    assert.deepEqual(await jwksKids(), [oldKid]);
    h.clock.advance(1000);
    const newKid = await h.deps.tokens.rotate();
    assert.notEqual(newKid, oldKid);
    assert.deepEqual(await jwksKids(), [newKid, oldKid]);

    // A token issued before rotation still works, and what it produces is signed with the new key.
    const r = await collect(h, s.token);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(decodeJws(r.body.token).header.kid, newKid);
    const fresh = await makeSession(h, m.testKey);
    assert.equal(decodeJws(fresh.token).header.kid, newKid);

    const retiredAt = h.clock.now();
    h.clock.advance(3600_000 - 5000);
    try {
      // The other pre-rotation token, near the end of its hour: still in the JWKS, verifiable offline, and usable.
      assert.equal(await h.deps.tokens.pruneRetiredKeys(), 0, 'not yet: tokens of the old key may still be alive');
      assert.deepEqual(await jwksKids(), [newKid, oldKid]);
      const jwks = createLocalJWKSet((await request(h.app).get('/.well-known/jwks.json')).body);
      await jwtVerify(s2.token, jwks, { algorithms: ['EdDSA'], issuer: ISSUER, audience: m.id, typ: TYP, currentDate: new Date(h.clock.now()) });
      const v = await validate(h, m.testKey, s.token);
      assert.equal(v.valid, true, JSON.stringify(v));
      assert.equal(v.current, false);
      const r2 = await collect(h, s2.token);
      assert.equal(r2.status, 200, JSON.stringify(r2.body));
      assert.equal(decodeJws(r2.body.token).header.kid, newKid);

      h.clock.set(retiredAt + (3600 + 60) * 1000 + 1000);
      const pruned = await h.deps.tokens.pruneRetiredKeys();
      assert.equal(pruned, 1);
      assert.deepEqual(await jwksKids(), [newKid]);
      assert.deepEqual(await validate(h, m.testKey, s.token), { valid: false, reason: 'unknown_key' });
      assert.equal(
        (await h.deps.store.signingKeys.list()).some((k) => k.kid === oldKid),
        false,
        'gone from the store too',
      );
    } finally {
      h.clock.set(retiredAt);
    }
    // The new key keeps working.
    assert.equal((await collect(h, r.body.token, '456')).status, 200);
  });
});

describe('ES256 signing', () => {
  let h: Harness;
  let ed: Harness;
  let m: TestMerchant;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_SIGNING_ALG: 'ES256', CVVOPS_RATE_LIMIT: 'off' } });
    currentTokens = h.deps.tokens;
    ed = await makeHarness();
    m = await makeMerchant(h);
  });
  after(async () => {
    await h.close();
    await ed.close();
  });

  it('issues ES256 tokens that verify offline with jose', async () => {
    const s = await makeSession(h, m.testKey);
    const { header } = decodeJws(s.token);
    assert.deepEqual(header, { alg: 'ES256', kid: header.kid, typ: TYP });
    const body = (await request(h.app).get('/.well-known/jwks.json')).body as { keys: JWK[] };
    assert.deepEqual(
      body.keys.map((k) => [k.kid, k.kty, k.crv, k.alg]),
      [[header.kid, 'EC', 'P-256', 'ES256']],
    );
    assert.equal((body.keys[0] as Record<string, unknown>).d, undefined);
    const { payload } = await jwtVerify(s.token, createLocalJWKSet(body), {
      algorithms: ['ES256'],
      issuer: ISSUER,
      audience: m.id,
      typ: TYP,
      currentDate: new Date(h.clock.now()),
    });
    assert.equal(payload.sub, s.id);
    const r = await collect(h, s.token);
    assert.equal(r.status, 200);
    assert.equal(decodeJws(r.body.token).header.alg, 'ES256');
  });

  it('refuses EdDSA tokens', async () => {
    const s = await makeSession(h, m.testKey);
    const { header, payload } = decodeJws(s.token);
    const attacker = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const forged = await signJws(attacker.privateKey, { alg: 'EdDSA', kid: header.kid, typ: TYP }, payload);
    await expectRefusal(h, `Bearer ${forged}`, 401, 'invalid_token', 'EdDSA under the ES256 kid');
    assert.deepEqual(await validate(h, m.testKey, forged), { valid: false, reason: 'bad_signature' });
    // A genuine EdDSA token of another server (EdDSA-configured) is refused too.
    const em = await makeMerchant(ed);
    const edToken = (await makeSession(ed, em.testKey)).token;
    assert.equal(decodeJws(edToken).header.alg, 'EdDSA');
    await expectRefusal(h, `Bearer ${edToken}`, 401, 'invalid_token', 'EdDSA token of another server');
    // A P-256 key that is not ours, under our kid.
    const p256 = await generateKeyPair('ES256');
    await expectRefusal(
      h,
      `Bearer ${await signJws(p256.privateKey, { alg: 'ES256', kid: header.kid, typ: TYP }, payload)}`,
      401,
      'invalid_token',
      'foreign P-256',
    );
    await assertUntouched(h, m, s, s.token, 'ES256 refusals');
    assert.equal((await collect(h, s.token)).status, 200);
  });
});
