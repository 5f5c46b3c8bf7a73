import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CompactSign, createLocalJWKSet, generateKeyPair, importJWK, jwtVerify, type JWK } from 'jose';
import { ManualClock } from '../../server/domain/clock.js';
import { type SessionClaims, TOKEN_TYP, type TokenService } from '../../server/domain/tokens.js';
import { type Harness, makeHarness } from '../helpers/harness.js';

/**
 * Differential test of the session-token verifier. Tokens are signed and
 * checked with node:crypto directly (server/domain/tokens.ts: synchronous, no
 * thread-pool hop); jose, the library the issue names, is the reference. A
 * corpus of more than 500 tokens, mutated in their header, algorithm,
 * encodings, claims and signature, each judged by both:
 *
 * - jose's judgement is `jwtVerify` with our JWKS, our algorithm, our `typ`
 *   and issuer, plus the claim types our token profile requires (aud, sub and
 *   jti strings, iat and exp numbers, ops an array) and the header parameters
 *   we refuse (jwk, jku, x5u, x5c, x5t, x5t#S256, crit, b64, zip, enc);
 * - ours must agree on every token, except where ours is stricter on purpose:
 *   it refuses a second spelling of the same bytes (non-canonical base64url,
 *   which jose decodes leniently), a fractional `exp` or `nbf` checked to
 *   the millisecond (jose rounds the clock down to the second, so it may
 *   also refuse a token whose fractional `nbf` has passed), and a token
 *   without `kid` (our keys are chosen by `kid` only; jose's local JWKS falls
 *   back to the one key of the algorithm). For those, ours refuses and jose
 *   accepts, and the test says which rule applies.
 *
 * Otherwise never the other way: a token ours accepts and jose refuses fails the test.
 */
describe('session tokens: our verifier judges as jose does (500+ mutated tokens)', () => {
  let h: Harness;
  let tokens: TokenService;
  let privateJwk: JWK;
  let kid: string;
  let alg: string;
  let good: SessionClaims;

  before(async () => {
    // Half a second into a second: a fractional exp or nbf then falls on different sides for a clock read to the
    // millisecond (ours) and one rounded down to the second (jose).
    h = await makeHarness({ clock: new ManualClock(Date.UTC(2026, 11, 5, 12, 0, 0) + 500) });
    tokens = h.deps.tokens;
    const [row] = await h.deps.store.signingKeys.list();
    assert.ok(row);
    kid = row.kid;
    alg = row.alg;
    privateJwk = JSON.parse(h.deps.keyring.open('signing-key', row.privateSealed, `signing-key|${row.kid}`).toString('utf8')) as JWK;
    const now = Math.floor(h.clock.now() / 1000);
    good = {
      iss: 'http://cvv.test',
      aud: 'mer_differential',
      sub: 'cvo_differential',
      jti: 'jti-differential',
      iat: now,
      exp: now + 600,
      seq: 1,
      mode: 'test',
      ops: ['collectCvv', 'charge'],
      amt: { value: 1999, currency: 'EUR' },
      card: { token: 'card_x', brand: 'visa', last4: '4242', cvvLength: 3 },
      form: 'hosted',
      res: {},
    };
  });
  after(() => h.close());

  const b64 = (v: string | Buffer) => Buffer.from(v).toString('base64url');
  const header = (over: Record<string, unknown> = {}) => ({ alg, kid, typ: TOKEN_TYP, ...over });

  /** Signs any protected header and payload bytes with our key (through jose, so the corpus does not depend on the code under test). */
  async function signRaw(protectedHeader: Record<string, unknown>, payload: Buffer | string, jwk: JWK = privateJwk): Promise<string> {
    const key = await importJWK(jwk, alg);
    return new CompactSign(typeof payload === 'string' ? Buffer.from(payload) : payload).setProtectedHeader(protectedHeader as never).sign(key);
  }
  /** A token whose protected header is exactly these bytes (a header no JOSE library would write), signed over them. */
  async function signWithHeaderBytes(headerJson: string, payload: string): Promise<string> {
    const { createPrivateKey, sign } = await import('node:crypto');
    const input = `${b64(headerJson)}.${b64(payload)}`;
    const key = createPrivateKey({ key: privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    const sig = sign(alg === 'EdDSA' ? null : 'sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${b64(sig)}`;
  }

  const FORBIDDEN = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64', 'zip', 'enc'];

  /** jose's judgement, with our profile's claim types and refused header parameters. */
  async function jose(token: string): Promise<boolean> {
    try {
      const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(tokens.jwks()), {
        algorithms: [alg],
        issuer: 'http://cvv.test',
        typ: TOKEN_TYP,
        currentDate: new Date(h.clock.now()),
        requiredClaims: ['iss', 'aud', 'sub', 'jti', 'iat', 'exp'],
      });
      if (protectedHeader.typ !== TOKEN_TYP) return false; // jose compares typ without case (media types); our profile names one exact value
      for (const p of FORBIDDEN) if (p in protectedHeader) return false;
      const c = payload as Record<string, unknown>;
      return typeof c.aud === 'string' && typeof c.sub === 'string' && typeof c.jti === 'string' && Array.isArray(c.ops);
    } catch {
      return false;
    }
  }

  /** Why ours may refuse what jose accepts (see the top of the file), or null. */
  function stricterRule(token: string): string | null {
    const parts = token.split('.');
    if (parts.length === 3 && parts.some((p) => Buffer.from(p, 'base64url').toString('base64url') !== p)) return 'non-canonical base64url';
    try {
      const hd = JSON.parse(Buffer.from(parts[0] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
      if (!('kid' in hd)) return 'no kid';
    } catch {
      /* not JSON: no header rule */
    }
    try {
      const c = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
      for (const k of ['exp', 'nbf']) if (typeof c[k] === 'number' && !Number.isInteger(c[k])) return `fractional ${k}`;
    } catch {
      /* not JSON: no claim rule */
    }
    return null;
  }

  it('agrees on every token of the corpus', async () => {
    const corpus: Array<{ what: string; token: string }> = [];
    const add = (what: string, token: string) => corpus.push({ what, token });
    const now = Math.floor(h.clock.now() / 1000);
    const valid = await tokens.sign(good);
    add('a token we signed', valid);
    add('the same claims, signed through jose', await signRaw(header(), JSON.stringify(good)));

    // Header: typ, alg, kid, refused and unknown parameters, odd JSON.
    for (const typ of [undefined, 'JWT', 'jwt', TOKEN_TYP.toUpperCase(), `application/${TOKEN_TYP}`, '', 1, null])
      add(`typ ${JSON.stringify(typ)}`, await signRaw(header({ typ }), JSON.stringify(good)));
    for (const a of ['none', 'HS256', 'RS256', 'ES256', 'ES384', 'EdDSA', 'Ed25519', 'eddsa', '', 'EdDSA '])
      add(`alg ${a}`, await signWithHeaderBytes(JSON.stringify(header({ alg: a })), JSON.stringify(good)));
    for (const k of [undefined, '', 'unknown', kid.toUpperCase(), `${kid} `, 1, null, [kid]])
      add(`kid ${JSON.stringify(k)}`, await signWithHeaderBytes(JSON.stringify(header({ kid: k })), JSON.stringify(good)));
    for (const p of FORBIDDEN) {
      const v = p === 'crit' ? ['exp'] : p === 'b64' ? false : p === 'zip' ? 'DEF' : p === 'jwk' ? { kty: 'OKP' } : p.startsWith('x5c') ? ['MII'] : 'x';
      add(`header ${p}`, await signWithHeaderBytes(JSON.stringify(header({ [p]: v })), JSON.stringify(good)));
    }
    for (const extra of [{ foo: 1 }, { cty: 'JWT' }, { iss: 'x' }, { __proto__: { alg: 'none' } }])
      add(`header extra ${JSON.stringify(extra)}`, await signWithHeaderBytes(JSON.stringify(header(extra)), JSON.stringify(good)));
    for (const raw of [
      '[]',
      'null',
      '"x"',
      '{',
      `{"alg":"${alg}","kid":"${kid}","typ":"${TOKEN_TYP}","alg":"none"}`,
      ` {"alg":"${alg}","kid":"${kid}","typ":"${TOKEN_TYP}"} `,
      `{"alg":"${alg}","kid":"${kid}","typ":"${TOKEN_TYP}"}\u0000`,
    ])
      add(`header bytes ${JSON.stringify(raw).slice(0, 40)}`, await signWithHeaderBytes(raw, JSON.stringify(good)));

    // Claims, signed with our key: every required claim missing, of the wrong type, or at its edge.
    const claimVariants: Array<[string, unknown]> = [];
    for (const k of ['iss', 'aud', 'sub', 'jti', 'iat', 'exp', 'ops'] as const) {
      claimVariants.push([`${k} missing`, undefined]);
      for (const v of [null, 0, 1, '', 'x', true, [], {}, '1'])
        if (typeof v !== typeof good[k] || Array.isArray(v) !== Array.isArray(good[k])) claimVariants.push([`${k} ${JSON.stringify(v)}`, v]);
    }
    for (const [what, v] of claimVariants) {
      const k = what.split(' ')[0] as keyof SessionClaims;
      const c = { ...good } as Record<string, unknown>;
      if (v === undefined) delete c[k];
      else c[k] = v;
      add(`claim ${what}`, await signRaw(header(), JSON.stringify(c)));
    }
    // Claims the verifier leaves to the session's state (checked against the stored session, not here): any type passes both.
    for (const k of ['seq', 'mode', 'amt', 'card', 'form', 'res', 'prev'] as const)
      for (const v of [undefined, null, 0, '', 'x', [], {}, true, -1]) {
        const c = { ...good } as Record<string, unknown>;
        if (v === undefined) delete c[k];
        else c[k] = v;
        add(`claim ${k} ${JSON.stringify(v)}`, await signRaw(header(), JSON.stringify(c)));
      }
    for (const iss of ['http://cvv.test/', 'https://cvv.test', 'http://CVV.test', 'http://evil.test'])
      add(`iss ${iss}`, await signRaw(header(), JSON.stringify({ ...good, iss })));
    for (const d of [-3600, -1, 0, 1, 2, 3600, 0.4, -0.4, 1.5])
      add(`exp now${d >= 0 ? '+' : ''}${d}`, await signRaw(header(), JSON.stringify({ ...good, exp: now + d })));
    for (const d of [-60, -1, 0, 1, 60, 0.4, -0.4]) add(`nbf now${d >= 0 ? '+' : ''}${d}`, await signRaw(header(), JSON.stringify({ ...good, nbf: now + d })));
    for (const nbf of ['0', null, true, []]) add(`nbf ${JSON.stringify(nbf)}`, await signRaw(header(), JSON.stringify({ ...good, nbf })));
    for (const iat of [now + 3600, -1, 1e20]) add(`iat ${iat}`, await signRaw(header(), JSON.stringify({ ...good, iat })));
    for (const exp of [1e20, Number.MAX_SAFE_INTEGER]) add(`exp ${exp}`, await signRaw(header(), JSON.stringify({ ...good, exp })));
    for (const raw of ['[]', 'null', '1', '"claims"', '{', '{}', JSON.stringify(good).replace('}', ',}'), ` ${JSON.stringify(good)}`])
      add(`payload ${raw.slice(0, 30)}`, await signRaw(header(), raw));
    add(
      'payload invalid UTF-8',
      await signRaw(header(), Buffer.concat([Buffer.from(JSON.stringify(good).slice(0, -1)), Buffer.from(',"x":"\xff\xfe"}', 'latin1')])),
    );
    add('payload lone surrogate', await signRaw(header(), JSON.stringify({ ...good, sub: '\ud800' })));
    add('payload __proto__', await signRaw(header(), `{"__proto__":{"iss":"http://cvv.test"},${JSON.stringify(good).slice(1)}`));
    add('payload duplicate iss', await signRaw(header(), `{"iss":"http://evil.test",${JSON.stringify(good).slice(1)}`));

    // Encodings: padding, the standard alphabet, every other spelling of a segment's last character, segments.
    const [hB, pB, sB] = valid.split('.') as [string, string, string];
    add('padding on the signature', `${hB}.${pB}.${sB}==`);
    add('padding on the payload', `${hB}.${pB}=.${sB}`);
    add('standard alphabet', valid.replace(/-/g, '+').replace(/_/g, '/'));
    const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (const [name, seg, rebuild] of [
      ['header', hB, (x: string) => `${x}.${pB}.${sB}`],
      ['payload', pB, (x: string) => `${hB}.${x}.${sB}`],
      ['signature', sB, (x: string) => `${hB}.${pB}.${x}`],
    ] as const) {
      for (const ch of ALPHABET) if (ch !== seg.at(-1)) add(`${name}: last character ${ch}`, rebuild(seg.slice(0, -1) + ch));
    }
    for (const t of [`${valid}.`, `${hB}.${pB}`, `${hB}..${sB}`, `.${pB}.${sB}`, `${hB}.${pB}.`, ` ${valid}`, `${valid}\n`, `${hB}.${pB}.${sB}.${sB}`])
      add(`shape ${JSON.stringify(t.slice(-12))}`, t);

    // Signatures: flipped bits, truncated, empty, another key's, a retired key's kid with a stranger's signature.
    const sig = Buffer.from(sB, 'base64url');
    for (let i = 0; i < sig.length; i += 3) {
      const s = Buffer.from(sig);
      s[i]! ^= 1 << (i % 8);
      add(`signature bit ${i}`, `${hB}.${pB}.${b64(s)}`);
    }
    for (const n of [0, 1, 32, 63, 65])
      add(`signature of ${n} bytes`, `${hB}.${pB}.${b64(n <= 64 ? sig.subarray(0, n) : Buffer.concat([sig, Buffer.alloc(1)]))}`);
    const stranger = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    const { exportJWK } = await import('jose');
    const strangerJwk = await exportJWK(stranger.privateKey);
    add("a stranger's key with our kid", await signRaw(header(), JSON.stringify(good), strangerJwk));
    for (let i = 0; i < 40; i++) {
      // Flipped bits in the header bytes.
      const x = Buffer.from(hB, 'base64url');
      x[(i * 5) % x.length]! ^= 1 << (i % 8);
      add(`header bit ${i}`, `${b64(x)}.${pB}.${sB}`);
    }
    for (let i = 0; i < 60; i++) {
      // Flipped bits anywhere in the token's payload bytes (the signature then fails for both).
      const p = Buffer.from(pB, 'base64url');
      p[(i * 7) % p.length]! ^= 1 << (i % 8);
      add(`payload bit ${i}`, `${hB}.${b64(p)}.${sB}`);
    }

    assert.ok(corpus.length >= 500, `a corpus of ${corpus.length} tokens`);
    const disagreements: string[] = [];
    const stricter = new Map<string, number>();
    let accepted = 0;
    for (const { what, token } of corpus) {
      const ours = (await tokens.verify(token)).ok;
      const theirs = await jose(token);
      if (ours) accepted++;
      if (ours === theirs) continue;
      // The rules where ours is stricter explain only a refusal of ours; the precision of the clock explains either side.
      const rule = stricterRule(token);
      const explained = rule !== null && (rule.startsWith('fractional') || (!ours && theirs)) ? rule : null;
      if (explained) stricter.set(explained, (stricter.get(explained) ?? 0) + 1);
      else disagreements.push(`${what}: ours ${ours ? 'accepts' : 'refuses'}, jose ${theirs ? 'accepts' : 'refuses'}`);
    }
    assert.deepEqual(disagreements, [], 'the two verifiers judge alike');
    assert.ok(accepted >= 5, `some tokens of the corpus are valid (${accepted}), so acceptance is compared too`);
    assert.ok(stricter.size > 0, 'the stricter rules were exercised');
    console.log(
      `token differential: ${corpus.length} tokens, ${accepted} accepted by ours; judged apart by the listed rules: ${[...stricter].map(([r, n]) => `${n} (${r})`).join(', ')}`,
    );
  });
});
