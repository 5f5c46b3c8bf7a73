import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../server/domain/clock.js';
import { Keyring } from '../../server/domain/keyring.js';
import { TokenService, type SessionClaims } from '../../server/domain/tokens.js';
import { Secret } from '../../server/secret.js';
import { KyselyStore } from '../../server/store/kysely-store.js';

/** `cvvops keys rotate` on one instance reaches every instance sharing the database. */
describe('signing-key rotation across instances', () => {
  let store: KyselyStore;
  const clock = new ManualClock(Date.UTC(2026, 10, 22, 12));
  const keyring = new Keyring(new Secret(randomBytes(32)));
  const opts = { alg: 'EdDSA' as const, issuer: 'http://cvv.test' };
  let a: TokenService;
  let b: TokenService;
  const claims = (): SessionClaims => ({
    iss: 'http://cvv.test',
    aud: 'mer_x',
    sub: 'cvo_x',
    jti: randomBytes(8).toString('hex'),
    iat: Math.floor(clock.now() / 1000),
    exp: Math.floor(clock.now() / 1000) + 900,
    seq: 0,
    mode: 'test',
    ops: ['collectCvv'],
    card: { token: 'tok_x', brand: 'visa', last4: '1018', cvvLength: 3 },
    form: 'hosted',
    res: {},
  });
  const kidOf = (t: string) => JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()).kid as string;

  before(async () => {
    store = await KyselyStore.open('sqlite::memory:');
    await store.migrate();
    a = new TokenService(store, keyring, clock, opts);
    b = new TokenService(store, keyring, clock, opts);
    await a.init();
    await b.init();
  });
  after(() => store.close());

  it('a key rotated on instance A verifies on B at once, and B signs with it within 10 s; old tokens keep verifying', async () => {
    const oldToken = await b.sign(claims());
    const oldKid = kidOf(oldToken);
    clock.advance(1000);
    const newKid = await a.rotate('test');
    assert.notEqual(newKid, oldKid);
    const fromA = await a.sign(claims());
    assert.equal(kidOf(fromA), newKid);
    clock.advance(1500);
    assert.equal((await b.verify(fromA)).ok, true, 'B reloads its key set on an unknown kid');
    assert.equal((await b.verify(oldToken)).ok, true, 'the retired key still verifies its tokens');
    clock.advance(10_001);
    assert.equal(kidOf(await b.sign(claims())), newKid, 'B signs with the new key after its reload interval');
    assert.deepEqual(
      b.jwks().keys.map((k) => k.kid),
      [newKid, oldKid],
    );
  });

  it('a token this instance signed skips the signature check; one from another instance or with any byte changed is checked', async () => {
    const mine = await a.sign(claims());
    const theirs = await b.sign(claims());
    let before = a.signatureChecks;
    assert.equal((await a.verify(mine)).ok, true);
    assert.equal(a.signatureChecks, before, 'a token of ours (same bytes) needs no signature check');
    assert.equal((await a.verify(theirs)).ok, true);
    assert.equal(a.signatureChecks, before + 1, "another instance's token is verified by signature");
    // The same claims and header under another signature (last character changed): checked and refused.
    const [h, p, sig] = mine.split('.');
    const flipped = `${h}.${p}.${sig!.slice(0, -2)}${sig!.endsWith('AA') ? 'AQ' : 'AA'}`;
    before = a.signatureChecks;
    const out = await a.verify(flipped);
    assert.equal(out.ok, false);
    assert.equal(a.signatureChecks, before + 1);
    // Expiry still applies to a remembered token.
    const short = await a.sign({ ...claims(), exp: Math.floor(clock.now() / 1000) + 1 });
    clock.advance(1000);
    assert.deepEqual((await a.verify(short)).ok, false);
  });
});
