import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.js';
import { CardService } from './domain/cards.js';
import { type Clock, systemClock, type Timer } from './domain/clock.js';
import { IdempotencyService } from './domain/idempotency.js';
import type { Keyring } from './domain/keyring.js';
import { DATA_KEY_RELOAD_MS, loadDataKeys } from './domain/data-keys.js';
import type { KeyProvider } from './domain/key-provider.js';
import { KeyMaintenance } from './domain/key-maintenance.js';
import { openKeys } from './domain/key-setup.js';
import { MerchantService, processorAad } from './domain/merchants.js';
import { OriginRegistry } from './domain/origins.js';
import { RateLimits } from './domain/rate-limits.js';
import { SessionService } from './domain/sessions.js';
import { TokenService } from './domain/tokens.js';
import { Vault } from './domain/vault.js';
import { ProxyService } from './domain/proxy.js';
import { FormService } from './domain/forms.js';
import { ChargeService } from './domain/charges.js';
import { OperationService } from './domain/operations.js';
import { ThreeDSService } from './domain/three-ds.js';
import { WebhookService } from './domain/webhooks.js';
import { HttpProcessor, HttpProcessorConfig } from './connectors/processors/http.js';
import type { Processor } from './connectors/processors/processor.js';
import { SimulatorProcessor } from './connectors/processors/simulator.js';
import { SimulatorThreeDS } from './connectors/three-ds/simulator.js';
import type { ThreeDSProvider } from './connectors/three-ds/provider.js';
import type { MerchantRecord } from './store/store.js';
import type { Logger } from './log.js';
import { Secret } from './secret.js';
import { KyselyStore } from './store/kysely-store.js';
import type { Store } from './store/store.js';

/** Everything the app needs, wired once. The one file that names concrete classes. */
export interface Deps {
  config: Config;
  log: Logger;
  clock: Clock;
  store: Store;
  keyring: Keyring;
  /** Where the key-encryption keys live (`local`: under the master key; `pkcs11`: an HSM). */
  keyProvider: KeyProvider;
  /** The work a key rotation leaves (re-sealing, re-wrapping, retiring), run in slices by the sweeper. */
  keyMaintenance: KeyMaintenance;
  tokens: TokenService;
  merchants: MerchantService;
  cards: CardService;
  vault: Vault;
  sessions: SessionService;
  idempotency: IdempotencyService;
  origins: OriginRegistry;
  limits: RateLimits;
  webhooks: WebhookService;
  threeDS: ThreeDSService;
  charges: ChargeService;
  operations: OperationService;
  proxy: ProxyService;
  forms: FormService;
  processorFor(m: MerchantRecord): { processor: Processor; timeoutMs: number };
  /** Resolves when the database answers (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The master key: from CVVOPS_MASTER_KEY, or (outside production only)
 * generated once into the data folder with a loud warning.
 */
export function resolveMasterKey(config: Config, log: Logger): Secret<Buffer> {
  if (config.masterKey) return config.masterKey;
  if (config.production) throw new Error('CVVOPS_MASTER_KEY is required in production');
  const file = join(config.dataDir, 'master.key');
  if (existsSync(file)) {
    const buf = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (buf.length !== 32) throw new Error(`${file} does not hold a 32-byte base64 key`);
    log.warn({ file }, 'using the development master key from the data folder; set CVVOPS_MASTER_KEY in production');
    return new Secret(buf);
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  chmodSync(file, 0o600);
  log.warn({ file }, 'GENERATED a development master key into the data folder; it encrypts every CVV and card here. Set CVVOPS_MASTER_KEY in production');
  return new Secret(key);
}

export async function createDeps(
  config: Config,
  log: Logger,
  opts: {
    clock?: Clock;
    timer?: Timer;
    store?: Store;
    masterKey?: Secret<Buffer>;
    limits?: RateLimits;
    threeDSProvider?: ThreeDSProvider;
    simulator?: Processor;
  } = {},
): Promise<Deps> {
  const clock = opts.clock ?? systemClock;
  const store = opts.store ?? (await KyselyStore.open(config.databaseUrl, { synchronous: config.sqliteSynchronous, now: () => clock.now() }));
  await store.migrate();
  let keyring: Keyring;
  let keyProvider: KeyProvider;
  try {
    // With an HSM the master key is not used (nor generated).
    const master = config.keyProvider.name === 'local' ? (opts.masterKey ?? resolveMasterKey(config, log)) : null;
    ({ keyring, provider: keyProvider } = await openKeys(store, config.keyProvider, master, () => clock.now(), log));
  } catch (e) {
    await store.close();
    throw e;
  }
  // Data keys made since (cvvops keys rotate-data, another instance): picked up without a restart, well before they are used.
  const dataKeyReload = setInterval(
    () =>
      void loadDataKeys(store.meta, keyring, keyProvider).catch((err: unknown) =>
        log.error({ audit: true, event: 'key.unwrap_failed', err: err instanceof Error ? err.message : String(err) }, 'a data key could not be loaded'),
      ),
    DATA_KEY_RELOAD_MS,
  );
  dataKeyReload.unref();
  const tokens = new TokenService(store, keyring, clock, { alg: config.signingAlg, issuer: config.publicBaseUrl, log });
  await tokens.init();
  const vault = new Vault(store, keyring, clock, log);
  const merchants = new MerchantService(store, keyring, clock, { production: config.production, allowPrivateTargets: config.allowPrivateTargets, log });
  const cards = new CardService(store, keyring, clock, vault);
  const webhooks = new WebhookService(store, keyring, clock, { allowPrivate: config.allowPrivateTargets, log });
  const idempotency = new IdempotencyService(store, keyring, clock);
  const sessions = new SessionService(store, tokens, vault, keyring, clock, {
    publicBaseUrl: config.publicBaseUrl,
    publicOrigin: config.publicOrigin,
    log,
    idempotency,
    prepareEvents: (merchantId, mode, events) => webhooks.prepare(merchantId, mode, events),
  });
  const origins = new OriginRegistry(store, config.publicOrigin, opts.timer ? { timer: opts.timer } : {});
  await origins.refresh();
  const limits = opts.limits ?? (await chooseLimits(config, store));
  const threeDS = new ThreeDSService(store, keyring, clock, cards, opts.threeDSProvider ?? new SimulatorThreeDS(), webhooks, {
    publicBaseUrl: config.publicBaseUrl,
    log,
  });
  const simulator = opts.simulator ?? new SimulatorProcessor();
  const httpProcessors = new Map<string, { sealed: string; processor: HttpProcessor; timeoutMs: number }>();
  const processorFor = (m: MerchantRecord): { processor: Processor; timeoutMs: number } => {
    const p = m.processor as { type?: string; sealed?: string; keyVersion?: number; scope?: string };
    if (p.type !== 'http' || !p.sealed) return { processor: simulator, timeoutMs: 15_000 };
    const key = `${m.id}|${m.mode}`;
    const cached = httpProcessors.get(key);
    if (cached && cached.sealed === p.sealed) return cached;
    const cfg = HttpProcessorConfig.parse(
      JSON.parse(
        keyring
          .open('settings', { keyVersion: p.keyVersion ?? 1, blob: Buffer.from(p.sealed, 'base64') }, processorAad(m.id, m.mode, p.scope))
          .toString('utf8'),
      ),
    );
    const entry = {
      sealed: p.sealed,
      processor: new HttpProcessor(cfg, {
        allowPrivate: config.allowPrivateTargets,
        onTranscript: (t) => log.debug({ merchantId: m.id, transcript: t }, 'processor transcript (scrubbed)'),
      }),
      timeoutMs: cfg.timeoutMs,
    };
    httpProcessors.set(key, entry);
    return entry;
  };
  const charges = new ChargeService(store, keyring, clock, cards, vault, threeDS, sessions, webhooks, processorFor, { production: config.production, log });
  const operations = new OperationService(sessions, vault, threeDS, keyring, clock);
  const proxy = new ProxyService(store, cards, vault, clock, { allowPrivateTargets: config.allowPrivateTargets, log });
  const forms = new FormService(store, clock, { publicBaseUrl: config.publicBaseUrl, log });
  const keyMaintenance = new KeyMaintenance(store, keyring, keyProvider, cards, clock, log);
  return {
    config,
    log,
    clock,
    store,
    keyring,
    keyProvider,
    keyMaintenance,
    tokens,
    merchants,
    cards,
    vault,
    sessions,
    idempotency,
    origins,
    limits,
    webhooks,
    threeDS,
    charges,
    operations,
    processorFor,
    proxy,
    forms,
    ping: () => store.ping(),
    async close() {
      clearInterval(dataKeyReload);
      origins.stop();
      webhooks.stop();
      await store.close();
      await keyProvider.close();
    },
  };
}

/** Rate limits that hold where the server runs: PostgreSQL (every instance), node:cluster (every worker), or one process. */
async function chooseLimits(config: Config, store: Store): Promise<RateLimits> {
  if (!config.rateLimit) return RateLimits.off();
  const pool = (store as { pgPool?: unknown }).pgPool;
  if (store.engine === 'postgres' && pool) return RateLimits.postgres(config.rateLimits, pool);
  const { default: cluster } = await import('node:cluster');
  if (config.workers > 1 && cluster.isWorker) return RateLimits.cluster(config.rateLimits);
  return RateLimits.inMemory(config.rateLimits);
}
