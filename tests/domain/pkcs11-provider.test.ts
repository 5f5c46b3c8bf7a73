import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { KeyProviderError } from '../../server/domain/key-provider.js';
import { Pkcs11KeyProvider } from '../../server/domain/pkcs11-provider.js';
import { Secret } from '../../server/secret.js';
import { freshSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';

/**
 * The PKCS#11 provider against a real token (SoftHSM2): the KEKs are AES keys that never leave it, wrapping
 * happens inside it, and several processes share its KEK versions. Every test makes its own token, and closes
 * every provider before the next one (SoftHSM2 reads its configuration when the library is initialized).
 */

const KEY_LABEL = 'cvvops-kek';
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

/** A fresh token, and a maker of providers on it; all closed and deleted when the test ends. */
function setup(t: TestContext): { tok: SoftHsmToken; provider: (pin?: string) => Pkcs11KeyProvider } {
  const tok = freshSoftHsmToken();
  const made: Pkcs11KeyProvider[] = [];
  t.after(async () => {
    for (const p of made.reverse()) await p.close();
    tok.cleanup();
  });
  const provider = (pin = tok.pin) => {
    const p = new Pkcs11KeyProvider({ library: tok.library, tokenLabel: tok.tokenLabel, pin: new Secret(pin), keyLabel: KEY_LABEL });
    made.push(p);
    return p;
  };
  return { tok, provider };
}

/**
 * Works in the token through a session of its own (not the provider's), as an auditor's tool or another
 * process would. Runs while a provider is open: the library is initialized and the user logged in for this
 * process already, so this neither finalizes nor logs out.
 */
function inspectToken<T>(tok: SoftHsmToken, look: (p11: pkcs11js.PKCS11, session: Buffer) => T): T {
  const p11 = new pkcs11js.PKCS11();
  p11.load(tok.library);
  let initialized = false;
  try {
    p11.C_Initialize();
    initialized = true;
  } catch (e) {
    if ((e as pkcs11js.Pkcs11Error).code !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
  }
  try {
    const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === tok.tokenLabel);
    assert.ok(slot, 'the token is there');
    const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      try {
        p11.C_Login(session, pkcs11js.CKU_USER, tok.pin);
      } catch (e) {
        if ((e as pkcs11js.Pkcs11Error).code !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
      }
      return look(p11, session);
    } finally {
      p11.C_CloseSession(session);
    }
  } finally {
    if (initialized) p11.C_Finalize();
    p11.close();
  }
}

/** The handles of the objects labelled `label`. */
function findByLabel(p11: pkcs11js.PKCS11, session: Buffer, label: string): Buffer[] {
  p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: label }]);
  try {
    return p11.C_FindObjects(session, 16);
  } finally {
    p11.C_FindObjectsFinal(session);
  }
}

test('an empty token: no versions, wrap refused; rotate makes v1, which wraps and unwraps a data key', async (t) => {
  const { provider } = setup(t);
  const p = provider();
  await p.open();
  assert.equal(p.name, 'pkcs11');
  assert.deepEqual(p.versions(), []);
  await assert.rejects(p.wrap(randomBytes(32), 'slot-a'), KeyProviderError);

  assert.equal(await p.rotate(NOW), 1);
  assert.deepEqual(p.versions(), [{ version: 1, createdAt: NOW }]);
  const dek = randomBytes(32);
  const { kekVersion, wrapped } = await p.wrap(dek, 'slot-a');
  assert.equal(kekVersion, 1);
  assert.equal(wrapped.length, 60, 'iv(12) ‖ ciphertext(32) ‖ tag(16)');
  assert.ok(!wrapped.includes(dek), 'the key does not appear in the wrapped bytes');
  assert.notDeepEqual(wrapped.subarray(12, 44), dek);
  assert.deepEqual(await p.unwrap(1, wrapped, 'slot-a'), dek);
  // A fresh IV per wrap: the same key wraps differently each time.
  assert.notDeepEqual((await p.wrap(dek, 'slot-a')).wrapped, wrapped);
});

test('another aad, or any flipped byte, does not unwrap', async (t) => {
  const { provider } = setup(t);
  const p = provider();
  await p.open();
  await p.rotate(NOW);
  const dek = randomBytes(32);
  const { wrapped } = await p.wrap(dek, 'merchant-1/card');
  await assert.rejects(p.unwrap(1, wrapped, 'merchant-2/card'));
  // A byte of the IV, of the ciphertext, of the tag.
  for (const at of [0, 11, 12, 30, 43, 44, 59]) {
    const tampered = Buffer.from(wrapped);
    tampered[at]! ^= 0x01;
    await assert.rejects(p.unwrap(1, tampered, 'merchant-1/card'), `flipped byte ${at}`);
  }
  await assert.rejects(p.unwrap(1, wrapped.subarray(0, 20), 'merchant-1/card'));
  // The failures left the session usable.
  assert.deepEqual(await p.unwrap(1, wrapped, 'merchant-1/card'), dek);
});

test('the KEK is a sensitive, non-extractable AES-256 key in the token: its value cannot be read', async (t) => {
  const { tok, provider } = setup(t);
  const p = provider();
  await p.open();
  await p.rotate(NOW);
  inspectToken(tok, (p11, session) => {
    const [kek] = findByLabel(p11, session, `${KEY_LABEL}-v1`);
    assert.ok(kek, 'the KEK object carries its label');
    const attrs = p11.C_GetAttributeValue(session, kek, [
      { type: pkcs11js.CKA_EXTRACTABLE },
      { type: pkcs11js.CKA_SENSITIVE },
      { type: pkcs11js.CKA_TOKEN },
      { type: pkcs11js.CKA_PRIVATE },
      { type: pkcs11js.CKA_VALUE_LEN },
      { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
    ]);
    const [extractable, sensitive, token, priv, valueLen, neverExtractable] = attrs.map((a) => a.value);
    assert.deepEqual(extractable, Buffer.from([0]), 'CKA_EXTRACTABLE false');
    assert.deepEqual(sensitive, Buffer.from([1]), 'CKA_SENSITIVE true');
    assert.deepEqual(token, Buffer.from([1]), 'CKA_TOKEN true');
    assert.deepEqual(priv, Buffer.from([1]), 'CKA_PRIVATE true');
    assert.deepEqual(neverExtractable, Buffer.from([1]), 'CKA_NEVER_EXTRACTABLE true');
    assert.equal(valueLen?.readBigUInt64LE(0), 32n, 'CKA_VALUE_LEN 32 (a native CK_ULONG, little-endian here)');
    assert.throws(
      () => p11.C_GetAttributeValue(session, kek, [{ type: pkcs11js.CKA_VALUE }]),
      (e: pkcs11js.Pkcs11Error) => e.code === pkcs11js.CKR_ATTRIBUTE_SENSITIVE,
    );
  });
});

test('rotate makes v2 for new wraps; v1 still unwraps until retired; retire destroys it; the newest cannot be retired', async (t) => {
  const { tok, provider } = setup(t);
  const p = provider();
  await p.open();
  await p.rotate(NOW);
  const old = randomBytes(32);
  const underV1 = await p.wrap(old, 'slot');
  assert.equal(await p.rotate(NOW + 1000), 2);
  assert.deepEqual(
    p.versions().map((v) => v.version),
    [1, 2],
  );
  const fresh = randomBytes(32);
  const underV2 = await p.wrap(fresh, 'slot');
  assert.equal(underV2.kekVersion, 2);
  assert.deepEqual(await p.unwrap(1, underV1.wrapped, 'slot'), old);
  assert.deepEqual(await p.unwrap(2, underV2.wrapped, 'slot'), fresh);

  await assert.rejects(p.retire(2), (e: Error) => e instanceof KeyProviderError && /newest/.test(e.message));
  await p.retire(1);
  assert.deepEqual(
    p.versions().map((v) => v.version),
    [2],
  );
  await assert.rejects(p.unwrap(1, underV1.wrapped, 'slot'), (e: Error) => e instanceof KeyProviderError && /no KEK of version 1/.test(e.message));
  assert.deepEqual(
    inspectToken(tok, (p11, session) => findByLabel(p11, session, `${KEY_LABEL}-v1`)),
    [],
    'the v1 object is gone from the token',
  );
  assert.deepEqual(await p.unwrap(2, underV2.wrapped, 'slot'), fresh);
  // Reopened, the provider finds the same state in the token.
  const again = provider();
  await again.open();
  assert.deepEqual(
    again.versions().map((v) => v.version),
    [2],
  );
});

test('a second provider on the same token sees versions the first makes after it opened (it looks again)', async (t) => {
  const { provider } = setup(t);
  const a = provider();
  const b = provider();
  await a.open();
  await a.rotate(NOW);
  await b.open();
  assert.deepEqual(
    b.versions().map((v) => v.version),
    [1],
  );
  await a.rotate(NOW + 1);
  assert.equal(await a.rotate(NOW + 2), 3);
  const dek = randomBytes(32);
  const w = await a.wrap(dek, 'slot');
  assert.equal(w.kekVersion, 3);
  assert.deepEqual(await b.unwrap(3, w.wrapped, 'slot'), dek);
  assert.deepEqual(
    b.versions().map((v) => v.version),
    [1, 2, 3],
  );
  // b looks again before choosing a version, and a sees it in turn.
  assert.equal(await b.rotate(NOW + 3), 4);
  const w4 = await b.wrap(dek, 'slot');
  assert.deepEqual(await a.unwrap(4, w4.wrapped, 'slot'), dek);
  // Closing one leaves the other logged in.
  await b.close();
  assert.deepEqual(await a.unwrap(3, w.wrapped, 'slot'), dek);
  assert.equal((await a.wrap(dek, 'slot')).kekVersion, 4);
});

/**
 * Runs `body` in another Node process with an open provider `p` on the token; returns what it prints as JSON.
 * One such process at a time: SoftHSM2 2.6 is not safe for processes writing one token at the same moment
 * (it crashes, or loses objects: softhsm/SoftHSMv2#688, #757).
 */
function inChildProcess(tok: SoftHsmToken, body: string): Promise<unknown> {
  const script = `
    import { Pkcs11KeyProvider } from ${JSON.stringify(new URL('../../server/domain/pkcs11-provider.ts', import.meta.url).href)};
    import { Secret } from ${JSON.stringify(new URL('../../server/secret.ts', import.meta.url).href)};
    const p = new Pkcs11KeyProvider({ library: process.env.LIB, tokenLabel: process.env.TOKEN, pin: new Secret(process.env.PIN), keyLabel: process.env.KEY_LABEL });
    await p.open();
    const out = await (async () => { ${body} })();
    await p.close();
    process.stdout.write(JSON.stringify(out));
  `;
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { env: { ...process.env, SOFTHSM2_CONF: tok.conf, LIB: tok.library, TOKEN: tok.tokenLabel, PIN: tok.pin, KEY_LABEL }, encoding: 'utf8' },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))),
    );
  });
}

test('another process rotates and wraps: this one unwraps it', async (t) => {
  const { tok, provider } = setup(t);
  const p = provider();
  await p.open();
  await p.rotate(NOW);
  const child = (await inChildProcess(
    tok,
    `const version = await p.rotate(Date.now());
     const w = await p.wrap(Buffer.alloc(32, 7), 'slot');
     return { version, kekVersion: w.kekVersion, wrapped: w.wrapped.toString('hex') };`,
  )) as { version: number; kekVersion: number; wrapped: string };
  assert.equal(child.version, 2);
  assert.equal(child.kekVersion, 2);
  assert.deepEqual(await p.unwrap(2, Buffer.from(child.wrapped, 'hex'), 'slot'), Buffer.alloc(32, 7));
  assert.equal(await p.rotate(NOW + 1), 3, 'this process looks again before choosing the next version');
});

test('two objects under one version (rotations that raced in two processes): whatever either wrapped unwraps', async (t) => {
  const { tok, provider } = setup(t);
  const a = provider();
  await a.open();
  await a.rotate(NOW);
  const first = randomBytes(32);
  const underA = await a.wrap(first, 'slot');
  // Another process made its own v1 at the same moment: PKCS#11 has no create-if-absent, so nothing stopped it.
  inspectToken(tok, (p11, session) =>
    p11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_LABEL, value: `${KEY_LABEL}-v1` },
    ]),
  );
  const b = provider();
  await b.open();
  assert.deepEqual(
    b.versions().map((v) => v.version),
    [1],
    'listed once',
  );
  assert.deepEqual(await b.unwrap(1, underA.wrapped, 'slot'), first);
  // Whichever object b wraps with, a (which knew only its own) opens it, looking again if needed.
  const second = randomBytes(32);
  const underB = await b.wrap(second, 'slot');
  assert.deepEqual(await a.unwrap(1, underB.wrapped, 'slot'), second);
  // Tampered data still fails after trying both.
  const tampered = Buffer.from(underB.wrapped);
  tampered[20]! ^= 0x01;
  await assert.rejects(a.unwrap(1, tampered, 'slot'), (e: Error) => !(e instanceof KeyProviderError));
  // Retiring the version destroys both objects.
  await a.rotate(NOW + 1);
  await a.retire(1);
  assert.deepEqual(
    inspectToken(tok, (p11, session) => findByLabel(p11, session, `${KEY_LABEL}-v1`)),
    [],
  );
  await assert.rejects(b.unwrap(1, underB.wrapped, 'slot'), KeyProviderError);
});

test('open fails with KeyProviderError: wrong PIN (not in the message), unknown token, missing library', async (t) => {
  const { tok, provider } = setup(t);
  const wrongPin = 'wrong-pin-918273';
  const bad = provider(wrongPin);
  await assert.rejects(bad.open(), (e: Error) => {
    assert.ok(e instanceof KeyProviderError, String(e));
    assert.match(e.message, /PIN is wrong/);
    assert.ok(!e.message.includes(wrongPin), e.message);
    assert.ok(!e.message.includes(tok.pin), e.message);
    return true;
  });

  const unknown = new Pkcs11KeyProvider({ library: tok.library, tokenLabel: 'no-such-token', pin: new Secret(tok.pin), keyLabel: KEY_LABEL });
  await assert.rejects(unknown.open(), (e: Error) => e instanceof KeyProviderError && /no PKCS#11 token labelled "no-such-token"/.test(e.message));

  const missing = new Pkcs11KeyProvider({ library: '/nonexistent/libpkcs11.so', tokenLabel: tok.tokenLabel, pin: new Secret(tok.pin), keyLabel: KEY_LABEL });
  await assert.rejects(missing.open(), (e: Error) => e instanceof KeyProviderError && e.message.includes('/nonexistent/libpkcs11.so'));

  // The failed attempts left nothing behind: the right PIN opens.
  const good = provider();
  await good.open();
  assert.deepEqual(good.versions(), []);
});

test('close twice is safe; a closed provider refuses to wrap', async (t) => {
  const { provider } = setup(t);
  const p = provider();
  await p.open();
  await p.rotate(NOW);
  await p.close();
  await p.close();
  await assert.rejects(p.wrap(randomBytes(32), 'slot'), KeyProviderError);
  // Closed without ever opening: also fine.
  await provider().close();
});
