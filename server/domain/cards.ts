import { AppError } from '../errors.js';
import { Secret } from '../secret.js';
import type { CardRecord, Store } from '../store/store.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Keyring } from './keyring.js';
import { findTestCard } from '../test-cards.js';
import type { MerchantContext } from './merchants.js';
import type { Vault, CvcSessionView } from './vault.js';

/** Luhn (mod 10) check of a digit string. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

interface BrandRule {
  brand: string;
  test: (n: string) => boolean;
  lengths: number[];
}
const prefix = (n: string, len: number) => Number(n.slice(0, len));
const BRANDS: BrandRule[] = [
  { brand: 'amex', test: (n) => /^3[47]/.test(n), lengths: [15] },
  { brand: 'visa', test: (n) => n.startsWith('4'), lengths: [13, 16, 19] },
  { brand: 'mastercard', test: (n) => (prefix(n, 2) >= 51 && prefix(n, 2) <= 55) || (prefix(n, 4) >= 2221 && prefix(n, 4) <= 2720), lengths: [16] },
  { brand: 'discover', test: (n) => /^(6011|65|64[4-9])/.test(n) || (prefix(n, 6) >= 622126 && prefix(n, 6) <= 622925), lengths: [16, 17, 18, 19] },
  { brand: 'jcb', test: (n) => prefix(n, 4) >= 3528 && prefix(n, 4) <= 3589, lengths: [16, 17, 18, 19] },
  { brand: 'diners', test: (n) => /^(36|38|39|30[0-5])/.test(n), lengths: [14, 16, 17, 18, 19] },
  { brand: 'unionpay', test: (n) => n.startsWith('62'), lengths: [16, 17, 18, 19] },
];

/** The card brand from the number's prefix and length, or null when no supported brand matches. */
export function detectBrand(digits: string): string | null {
  const rule = BRANDS.find((b) => b.test(digits));
  return rule && rule.lengths.includes(digits.length) ? rule.brand : null;
}

export const cvvLengthFor = (brand: string): number => (brand === 'amex' ? 4 : 3);

export interface CardView {
  token: string;
  brand: string;
  last4: string;
  bin: string;
  expMonth: number;
  expYear: number;
  createdAt: string;
}

export interface TokenizeInput {
  number: Secret<string>;
  expMonth: number;
  expYear: number;
  cvv?: Secret<string>;
  holderName?: string;
}

/** Card tokens: numbers checked, encrypted at rest, shown only as bin and last4. */
export class CardService {
  constructor(
    private readonly store: Pick<Store, 'cards'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly vault: Vault,
  ) {}

  async tokenize(m: MerchantContext, input: TokenizeInput): Promise<CardView & { cvcSession: CvcSessionView | null }> {
    const number = input.number.expose().replace(/ /g, '');
    if (!/^[0-9]{12,19}$/.test(number)) throw new AppError('invalid_card', 'The card number must be 12 to 19 digits.');
    if (!luhnValid(number)) throw new AppError('invalid_card', 'The card number fails the Luhn check.');
    const brand = detectBrand(number);
    if (!brand) throw new AppError('invalid_card', 'The card brand is not supported.');
    const now = new Date(this.clock.now());
    const y = now.getUTCFullYear();
    const mo = now.getUTCMonth() + 1;
    if (input.expYear < y || (input.expYear === y && input.expMonth < mo)) throw new AppError('invalid_card', 'The card has expired.');
    if (input.expYear > y + 50) throw new AppError('invalid_card', 'The expiry year is too far in the future.');
    const isTest = findTestCard(number) !== undefined;
    if (m.mode === 'test' && !isTest) throw new AppError('invalid_card', 'Test keys accept only the test cards.');
    if (m.mode === 'live' && isTest) throw new AppError('invalid_card', 'Live keys refuse the test cards.');
    // Refuse a CVV of the wrong shape before anything is stored.
    const cvv = input.cvv ? this.vault.checkCvv(input.cvv, brand) : undefined;
    if (cvv) await this.vault.assertNotBlocked(m.merchant.id, this.fingerprint(m.merchant.id, number));

    const token = newId('tok');
    const aad = `${m.merchant.id}|${token}`;
    const rec: CardRecord = {
      token,
      merchantId: m.merchant.id,
      mode: m.mode,
      brand,
      last4: number.slice(-4),
      bin: number.slice(0, 6),
      expMonth: input.expMonth,
      expYear: input.expYear,
      fingerprint: this.fingerprint(m.merchant.id, number),
      numberSealed: this.keyring.seal('card', number, `number|${aad}`),
      holderSealed: input.holderName ? this.keyring.seal('card', input.holderName, `holder|${aad}`) : null,
      createdAt: this.clock.now(),
    };
    await this.store.cards.insert(rec);
    const cvcSession = cvv ? await this.vault.storeCvv({ merchant: m.merchant, card: rec, cvv, retention: 'single_use' }) : null;
    return { ...cardView(rec), cvcSession };
  }

  /** The card, or 404 for an unknown one and for another merchant's (no oracle). */
  async get(m: MerchantContext, token: string): Promise<CardRecord> {
    const c = await this.store.cards.get(m.merchant.id, m.mode, token);
    if (!c) throw new AppError('not_found', 'No such card.');
    return c;
  }

  async delete(m: MerchantContext, token: string): Promise<void> {
    if (await this.store.cards.delete(m.merchant.id, m.mode, token)) return;
    // Not deleted: no such card, or a charge of it is at the processor right now (the card stays until its outcome is recorded).
    if (await this.store.cards.get(m.merchant.id, m.mode, token)) {
      throw new AppError('precondition_failed', 'A charge of this card is in progress; try again once its outcome is recorded.', { retryAfter: 1 });
    }
    throw new AppError('not_found', 'No such card.');
  }

  /** The card number and holder name, decrypted for a processor or a 3DS provider only. */
  open(c: CardRecord): { number: Secret<string>; holderName: Secret<string> | null } {
    const aad = `${c.merchantId}|${c.token}`;
    return {
      number: new Secret(this.keyring.open('card', c.numberSealed, `number|${aad}`).toString('utf8')),
      holderName: c.holderSealed ? new Secret(this.keyring.open('card', c.holderSealed, `holder|${aad}`).toString('utf8')) : null,
    };
  }

  /**
   * Re-encryption after a rotation of the card key, one slice at a time (the sweeper's turn): up to `limit`
   * cards sealed with an older version are opened and sealed anew with the version new writes use, each only
   * if it did not change meanwhile. Returns how many were re-sealed; 0 when none is left (or the new version
   * is not active yet).
   */
  async reencrypt(limit = 100): Promise<number> {
    const version = this.keyring.writeVersion('card');
    if (version === 1) return 0;
    let done = 0;
    for (const c of await this.store.cards.listSealedBelow(version, limit)) {
      const aad = `${c.merchantId}|${c.token}`;
      const number = this.keyring.open('card', c.numberSealed, `number|${aad}`);
      const holder = c.holderSealed ? this.keyring.open('card', c.holderSealed, `holder|${aad}`) : null;
      const resealed = {
        token: c.token,
        merchantId: c.merchantId,
        numberSealed: this.keyring.seal('card', number, `number|${aad}`),
        holderSealed: holder ? this.keyring.seal('card', holder, `holder|${aad}`) : null,
      };
      number.fill(0);
      holder?.fill(0);
      if (await this.store.cards.reseal(resealed, c.numberSealed)) done++;
    }
    return done;
  }

  /** Per merchant: the same card number tokenized twice has one fingerprint (CVV blocking counts per card number). */
  fingerprint(merchantId: string, number: string): string {
    return this.keyring.mac('fingerprint', `${merchantId}|${number}`);
  }
}

export function cardView(c: CardRecord): CardView {
  return {
    token: c.token,
    brand: c.brand,
    last4: c.last4,
    bin: c.bin,
    expMonth: c.expMonth,
    expYear: c.expYear,
    createdAt: new Date(c.createdAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
}
