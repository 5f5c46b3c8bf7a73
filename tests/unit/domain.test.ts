import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { format, inspect } from 'node:util';
import { detectBrand, luhnValid } from '../../server/domain/cards.js';
import { Keyring, type Sealed } from '../../server/domain/keyring.js';
import { Secret } from '../../server/secret.js';

/** API.md section 11. */
const TEST_CARDS: Array<[string, string]> = [
  ['4000000000001018', 'visa'],
  ['4000000000002024', 'visa'],
  ['4000000000003030', 'visa'],
  ['4000000000004046', 'visa'],
  ['4000000000005050', 'visa'],
  ['4000000000006066', 'visa'],
  ['4000000000007072', 'visa'],
  ['4000000000008088', 'visa'],
  ['5555555555554402', 'mastercard'],
  ['378282246310005', 'amex'],
  ['6011111111111117', 'discover'],
];

/** The prefix with its Luhn check digit appended (written independently of luhnValid). */
function withLuhn(prefix: string): string {
  for (let check = 0; check <= 9; check++) {
    const n = `${prefix}${check}`;
    let sum = 0;
    [...n].reverse().forEach((ch, i) => {
      const d = Number(ch) * (i % 2 === 1 ? 2 : 1);
      sum += d > 9 ? d - 9 : d;
    });
    if (sum % 10 === 0) return n;
  }
  throw new Error('unreachable');
}
const pad = (prefix: string, length: number): string => withLuhn(prefix.padEnd(length - 1, '0'));

describe('luhnValid', () => {
  it('accepts every test card of API.md section 11', () => {
    for (const [n] of TEST_CARDS) assert.equal(luhnValid(n), true, n);
  });

  it('refuses each test card with any single digit changed', () => {
    for (const [n] of TEST_CARDS) {
      for (let i = 0; i < n.length; i++) {
        const d = Number(n[i]);
        const changed = n.slice(0, i) + String((d + 1) % 10) + n.slice(i + 1);
        assert.equal(luhnValid(changed), false, `${n} with position ${i} changed: ${changed}`);
      }
    }
  });

  it('catches a swap of two adjacent different digits (other than 0/9)', () => {
    for (const [n] of TEST_CARDS) {
      for (let i = 0; i + 1 < n.length; i++) {
        const a = n[i]!;
        const b = n[i + 1]!;
        if (a === b || a + b === '09' || a + b === '90') continue;
        const swapped = n.slice(0, i) + b + a + n.slice(i + 2);
        assert.equal(luhnValid(swapped), false, `${n} → ${swapped}`);
      }
    }
    assert.equal(luhnValid('79927398713'), true, 'the classic example');
    assert.equal(luhnValid('79927398731'), false);
  });

  it('doubles every second digit from the right, subtracting 9 above 9', () => {
    assert.equal(luhnValid('18'), true, '1*2 + 8 = 10');
    assert.equal(luhnValid('81'), false, '8*2-9 + 1 = 8 (the rightmost digit is not doubled)');
    assert.equal(luhnValid('91'), true, '9*2-9 + 1 = 10');
    assert.equal(luhnValid('19'), false, '1*2 + 9 = 11');
    assert.equal(luhnValid('59'), true, '5*2-9 + 9 = 10 (without subtracting 9 it would be 19)');
    assert.equal(luhnValid('0000000000000000'), true);
    assert.equal(luhnValid('4242424242424242'), true);
    assert.equal(luhnValid('4242424242424241'), false);
  });

  it('accepts generated numbers of every length 12-19', () => {
    for (let len = 12; len <= 19; len++) {
      const n = pad('4', len);
      assert.equal(n.length, len);
      assert.equal(luhnValid(n), true, n);
      assert.equal(luhnValid(n.slice(0, -1) + String((Number(n.at(-1)) + 5) % 10)), false, n);
    }
  });
});

describe('detectBrand', () => {
  it('detects the brand of every test card of API.md section 11', () => {
    for (const [n, brand] of TEST_CARDS) assert.equal(detectBrand(n), brand, n);
  });

  it('knows each brand by prefix and length', () => {
    const cases: Array<[string, string | null]> = [
      [pad('4', 13), 'visa'],
      [pad('4', 16), 'visa'],
      [pad('4', 19), 'visa'],
      [pad('4', 15), null],
      [pad('4', 14), null],
      [pad('34', 15), 'amex'],
      [pad('37', 15), 'amex'],
      [pad('37', 16), null],
      [pad('35', 15), null],
      [pad('51', 16), 'mastercard'],
      [pad('55', 16), 'mastercard'],
      [pad('50', 16), null],
      [pad('56', 16), null],
      [pad('2221', 16), 'mastercard'],
      [pad('2720', 16), 'mastercard'],
      [pad('2220', 16), null],
      [pad('2721', 16), null],
      [pad('51', 15), null],
      [pad('51', 17), null],
      [pad('6011', 16), 'discover'],
      [pad('65', 16), 'discover'],
      [pad('644', 16), 'discover'],
      [pad('649', 19), 'discover'],
      [pad('643', 16), null],
      [pad('622126', 16), 'discover'],
      [pad('622925', 16), 'discover'],
      [pad('3528', 16), 'jcb'],
      [pad('3589', 16), 'jcb'],
      [pad('3527', 16), null],
      [pad('3590', 16), null],
      [pad('36', 14), 'diners'],
      [pad('300', 14), 'diners'],
      [pad('305', 14), 'diners'],
      [pad('306', 14), null],
      [pad('36', 13), null],
      [pad('62', 16), 'unionpay'],
      [pad('622125', 16), 'unionpay'],
      [pad('622926', 16), 'unionpay'],
      [pad('1', 16), null],
      [pad('9', 16), null],
      [pad('0', 16), null],
    ];
    for (const [n, brand] of cases) assert.equal(detectBrand(n), brand, n);
  });

  it('a brand whose length does not match does not fall through to another brand', () => {
    // 34… is amex by prefix; at 16 digits it is no brand, not some other.
    assert.equal(detectBrand(pad('34', 16)), null);
  });
});

describe('Keyring', () => {
  const master = () => new Secret(randomBytes(32));

  it('seals and opens strings and buffers, binary-exact', () => {
    const k = new Keyring(master());
    const s = k.seal('cvv', '123', 'mer_1|cvc_1');
    assert.equal(k.open('cvv', s, 'mer_1|cvc_1').toString('utf8'), '123');
    const bytes = Buffer.from([0, 1, 2, 255, 0, 128]);
    assert.deepEqual(k.open('card', k.seal('card', bytes, 'a'), 'a'), bytes);
    assert.equal(k.open('card', k.seal('card', '', 'a'), 'a').length, 0, 'an empty value');
    assert.equal(k.open('card', k.seal('card', 'é✓', 'a'), 'a').toString('utf8'), 'é✓');
  });

  it('lays out iv (12) || ciphertext || tag (16), with a version, and never the plaintext', () => {
    const k = new Keyring(master());
    const plain = '4000000000001018';
    const s = k.seal('card', plain, 'x');
    assert.equal(s.keyVersion, 1);
    assert.equal(s.blob.length, 12 + plain.length + 16);
    assert.ok(!s.blob.includes(plain), 'the plaintext is not in the blob');
  });

  it('uses a fresh IV each time: two seals of the same value differ', () => {
    const k = new Keyring(master());
    const a = k.seal('cvv', '123', 'aad');
    const b = k.seal('cvv', '123', 'aad');
    assert.notDeepEqual(a.blob, b.blob);
    assert.notDeepEqual(a.blob.subarray(0, 12), b.blob.subarray(0, 12), 'different IVs');
    const ivs = new Set(Array.from({ length: 200 }, () => k.seal('cvv', '123', 'aad').blob.subarray(0, 12).toString('hex')));
    assert.equal(ivs.size, 200);
  });

  it('refuses a different AAD (a value moved to another row)', () => {
    const k = new Keyring(master());
    const s = k.seal('cvv', '123', 'mer_1|cvc_1');
    assert.throws(() => k.open('cvv', s, 'mer_1|cvc_2'));
    assert.throws(() => k.open('cvv', s, 'mer_2|cvc_1'));
    assert.throws(() => k.open('cvv', s, ''));
  });

  it('refuses a sealed value with any bit flipped (IV, ciphertext or tag)', () => {
    const k = new Keyring(master());
    const s = k.seal('cvv', '1234', 'aad');
    for (let byte = 0; byte < s.blob.length; byte++) {
      const blob = Buffer.from(s.blob);
      blob[byte]! ^= 0x01;
      assert.throws(() => k.open('cvv', { keyVersion: s.keyVersion, blob }, 'aad'), `bit flipped in byte ${byte}`);
    }
    assert.throws(() => k.open('cvv', { keyVersion: 1, blob: s.blob.subarray(0, 27) }, 'aad'), 'too short');
    assert.throws(() => k.open('cvv', { keyVersion: 1, blob: s.blob.subarray(0, s.blob.length - 1) }, 'aad'), 'truncated');
    assert.equal(k.open('cvv', s, 'aad').toString(), '1234', 'the original still opens');
  });

  it('keys of different purposes differ: a cvv value does not open as card (or any other purpose)', () => {
    const k = new Keyring(master());
    const s = k.seal('cvv', '123', 'aad');
    for (const p of ['card', 'signing-key', 'replay', 'idempotency', 'demo'] as const) {
      assert.throws(() => k.open(p, s, 'aad'), p);
    }
    assert.throws(() => k.open('cvv', k.seal('card', '123', 'aad'), 'aad'));
    assert.notEqual(k.mac('fingerprint', 'v'), k.mac('api-key', 'v'));
    assert.notEqual(k.mac('fingerprint', 'v'), k.mac('idempotency', 'v'));
  });

  it('another master key opens nothing; an unknown key version is refused', () => {
    const a = new Keyring(master());
    const b = new Keyring(master());
    const s = a.seal('cvv', '123', 'aad');
    assert.throws(() => b.open('cvv', s, 'aad'));
    const wrongVersion: Sealed = { keyVersion: 2, blob: s.blob };
    assert.throws(() => a.open('cvv', wrongVersion, 'aad'));
  });

  it('the same master key derives the same keys; mac is deterministic and keyed', () => {
    const m = randomBytes(32);
    const a = new Keyring(new Secret(m));
    const b = new Keyring(new Secret(Buffer.from(m)));
    assert.equal(b.open('card', a.seal('card', 'x', 'aad'), 'aad').toString(), 'x');
    assert.equal(a.mac('api-key', 'sk_test_x'), b.mac('api-key', 'sk_test_x'));
    assert.match(a.mac('api-key', 'sk_test_x'), /^[0-9a-f]{64}$/);
    assert.notEqual(a.mac('api-key', 'sk_test_x'), new Keyring(master()).mac('api-key', 'sk_test_x'));
  });

  it('refuses a master key that is not 32 bytes', () => {
    assert.throws(() => new Keyring(new Secret(randomBytes(31))));
    assert.throws(() => new Keyring(new Secret(randomBytes(33))));
    assert.throws(() => new Keyring(new Secret(Buffer.alloc(0))));
  });
});

describe('Secret', () => {
  const value = 'sk_test_super-secret-value-1234';

  it('prints [REDACTED] through JSON.stringify, String(), template strings and util.inspect', () => {
    const s = new Secret(value);
    assert.equal(JSON.stringify(s), '"[REDACTED]"');
    assert.equal(JSON.stringify({ apiKey: s, nested: { list: [s] } }), '{"apiKey":"[REDACTED]","nested":{"list":["[REDACTED]"]}}');
    assert.equal(String(s), '[REDACTED]');
    // eslint-disable-next-line @typescript-eslint/restrict-template-expressions -- printing the Secret is the test
    assert.equal(`${s}`, '[REDACTED]');
    // eslint-disable-next-line @typescript-eslint/restrict-template-expressions -- printing the Secret is the test
    assert.equal(`key=${s}`, 'key=[REDACTED]');
    // eslint-disable-next-line @typescript-eslint/restrict-plus-operands -- printing the Secret is the test
    assert.equal(s + '', '[REDACTED]');
    assert.match(inspect(s), /\[REDACTED\]/);
    assert.match(inspect({ a: { b: s } }, { depth: 10 }), /\[REDACTED\]/);
  });

  it('never shows the value, however it is printed', () => {
    const s = new Secret(value);
    const printed = [
      JSON.stringify(s),
      JSON.stringify({ s }),
      String(s),
      // eslint-disable-next-line @typescript-eslint/restrict-template-expressions -- printing the Secret is the test
      `${s}`,
      inspect(s),
      inspect({ s }),
      inspect(s, { showHidden: true, depth: Infinity }),
      inspect(s, { customInspect: false, showHidden: true }),
      format('%s %o %O %j', s, s, s, s),
      String([s]),
      Object.keys(s).join(','),
      JSON.stringify(Object.entries(s)),
    ];
    for (const p of printed) assert.ok(!p.includes(value), `leaked: ${p}`);
  });

  it('hides Buffer values too (the master key)', () => {
    const key = randomBytes(32);
    const s = new Secret(key);
    // eslint-disable-next-line @typescript-eslint/restrict-template-expressions -- printing the Secret is the test
    for (const p of [JSON.stringify({ s }), inspect(s), inspect(s, { customInspect: false }), `${s}`]) {
      assert.ok(!p.includes(key.toString('hex')) && !p.includes(key.toString('base64')), p);
    }
    assert.equal(s.expose(), key);
  });

  it('expose() is the one way to read it', () => {
    assert.equal(new Secret(value).expose(), value);
    assert.deepEqual(new Secret({ a: 1 }).expose(), { a: 1 });
  });
});
