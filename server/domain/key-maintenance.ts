import type { Logger } from '../log.js';
import type { LongLivedKind, SealedItem, Store } from '../store/store.js';
import type { CardService } from './cards.js';
import type { Clock } from './clock.js';
import { retireUnusedDataKeys, retireUnusedKeks, rewrapDataKeys } from './data-keys.js';
import type { KeyProvider } from './key-provider.js';
import type { Keyring } from './keyring.js';
import { processorAad } from './merchants.js';
import { openWebhookSecret } from './webhooks.js';

/** The long-lived values besides cards, by the purpose that seals them, and how each is bound (AAD). */
const LONG_LIVED: Array<{ kind: LongLivedKind; aad: (i: SealedItem) => string }> = [
  { kind: 'signing-key', aad: (i) => `signing-key|${i.ref}` },
  { kind: 'webhook-secret', aad: (i) => `webhook|${i.merchantId}|${i.ref}` },
  { kind: 'settings', aad: (i) => processorAad(i.merchantId!, i.mode!, i.scope ?? undefined) },
  { kind: 'cvv', aad: (i) => `cvv|${i.merchantId}|${i.ref}` },
];

/** How often, at most, the sealed values are counted by key version while an old version waits to retire. */
const COUNT_EVERY_MS = 10 * 60_000;
/** Set once no webhook secret is left under the signing-key purpose. */
const LEGACY_DONE = 'legacy_webhook_secrets_moved';

/**
 * The work a rotation leaves, done in slices by the sweeper's retention pass (one instance at a time, under
 * its lease), each step audited:
 * 1. stored values sealed with an older version of their purpose's key are sealed anew (cards, signing keys,
 *    webhook secrets, processor settings, and CVVs still alive, with their own share), each only if unchanged
 *    meanwhile; replay, idempotency and CAVV records are short-lived and simply age out;
 * 2. webhook secrets from before they had a purpose of their own (sealed under `signing-key`) move to theirs;
 * 3. data keys wrapped under an older KEK are re-wrapped under the newest (after `keys rotate-master`);
 * 4. a KEK no data key is wrapped under any more is retired (destroyed inside the provider);
 * 5. a data-key version nothing is sealed with any more is retired (its key erased).
 */
export class KeyMaintenance {
  /** When the sealed values may be counted again (for retiring versions). */
  #nextCount = 0;
  constructor(
    private readonly store: Pick<Store, 'meta' | 'sealed' | 'cvc'>,
    private readonly keyring: Keyring,
    private readonly provider: KeyProvider,
    private readonly cards: Pick<CardService, 'reencrypt'>,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** One slice: at most about `limit` records of each step. Returns the work done (0: nothing left to do now). */
  async slice(limit: number): Promise<number> {
    let work = 0;
    const cards = await this.cards.reencrypt(limit);
    if (cards > 0) this.#audit('key.reencrypted', { purpose: 'card', records: cards }, 'cards re-encrypted with the current key');
    work += cards;
    for (const { kind, aad } of LONG_LIVED) {
      const n = await this.#reseal(kind, aad, limit);
      if (n > 0) this.#audit('key.reencrypted', { purpose: kind, records: n }, `${kind} values re-encrypted with the current key`);
      work += n;
    }
    const legacy = await this.#legacyWebhookSecrets(limit);
    work += legacy.moved;
    const rewrapped = await rewrapDataKeys(this.store.meta, this.provider, limit);
    if (rewrapped > 0) {
      const kekVersion = Math.max(...this.provider.versions().map((v) => v.version));
      this.#audit('key.rewrapped', { provider: this.provider.name, kekVersion, dataKeys: rewrapped }, 'data keys re-wrapped under the newest KEK');
    }
    work += rewrapped;
    if (rewrapped === 0) {
      for (const v of await retireUnusedKeks(this.store.meta, this.provider)) {
        this.#audit('key.retired', { kind: 'kek', provider: this.provider.name, kekVersion: v }, 'KEK retired: no data key is wrapped under it');
        work++;
      }
    }
    const blocked = new Set<string>(legacy.left > 0 ? ['signing-key'] : []);
    // Counting what each version seals reads whole tables: at most every COUNT_EVERY_MS, while a version is due.
    const now = this.clock.now();
    const count = async (purposes: string[]) => {
      if (now < this.#nextCount) return null;
      this.#nextCount = now + COUNT_EVERY_MS;
      return this.store.sealed.versionCounts(purposes);
    };
    for (const r of await retireUnusedDataKeys(this.store.meta, this.keyring, count, this.clock.now(), blocked)) {
      this.#audit('key.retired', { kind: 'data', purpose: r.purpose, version: r.version }, 'data key retired: nothing is sealed with it');
      work++;
    }
    return work;
  }

  async #reseal(kind: LongLivedKind, aad: (i: SealedItem) => string, limit: number): Promise<number> {
    const purpose = kind;
    const version = this.keyring.writeVersion(purpose);
    if (version === 1) return 0;
    let done = 0;
    for (const item of await this.store.sealed.listBelow(kind, version, limit)) {
      const a = aad(item);
      let next;
      if (kind === 'cvv') {
        // A CVV keeps its own share (destroying it still destroys the CVV); one used or gone meanwhile is left.
        const share = await this.store.cvc.getKeyShare(item.ref);
        if (!share) continue;
        const cvv = this.keyring.openWithShare('cvv', share, item.sealed, a);
        next = this.keyring.sealWithShare('cvv', share, cvv.toString('utf8'), a);
        cvv.fill(0);
      } else {
        const plain =
          kind === 'webhook-secret'
            ? Buffer.from(openWebhookSecret(this.keyring, { merchantId: item.merchantId!, id: item.ref, secretSealed: item.sealed }), 'utf8')
            : this.keyring.open(purpose, item.sealed, a);
        next = this.keyring.seal(purpose, plain, a);
        plain.fill(0);
      }
      if (await this.store.sealed.reseal(item, next)) done++;
    }
    return done;
  }

  /**
   * Webhook secrets sealed under the signing-key purpose (before they had their own): moved to
   * `webhook-secret`. While any is left, no signing-key version is retired.
   */
  async #legacyWebhookSecrets(limit: number): Promise<{ moved: number; left: number }> {
    if (this.keyring.writeVersion('signing-key') === 1 || (await this.store.meta.get(LEGACY_DONE)) !== null) return { moved: 0, left: 0 };
    let moved = 0;
    let left = 0;
    for (const item of await this.store.sealed.listBelow('webhook-secret', 256, 10_000)) {
      const aad = `webhook|${item.merchantId}|${item.ref}`;
      try {
        this.keyring.open('webhook-secret', item.sealed, aad);
        continue;
      } catch {
        // Not under its own purpose: under signing-key, from an older version.
      }
      if (moved === limit) {
        left++;
        continue;
      }
      const plain = this.keyring.open('signing-key', item.sealed, aad);
      const ok = await this.store.sealed.reseal(item, this.keyring.seal('webhook-secret', plain, aad));
      plain.fill(0);
      if (ok) moved++;
      else left++;
    }
    // None left: new secrets are never sealed under signing-key, so the scan is not needed again.
    if (moved === 0 && left === 0) await this.store.meta.putIfAbsent(LEGACY_DONE, String(this.clock.now()));
    if (moved > 0) this.#audit('key.reencrypted', { purpose: 'webhook-secret', records: moved, from: 'signing-key' }, 'webhook secrets moved to their own key');
    return { moved, left };
  }

  #audit(event: string, fields: Record<string, unknown>, msg: string): void {
    this.log.info({ audit: true, event, ...fields }, msg);
  }
}
