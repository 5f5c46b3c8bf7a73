import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../server/config.js';
import { ManualClock } from '../../server/domain/clock.js';
import { createDeps, type Deps } from '../../server/deps.js';
import type { MerchantContext } from '../../server/domain/merchants.js';
import type { CreateSessionInput, OperationResponse } from '../../server/domain/sessions.js';
import { Sweeper } from '../../server/domain/sweeper.js';
import type { SessionClaims } from '../../server/domain/tokens.js';
import { createLogger, type Logger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { MemoryStore } from '../../server/store/memory-store.js';

/** 2026-12-01T12:00:00Z: every domain test starts here and moves the clock itself. */
export const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
export const ORIGIN = 'https://shop.example';
/** A card number that is not a test card: what live keys take. */
export const LIVE_CARD = '4242424242424242';

/**
 * The domain without HTTP or a database: every service wired by createDeps
 * over a MemoryStore and a manual clock. A test calls the services as the
 * routes do (verified token in, response and next token out).
 */
export interface World {
  deps: Deps;
  store: MemoryStore;
  clock: ManualClock;
  /** The merchant as its test key authenticates it. */
  m: MerchantContext;
  /** The same merchant with its live key. */
  live: MerchantContext;
  sweeper: Sweeper;
  /** A stored card (tokenized as POST /Cards does): its token. */
  card(number?: string, as?: MerchantContext): Promise<string>;
  /** A session (POST /CvvOperations) on a new card (`as`: test mode unless told): its id and first token. */
  session(input?: Partial<CreateSessionInput> & { number?: string; as?: MerchantContext }): Promise<{ id: string; token: string }>;
  /** The verified claims of a token, as the routes' auth gives them to the services. */
  claims(token: string): Promise<SessionClaims>;
  collect(token: string, cvv?: string): Promise<OperationResponse>;
  threeDS(token: string): Promise<OperationResponse>;
  charge(token: string, body?: { amount?: { value: number; currency: string } }, idempotencyKey?: string): Promise<OperationResponse>;
  close(): Promise<void>;
}

/**
 * `store`: another world's (a restart, or another instance); `masterKey` null: none (an HSM, named by `env`);
 * `env`: more settings; `log`: where the logs go (silent unless given).
 */
export async function world(
  opts: { store?: MemoryStore; clock?: ManualClock; masterKey?: Buffer | null; env?: Record<string, string>; log?: Logger } = {},
): Promise<World> {
  const store = opts.store ?? new MemoryStore();
  const clock = opts.clock ?? new ManualClock(T0);
  const masterKey = opts.masterKey === undefined ? randomBytes(32) : opts.masterKey;
  const config = loadConfig({
    DATABASE_URL: 'sqlite::memory:',
    PUBLIC_BASE_URL: 'http://cvv.test',
    ...(masterKey ? { CVVOPS_MASTER_KEY: masterKey.toString('base64') } : {}),
    CVVOPS_RATE_LIMIT: 'off',
    ...opts.env,
  });
  const log = opts.log ?? createLogger('silent');
  const deps = await createDeps(config, log, { clock, store, ...(masterKey ? { masterKey: new Secret(masterKey) } : {}) });
  const created = await deps.merchants.create({ name: 'Shop', origins: [ORIGIN] });
  const m = await deps.merchants.authenticate(created.testKey);
  const live = await deps.merchants.authenticate(created.liveKey);
  const sweeper = new Sweeper(deps.store, deps.tokens, clock, log, deps.webhooks, deps.charges, { retentionDays: 90 });
  const claims = async (token: string): Promise<SessionClaims> => {
    const v = await deps.tokens.verify(token);
    if (!v.ok) throw new Error(`token refused: ${v.reason}`);
    return v.claims;
  };
  const call = async (token: string) => ({ token, claims: await claims(token), origin: ORIGIN });
  const w: World = {
    deps,
    store,
    clock,
    m,
    live,
    sweeper,
    claims,
    async card(number = '4000000000001018', as = m) {
      const c = await deps.cards.tokenize(as, { number: new Secret(number), expMonth: 12, expYear: 2030 });
      return c.token;
    },
    async session(input = {}) {
      const { number, as = m, ...rest } = input;
      const card = await w.card(number ?? (as.mode === 'live' ? LIVE_CARD : undefined), as);
      const r = await deps.sessions.create(as, {
        card,
        operations: ['collectCvv', 'threeDS', 'charge'],
        amount: { value: 1999, currency: 'EUR' },
        ...rest,
      });
      return { id: r.body.id as string, token: r.body.token as string };
    },
    async collect(token, cvv = '123') {
      return deps.operations.collectCvv(await call(token), new Secret(cvv));
    },
    async threeDS(token) {
      return deps.operations.threeDSAuthenticate(await call(token), {});
    },
    async charge(token, body = {}, idempotencyKey) {
      const r = await deps.charges.charge({ ...(await call(token)), body, ...(idempotencyKey ? { idempotencyKey } : {}) });
      return r.response;
    },
    async close() {
      sweeper.stop();
      await deps.close();
    },
  };
  return w;
}

/** The error code an AppError carries (undefined for anything else). */
export const codeOf = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;
