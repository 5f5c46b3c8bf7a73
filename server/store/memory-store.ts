import type { Store } from './store.js';
import { MemoryCardStore, MemoryCvcStore } from './memory/cards.js';
import { MemoryChargeStore } from './memory/charges.js';
import { MemoryFormStore, MemoryIdempotencyStore } from './memory/forms.js';
import { MemoryMerchantStore, MemoryMetaStore, MemorySigningKeyStore } from './memory/merchants.js';
import { MemorySealedStore } from './memory/sealed.js';
import { MemorySessionStore } from './memory/sessions.js';
import { Tables } from './memory/tables.js';
import { MemoryWebhookStore } from './memory/webhooks.js';

/**
 * The Store in memory: the same contract as KyselyStore (tests/store/contract.ts
 * runs against both), for domain tests that run in milliseconds without a
 * database. Each unit runs synchronously, so it is atomic, and a refusal or a
 * duplicate key undoes it whole (Tables.tx). Nothing is kept after the process
 * ends, so it is never a production store: the server does not offer it as a
 * DATABASE_URL.
 */
export class MemoryStore implements Store {
  readonly engine = 'memory' as const;
  readonly #t = new Tables();
  readonly meta = new MemoryMetaStore(this.#t);
  readonly merchants = new MemoryMerchantStore(this.#t);
  readonly signingKeys = new MemorySigningKeyStore(this.#t);
  readonly cards = new MemoryCardStore(this.#t);
  readonly cvc = new MemoryCvcStore(this.#t);
  readonly sessions = new MemorySessionStore(this.#t);
  readonly charges = new MemoryChargeStore(this.#t);
  readonly webhooks = new MemoryWebhookStore(this.#t);
  readonly forms = new MemoryFormStore(this.#t);
  readonly idempotency = new MemoryIdempotencyStore(this.#t);
  readonly sealed = new MemorySealedStore(this.#t);

  async migrate(): Promise<void> {}
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}
