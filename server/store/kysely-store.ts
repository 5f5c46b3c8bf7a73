import type { Engine } from './migrations.js';
import type { Store } from './store.js';
import { KyselyCardStore } from './kysely/cards.js';
import { KyselyChargeStore } from './kysely/charges.js';
import { KyselyCvcStore } from './kysely/cvc.js';
import { KyselyEngine, type KyselyStoreOptions } from './kysely/engine.js';
import { KyselyFormStore } from './kysely/forms.js';
import { KyselyIdempotencyStore } from './kysely/idempotency.js';
import { KyselyMerchantStore } from './kysely/merchants.js';
import { KyselyMetaStore } from './kysely/meta.js';
import { KyselySealedStore } from './kysely/sealed.js';
import { KyselySessionStore } from './kysely/sessions.js';
import { KyselySigningKeyStore } from './kysely/signing-keys.js';
import { KyselyWebhookStore } from './kysely/webhooks.js';

export type { KyselyStoreOptions } from './kysely/engine.js';

/**
 * The Store over Kysely, for SQLite (better-sqlite3) and PostgreSQL (pg): one
 * module per aggregate in ./kysely, all on one KyselyEngine (the driver, the
 * compiled statements, transaction units, and the WAL and vacuum handling
 * that makes deleted CVV bytes leave the files). Dialect differences stay in
 * ./kysely.
 */
export class KyselyStore implements Store {
  readonly meta: KyselyMetaStore;
  readonly merchants: KyselyMerchantStore;
  readonly signingKeys: KyselySigningKeyStore;
  readonly cards: KyselyCardStore;
  readonly cvc: KyselyCvcStore;
  readonly sessions: KyselySessionStore;
  readonly charges: KyselyChargeStore;
  readonly webhooks: KyselyWebhookStore;
  readonly forms: KyselyFormStore;
  readonly idempotency: KyselyIdempotencyStore;
  readonly sealed: KyselySealedStore;

  readonly #e: KyselyEngine;

  private constructor(e: KyselyEngine) {
    this.#e = e;
    this.meta = new KyselyMetaStore(e);
    this.merchants = new KyselyMerchantStore(e);
    this.signingKeys = new KyselySigningKeyStore(e);
    this.cards = new KyselyCardStore(e);
    this.cvc = new KyselyCvcStore(e);
    this.sessions = new KyselySessionStore(e);
    this.charges = new KyselyChargeStore(e);
    this.webhooks = new KyselyWebhookStore(e);
    this.forms = new KyselyFormStore(e);
    this.idempotency = new KyselyIdempotencyStore(e);
    this.sealed = new KyselySealedStore(e);
  }

  static async open(url: string, opts: KyselyStoreOptions = {}): Promise<KyselyStore> {
    return new KyselyStore(await KyselyEngine.open(url, opts));
  }

  get engine(): Engine {
    return this.#e.engine;
  }
  /** The query builder (tests and tools that read the tables themselves). */
  get db(): KyselyEngine['db'] {
    return this.#e.db;
  }
  /** The pg pool (PostgreSQL only): shared with the rate limiter so limits hold across instances. */
  get pgPool(): unknown {
    return this.#e.pgPool;
  }
  /** Statements run so far, however they were sent (tests report how many an operation runs). */
  get statementsRun(): number {
    return this.#e.statementsRun;
  }
  /** Round trips to the database so far: on PostgreSQL each awaited exchange, on SQLite each synchronous call. */
  get roundTrips(): number {
    return this.#e.roundTrips;
  }
  /** How many WAL flushes the store made (tests observe that money writes wait for one). */
  get walSyncs(): number {
    return this.#e.walSyncs;
  }
  /** Runs the SQLite WAL checkpoint at once (a no-op on PostgreSQL). */
  checkpointNow(): void {
    this.#e.checkpointNow();
  }
  migrate(): Promise<void> {
    return this.#e.migrate();
  }
  ping(): Promise<void> {
    return this.#e.ping();
  }
  close(): Promise<void> {
    return this.#e.close();
  }
}
