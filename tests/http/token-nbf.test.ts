import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CompactSign, importJWK, type CompactJWSHeaderParameters, type CryptoKey, type JWK } from 'jose';
import request from 'supertest';
import { auth, collect, decodeJws, type Harness, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * Security review, point 10: `nbf` (RFC 7519 4.1.5), when a token carries it,
 * is checked. The server never issues `nbf`, but a token signed with its own
 * key and an `nbf` in the future must not be accepted before that time
 * (RFC 8725 3.10: validate all claims). Operations answer 401 invalid_token;
 * validateToken answers `malformed` (see TokenService.verify for why).
 */
const TYP = 'cvvops-session+jwt';
type Claims = Record<string, any>;

async function signJws(key: CryptoKey | Uint8Array, header: CompactJWSHeaderParameters, claims: Claims): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims))).setProtectedHeader(header).sign(key);
}

/** The server's own private signing key (out of its encrypted store). */
async function serverKey(h: Harness, kid: string): Promise<CryptoKey | Uint8Array> {
  const row = (await h.deps.store.signingKeys.list()).find((r) => r.kid === kid);
  assert.ok(row, `signing key ${kid} is in the store`);
  const jwk = JSON.parse(h.deps.keyring.open('signing-key', row.privateSealed, `signing-key|${kid}`).toString('utf8')) as JWK;
  return importJWK(jwk, row.alg);
}

describe('session tokens: nbf', () => {
  let h: Harness;
  let a: TestMerchant;
  before(async () => {
    h = await makeHarness();
    a = await makeMerchant(h);
  });
  after(() => h.close());

  /** The session's real claims, with `nbf` set, re-signed with the server's own key and header. */
  async function withNbf(token: string, nbf: unknown): Promise<string> {
    const { header, payload } = decodeJws(token);
    return signJws(await serverKey(h, header.kid), { alg: header.alg, kid: header.kid, typ: TYP }, { ...payload, nbf });
  }
  const validate = async (token: string) => {
    const r = await request(h.app).post('/CvvOperations/validateToken').set(auth(a.testKey)).send({ token });
    assert.equal(r.status, 200);
    return r.body;
  };
  const nowS = () => Math.floor(h.clock.now() / 1000);

  it('a token of ours whose nbf is in the future is refused: 401 invalid_token, validateToken malformed, nothing rotates', async () => {
    const s = await makeSession(h, a.testKey);
    for (const ahead of [1, 60, 3600]) {
      const t = await withNbf(s.token, nowS() + ahead);
      const r = await collect(h, t);
      assert.equal(r.status, 401, `nbf now+${ahead}s: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.code, 'invalid_token');
      assert.equal(r.body.token, undefined);
      assert.deepEqual(await validate(t), { valid: false, reason: 'malformed' }, `nbf now+${ahead}s`);
    }
    // Not a type error either: nbf that is not a number is refused the same way.
    for (const bad of ['0', null, { t: 1 }]) {
      const t = await withNbf(s.token, bad);
      assert.equal((await collect(h, t)).status, 401, `nbf ${JSON.stringify(bad)}`);
      assert.deepEqual(await validate(t), { valid: false, reason: 'malformed' });
    }
    // The session is untouched: its own token is still current and works.
    const v = await validate(s.token);
    assert.equal(v.current, true);
    assert.equal(v.claims.seq, 0);
    assert.equal((await collect(h, s.token)).status, 200);
  });

  it('the same token is good once its nbf has come (nbf now or in the past)', async () => {
    const s = await makeSession(h, a.testKey);
    const t = await withNbf(s.token, nowS() + 30);
    assert.equal((await collect(h, t)).status, 401, 'before nbf');
    h.clock.advance(30_000);
    const v = await validate(t);
    assert.equal(v.valid, true, JSON.stringify(v));
    assert.equal((await collect(h, t)).status, 200, 'at nbf');
    const s2 = await makeSession(h, a.testKey);
    assert.equal((await collect(h, await withNbf(s2.token, nowS() - 5))).status, 200, 'nbf in the past');
  });
});
