import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { CvvOps, CvvOpsError, type TokenFailureReason } from '../../packages/node/src/index.js';
import { auth, decodeJws, makeHarness, TEST_CARD, type TestMerchant } from '../helpers/harness.js';
import { json, merchantOf, serve, type Served, StubServer } from './helpers.js';

/** issue 17: verifyToken, offline verification of session tokens with the JWKS (API.md section 10, SECURITY.md). */

async function refused(p: Promise<unknown>, reason: TokenFailureReason): Promise<CvvOpsError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CvvOpsError, String(err));
    assert.equal(err.reason, reason, `${err.code}: ${err.message}`);
    assert.equal(err.code, reason === 'expired' || reason === 'too_old' ? 'token_expired' : 'invalid_token');
    assert.equal(err.status, undefined);
    return err;
  }
  assert.fail(`accepted; expected ${reason}`);
}

describe('verifyToken against the server: key rotation, another issuer, ES256', () => {
  let a: Served;
  let m: TestMerchant;
  before(async () => {
    a = await serve();
    m = await merchantOf(a);
  });
  after(() => a.close());

  const newSession = async (c: CvvOps) => {
    const card = await c.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    return c.sessions.create({ card: card.token, operations: ['collectCvv', 'charge'], amount: { value: 1000, currency: 'EUR' } });
  };

  it('verifies across a signing-key rotation: the new kid makes the SDK fetch the JWKS again; old tokens still verify', async () => {
    const cvvops = new CvvOps(m.testKey, { baseUrl: a.base, jwksCooldownMs: 0 });
    const before = await newSession(cvvops);
    assert.equal((await cvvops.verifyToken(before.token)).sub, before.id);
    assert.equal(cvvops.jwksFetches, 1);

    const oldKid = decodeJws(before.token).header.kid;
    const newKid = await a.h.deps.tokens.rotate('test');
    assert.notEqual(newKid, oldKid);
    const afterRotation = await newSession(cvvops);
    assert.equal(decodeJws(afterRotation.token).header.kid, newKid);
    assert.equal((await cvvops.verifyToken(afterRotation.token)).sub, afterRotation.id);
    assert.equal(cvvops.jwksFetches, 2, 'an unknown kid fetched the key set again');
    assert.equal((await cvvops.verifyToken(before.token)).sub, before.id, 'a token of the retired key verifies while it lives');
    assert.equal(cvvops.jwksFetches, 2);
  });

  it('with the cooldown, a new kid right after a fetch is unknown_key until the cooldown has passed', async () => {
    let now = Date.now();
    const cvvops = new CvvOps(m.testKey, { baseUrl: a.base, jwksCooldownMs: 2000, now: () => now });
    const s1 = await newSession(cvvops);
    await cvvops.verifyToken(s1.token);
    await a.h.deps.tokens.rotate('test');
    const s2 = await newSession(cvvops);
    await refused(cvvops.verifyToken(s2.token), 'unknown_key');
    await refused(cvvops.verifyToken(s2.token), 'unknown_key');
    assert.equal(cvvops.jwksFetches, 1, 'the cooldown held');
    now += 1999;
    await refused(cvvops.verifyToken(s2.token), 'unknown_key');
    assert.equal(cvvops.jwksFetches, 1, 'the cooldown held to its last millisecond');
    now += 1;
    assert.equal((await cvvops.verifyToken(s2.token)).sub, s2.id);
    assert.equal(cvvops.jwksFetches, 2);
  });

  it('refuses a token of another issuer (an instance with another PUBLIC_BASE_URL, same keys), and takes it when that is the issuer configured', async () => {
    const b = await makeHarness({ shareWith: a.h, env: { PUBLIC_BASE_URL: 'http://other-address.test' } });
    try {
      const card = await request(b.app).post('/Cards').set(auth(m.testKey)).send({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
      const other = await request(b.app)
        .post('/CvvOperations')
        .set(auth(m.testKey))
        .send({ card: card.body.token, operations: ['collectCvv'] });
      assert.equal(other.status, 201);
      const cvvops = new CvvOps(m.testKey, { baseUrl: a.base });
      await refused(cvvops.verifyToken(other.body.token), 'wrong_issuer');
      const otherIssuer = new CvvOps(m.testKey, { baseUrl: a.base, issuer: 'http://other-address.test/' });
      assert.equal((await otherIssuer.verifyToken(other.body.token)).iss, 'http://other-address.test');
      const own = await newSession(cvvops);
      await refused(otherIssuer.verifyToken(own.token), 'wrong_issuer');
    } finally {
      await b.close();
    }
  });

  it("refuses another merchant's token (wrong_merchant), and a live-mode token with a test key", async () => {
    const other = await merchantOf(a);
    const theirs = new CvvOps(other.testKey, { baseUrl: a.base });
    const t = await newSession(theirs);
    const mine = new CvvOps(m.testKey, { baseUrl: a.base });
    await refused(mine.verifyToken(t.token), 'wrong_merchant');
    // The audience may be given instead of read from GET /Merchant.
    const asOther = new CvvOps(m.testKey, { baseUrl: a.base, merchantId: other.id });
    assert.equal((await asOther.verifyToken(t.token)).aud, other.id);
    await refused(asOther.verifyToken((await newSession(mine)).token), 'wrong_merchant');
    // A live-mode token of the same merchant is not for a test key (validateToken says wrong_merchant too).
    const live = new CvvOps(m.liveKey, { baseUrl: a.base, merchantId: m.id });
    await refused(live.verifyToken((await newSession(mine)).token), 'wrong_merchant');
  });

  it('expiry and maxAgeSeconds', async () => {
    const cvvops = new CvvOps(m.testKey, { baseUrl: a.base });
    const card = await cvvops.cards.create({ number: TEST_CARD, expMonth: 12, expYear: 2030 });
    const s = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv'], ttlSeconds: 60 });
    const { iat, exp } = decodeJws(s.token).payload;
    await cvvops.verifyToken(s.token, { currentDate: new Date((exp - 1) * 1000) });
    await refused(cvvops.verifyToken(s.token, { currentDate: new Date(exp * 1000) }), 'expired');
    await cvvops.verifyToken(s.token, { currentDate: new Date(exp * 1000), clockToleranceSeconds: 5 });
    await cvvops.verifyToken(s.token, { maxAgeSeconds: 30, currentDate: new Date((iat + 30) * 1000) });
    await refused(cvvops.verifyToken(s.token, { maxAgeSeconds: 30, currentDate: new Date((iat + 31) * 1000) }), 'too_old');
  });

  it('ES256 keys, and a switch of algorithm: both keys in the JWKS, each token verified with its own key and algorithm', async () => {
    const es = await serve({ env: { CVVOPS_SIGNING_ALG: 'ES256' } });
    try {
      const em = await merchantOf(es);
      const c1 = new CvvOps(em.testKey, { baseUrl: es.base });
      const t1 = await newSession(c1);
      assert.equal(decodeJws(t1.token).header.alg, 'ES256');
      assert.equal((await c1.verifyToken(t1.token)).sub, t1.id);

      // A second instance on the same database configured for EdDSA: it makes an Ed25519 key active.
      const ed = await serve({ shareWith: es.h, env: { PUBLIC_BASE_URL: es.base, CVVOPS_SIGNING_ALG: 'EdDSA' } });
      try {
        const c2 = new CvvOps(em.testKey, { baseUrl: ed.base, issuer: es.base });
        const t2 = await newSession(c2);
        assert.equal(decodeJws(t2.token).header.alg, 'EdDSA');
        assert.equal((await c2.verifyToken(t2.token)).sub, t2.id);
        assert.equal((await c2.verifyToken(t1.token)).sub, t1.id);
        // alg is the key's: an ES256 kid with the header saying EdDSA (and the reverse) is refused.
        const swap = (tok: string, alg: string) => {
          const [h, p, sig] = tok.split('.');
          const header = { ...JSON.parse(Buffer.from(h!, 'base64url').toString()), alg };
          return `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${p}.${sig}`;
        };
        await refused(c2.verifyToken(swap(t1.token, 'EdDSA')), 'bad_signature');
        await refused(c2.verifyToken(swap(t2.token, 'ES256')), 'bad_signature');
      } finally {
        await ed.close();
      }
    } finally {
      await es.close();
    }
  });
});

// ---------------------------------------------------------------------------
// Forged and malformed tokens, with keys of our own behind a stub JWKS.

const ISS = 'https://cvv.example';
const MER = 'mer_stub';
const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: ISS,
    aud: MER,
    sub: 'cvo_1',
    jti: 'j1',
    iat: now,
    exp: now + 600,
    seq: 0,
    mode: 'test',
    ops: ['collectCvv'],
    card: { token: 'tok_1', brand: 'visa', last4: '1018', cvvLength: 3 },
    form: 'hosted',
    res: {},
    ...over,
  };
}

function signJws(header: Record<string, unknown>, payload: Record<string, unknown>, key: KeyObject, alg: 'EdDSA' | 'ES256' = 'EdDSA'): string {
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = sign(alg === 'EdDSA' ? null : 'sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

describe('verifyToken: what it refuses (stub JWKS)', () => {
  let stub: StubServer;
  const ed = generateKeyPairSync('ed25519');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const attacker = generateKeyPairSync('ed25519');
  const edJwk = { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed1', alg: 'EdDSA', use: 'sig' };
  const ecJwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec1', alg: 'ES256', use: 'sig' };
  let jwks: unknown[] = [edJwk, ecJwk];
  let jwksHits = 0;
  let merchantHits = 0;
  const H = { alg: 'EdDSA', kid: 'ed1', typ: 'cvvops-session+jwt' };
  let cvvops: CvvOps;

  before(async () => {
    stub = await StubServer.start();
    stub.handle = (r, res) => {
      if (r.path === '/.well-known/jwks.json') {
        jwksHits++;
        assert.equal(r.headers.authorization, undefined, 'the API key is not sent for the public JWKS');
        return json(res, 200, { keys: jwks });
      }
      if (r.path === '/Merchant') {
        merchantHits++;
        return json(res, 200, { id: MER, mode: 'test' });
      }
      json(res, 404, { error: { code: 'not_found', message: 'no', requestId: 'req_x' } });
    };
    cvvops = new CvvOps(`sk_test_${'s'.repeat(43)}`, { baseUrl: stub.url, issuer: ISS, jwksCooldownMs: 60_000 });
  });
  after(() => stub.close());

  it('accepts a good EdDSA token and a good ES256 token; reads the JWKS and the merchant once, even for concurrent calls', async () => {
    const results = await Promise.all([
      ...Array.from({ length: 5 }, () => cvvops.verifyToken(signJws(H, claims(), ed.privateKey))),
      cvvops.verifyToken(signJws({ ...H, alg: 'ES256', kid: 'ec1' }, claims(), ec.privateKey, 'ES256')),
    ]);
    for (const c of results) assert.equal(c.sub, 'cvo_1');
    assert.equal(jwksHits, 1);
    assert.equal(merchantHits, 1);
  });

  it('refuses alg none, HS256 (key confusion), an alg the key is not for, and unsupported algs', async () => {
    await refused(cvvops.verifyToken(`${b64({ ...H, alg: 'none' })}.${b64(claims())}.`), 'malformed');
    await refused(cvvops.verifyToken(`${b64({ ...H, alg: 'none' })}.${b64(claims())}.AAAA`), 'bad_signature');
    const input = `${b64({ ...H, alg: 'HS256' })}.${b64(claims())}`;
    const hmac = createHmac('sha256', JSON.stringify(edJwk)).update(input).digest('base64url');
    await refused(cvvops.verifyToken(`${input}.${hmac}`), 'bad_signature');
    await refused(cvvops.verifyToken(signJws({ ...H, alg: 'ES256' }, claims(), ed.privateKey)), 'bad_signature');
    await refused(cvvops.verifyToken(signJws({ ...H, alg: 'RS256' }, claims(), ed.privateKey)), 'bad_signature');
  });

  it('refuses embedded keys and key URLs (jwk, jku, x5u, x5c) and crit, even when the signature is good', async () => {
    const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
    await refused(cvvops.verifyToken(signJws({ ...H, kid: 'evil', jwk: attackerJwk }, claims(), attacker.privateKey)), 'bad_signature');
    for (const extra of [
      { jwk: edJwk },
      { jku: `${stub.url}/.well-known/jwks.json` },
      { x5u: 'https://x.example/c.pem' },
      { x5c: ['MIIB'] },
      { crit: ['exp'], exp: 1 },
    ]) {
      await refused(cvvops.verifyToken(signJws({ ...H, ...extra }, claims(), ed.privateKey)), 'bad_signature');
    }
  });

  it('refuses a wrong typ, a forged signature, a tampered payload and a non-canonical signature', async () => {
    await refused(cvvops.verifyToken(signJws({ alg: 'EdDSA', kid: 'ed1' }, claims(), ed.privateKey)), 'wrong_type');
    await refused(cvvops.verifyToken(signJws({ ...H, typ: 'JWT' }, claims(), ed.privateKey)), 'wrong_type');
    await refused(cvvops.verifyToken(signJws(H, claims(), attacker.privateKey)), 'bad_signature');
    const good = signJws(H, claims(), ed.privateKey);
    const [h, , sig] = good.split('.');
    await refused(cvvops.verifyToken(`${h}.${b64(claims({ amt: { value: 1, currency: 'EUR' } }))}.${sig}`), 'bad_signature');
    // The last base64url character of a 64-byte signature carries 4 spare bits: another spelling of the same bytes.
    const last = sig!.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
    await refused(cvvops.verifyToken(`${good.slice(0, -1)}${twin}`), 'bad_signature');
    assert.equal((await cvvops.verifyToken(good)).sub, 'cvo_1');
  });

  it('refuses malformed tokens before any network or cryptography', async () => {
    const hits = jwksHits;
    for (const t of ['', 'abc', 'a.b', 'a.b.c.d', 'a b.c.d', `${'a'.repeat(4000)}.${'b'.repeat(100)}.c`, 42 as unknown as string]) {
      await refused(cvvops.verifyToken(t), 'malformed');
    }
    await refused(cvvops.verifyToken(`${b64('not json')}.${b64(claims())}.AAAA`), 'malformed');
    await refused(cvvops.verifyToken(signJws(H, claims({ sub: undefined }), ed.privateKey)), 'malformed');
    await refused(cvvops.verifyToken(signJws(H, claims({ exp: 'soon' }), ed.privateKey)), 'malformed');
    await refused(cvvops.verifyToken(signJws(H, claims({ nbf: Math.floor(Date.now() / 1000) + 60 }), ed.privateKey)), 'malformed');
    assert.equal(jwksHits, hits);
  });

  it('checks iss, aud, mode and exp', async () => {
    await refused(cvvops.verifyToken(signJws(H, claims({ iss: 'https://evil.example' }), ed.privateKey)), 'wrong_issuer');
    await refused(cvvops.verifyToken(signJws(H, claims({ aud: 'mer_other' }), ed.privateKey)), 'wrong_merchant');
    await refused(cvvops.verifyToken(signJws(H, claims({ mode: 'live' }), ed.privateKey)), 'wrong_merchant');
    const now = Math.floor(Date.now() / 1000);
    await refused(cvvops.verifyToken(signJws(H, claims({ iat: now - 700, exp: now - 1 }), ed.privateKey)), 'expired');
  });

  it('an unknown kid fetches the JWKS again at most once per cooldown; keys of other types or inconsistent algs are not used', async () => {
    jwks = [edJwk, ecJwk, { ...attacker.publicKey.export({ format: 'jwk' }), kid: 'rsa-says', alg: 'RS256' }, { kty: 'oct', k: 'c2VjcmV0', kid: 'oct1' }];
    let now = Date.now();
    const fresh = new CvvOps(`sk_test_${'s'.repeat(43)}`, { baseUrl: stub.url, issuer: ISS, merchantId: MER, jwksCooldownMs: 1000, now: () => now });
    const before = jwksHits;
    await fresh.verifyToken(signJws(H, claims(), ed.privateKey));
    await refused(fresh.verifyToken(signJws({ ...H, kid: 'rsa-says' }, claims(), attacker.privateKey)), 'unknown_key');
    await refused(fresh.verifyToken(signJws({ ...H, kid: 'oct1' }, claims(), attacker.privateKey)), 'unknown_key');
    for (let i = 0; i < 10; i++) await refused(fresh.verifyToken(signJws({ ...H, kid: `nope${i}` }, claims(), ed.privateKey)), 'unknown_key');
    assert.equal(jwksHits - before, 1, 'unknown kids within the cooldown fetched the JWKS again');
    assert.equal(merchantHits, 1, 'merchantId given: GET /Merchant not called');

    // A key published later (a rotation) is found once the cooldown has passed.
    const next = generateKeyPairSync('ed25519');
    jwks = [...jwks, { ...next.publicKey.export({ format: 'jwk' }), kid: 'ed2', alg: 'EdDSA' }];
    await refused(fresh.verifyToken(signJws({ ...H, kid: 'ed2' }, claims(), next.privateKey)), 'unknown_key');
    now += 1000;
    assert.equal((await fresh.verifyToken(signJws({ ...H, kid: 'ed2' }, claims(), next.privateKey))).sub, 'cvo_1');
    assert.equal(jwksHits - before, 2);
  });

  it('a JWKS that cannot be fetched is a connection error, not a token verdict', async () => {
    const down = new CvvOps(`sk_test_${'s'.repeat(43)}`, { baseUrl: 'http://127.0.0.1:9', issuer: ISS, merchantId: MER, maxRetries: 0 });
    await assert.rejects(
      down.verifyToken(signJws(H, claims(), ed.privateKey)),
      (err: CvvOpsError) => err.code === 'connection_error' && err.reason === undefined,
    );
  });
});
