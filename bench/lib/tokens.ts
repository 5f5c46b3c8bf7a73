import { randomBytes } from 'node:crypto';
import { CompactSign, compactVerify, generateKeyPair, importJWK, type JWK } from 'jose';
import { ManualClock } from '../../server/domain/clock.js';
import { Keyring } from '../../server/domain/keyring.js';
import { type SessionClaims, TokenService } from '../../server/domain/tokens.js';
import { Secret } from '../../server/secret.js';
import { MemoryStore } from '../../server/store/memory-store.js';
import type { SigningAlg } from '../../server/types/shared.js';

/** One way of signing or verifying, measured: mean wall time and CPU time per call, in µs. */
export interface TokenCost {
  what: string;
  wallUs: number;
  cpuUs: number;
}
export interface TokenCostsResult {
  alg: SigningAlg;
  calls: number;
  costs: TokenCost[];
  /**
   * A flow's token work (4 signatures: create and the three operations; 4
   * verifications: the three operations and validateToken), in µs of CPU, as
   * done now (the verification of a token this process signed skips the
   * signature, the others are checked), and as jose would do it.
   */
  perFlow: { ours: number; oursWithoutShortcut: number; jose: number };
}

const ISSUER = 'http://bench.test';

/**
 * The cost of signing and verifying session tokens, in this process, as the
 * server does it (TokenService: node:crypto, synchronous, with the
 * "signed here" shortcut) and as jose does it (CompactSign, compactVerify:
 * asynchronous, WebCrypto-backed). The jose verification is given the key
 * object directly and only parses the payload after it: the header, kid and
 * claim checks TokenService also does are not charged to it.
 */
export async function tokenCosts(alg: SigningAlg, calls: number): Promise<TokenCostsResult> {
  const store = new MemoryStore();
  const clock = new ManualClock(Date.now());
  const keyring = new Keyring(new Secret(randomBytes(32)));
  const here = new TokenService(store, keyring, clock, { alg, issuer: ISSUER });
  await here.init();
  // Another instance on the same keys: it did not sign the tokens, so it checks every signature.
  const elsewhere = new TokenService(store, keyring, clock, { alg, issuer: ISSUER });
  await elsewhere.init();

  const now = Math.floor(clock.now() / 1000);
  const claims = (i: number): SessionClaims => ({
    iss: ISSUER,
    aud: 'mer_benchmark00000000',
    sub: `cvo_${String(i).padStart(22, '0')}`,
    jti: randomBytes(16).toString('base64url'),
    iat: now,
    exp: now + 900,
    seq: 2,
    mode: 'test',
    ops: ['collectCvv', 'threeDS', 'charge'],
    amt: { value: 1999, currency: 'EUR' },
    card: { token: 'tok_0123456789abcdefghij', brand: 'visa', last4: '1018', cvvLength: 3 },
    prev: randomBytes(32).toString('base64url'),
    form: 'hosted',
    res: { collectCvv: { cvcSession: 'cvc_0123456789abcdefghij', at: '2026-12-06T00:00:00Z' }, threeDS: { status: 'Y', eci: '05' } },
  });
  const publicJwk = here.jwks().keys[0] as JWK;
  const publicKey = await importJWK(publicJwk, alg);
  const jose = await generateKeyPair(alg, { extractable: false });
  const header = { alg, kid: 'bench', typ: 'JWT' };
  const enc = new TextEncoder();

  const measure = async (what: string, run: (i: number) => unknown): Promise<TokenCost> => {
    for (let i = 0; i < Math.min(500, calls); i++) await run(i);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) await run(i);
    const wall = Number(process.hrtime.bigint() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    return { what, wallUs: wall / calls, cpuUs: (cpu.user + cpu.system) / calls };
  };

  if (calls > TokenService.ISSUED_REMEMBERED) throw new Error(`bench: at most ${TokenService.ISSUED_REMEMBERED} calls (the tokens a process remembers)`);
  const costs = [
    await measure('sign: TokenService (node:crypto)', (i) => here.sign(claims(i))),
    await measure('sign: jose CompactSign', (i) => new CompactSign(enc.encode(JSON.stringify(claims(i)))).setProtectedHeader(header).sign(jose.privateKey)),
  ];
  // Signed last, so every one of them is among the tokens this process remembers.
  const tokens = await Promise.all(Array.from({ length: calls }, (_, i) => here.sign(claims(i))));
  costs.push(
    await measure('verify: TokenService, a token this process signed (shortcut)', (i) => here.verify(tokens[i]!)),
    await measure('verify: TokenService, a token another instance signed (signature checked)', (i) => elsewhere.verify(tokens[i]!)),
    await measure('verify: jose compactVerify + JSON.parse', async (i) =>
      JSON.parse(new TextDecoder().decode((await compactVerify(tokens[i]!, publicKey)).payload)),
    ),
  );
  for (const t of tokens) if (!(await elsewhere.verify(t)).ok) throw new Error('bench: a token did not verify');
  const cpu = (prefix: string) => costs.find((c) => c.what.startsWith(prefix))!.cpuUs;
  const sign = cpu('sign: TokenService');
  return {
    alg,
    calls,
    costs,
    perFlow: {
      ours: 4 * sign + 3 * cpu('verify: TokenService, a token this') + cpu('verify: TokenService, a token another'),
      oursWithoutShortcut: 4 * sign + 4 * cpu('verify: TokenService, a token another'),
      jose: 4 * cpu('sign: jose') + 4 * cpu('verify: jose'),
    },
  };
}
