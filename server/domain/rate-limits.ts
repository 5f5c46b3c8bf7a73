import { RateLimiterCluster, RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors.js';

export type LimitName = 'apiKey' | 'session' | 'address' | 'apiKeyFailures';

const NAMES: readonly LimitName[] = ['apiKey', 'session', 'address', 'apiKeyFailures'];

/**
 * Rate limits (API.md section 2): per API key, per operations session and per
 * client address, each a number of requests per minute; and failed API-key
 * attempts per client address per minute (`apiKeyFailures`: counted with
 * `countFailure`, enforced with `assertNotBlocked`). Backed by
 * rate-limiter-flexible; the limiter for each name is injected so a shared
 * store (PostgreSQL) can make the limits hold across instances.
 */
export class RateLimits {
  readonly #limiters: Partial<Record<LimitName, RateLimiterAbstract>>;
  constructor(limiters: Partial<Record<LimitName, RateLimiterAbstract>>) {
    this.#limiters = limiters;
  }

  static inMemory(perMinute: Record<LimitName, number>): RateLimits {
    const make = (name: LimitName) => new RateLimiterMemory({ keyPrefix: `cvvops_${name}`, points: perMinute[name], duration: 60 });
    return new RateLimits(Object.fromEntries(NAMES.map((n) => [n, make(n)])));
  }

  /** node:cluster workers share counts through the primary (which runs RateLimiterClusterMaster). */
  static cluster(perMinute: Record<LimitName, number>): RateLimits {
    const make = (name: LimitName) => new RateLimiterCluster({ keyPrefix: `cvvops_${name}`, points: perMinute[name], duration: 60, timeoutMs: 1000 });
    return new RateLimits(Object.fromEntries(NAMES.map((n) => [n, make(n)])));
  }

  /** Counts in PostgreSQL, so the limits hold across every instance sharing the database. */
  static async postgres(perMinute: Record<LimitName, number>, pool: unknown): Promise<RateLimits> {
    const make = (name: LimitName) =>
      new Promise<RateLimiterAbstract>((resolve, reject) => {
        const l: RateLimiterPostgres = new RateLimiterPostgres(
          {
            storeClient: pool,
            storeType: 'pool',
            tableName: 'cvvops_rate_limits',
            keyPrefix: `cvvops_${name}`,
            points: perMinute[name],
            duration: 60,
            clearExpiredByTimeout: true,
          },
          (err?: unknown) => (err ? reject(err instanceof Error ? err : new Error('the rate limiter could not start', { cause: err })) : resolve(l)),
        );
      });
    // One after the other: each creates the shared table (CREATE TABLE IF NOT EXISTS), and two such statements
    // at the same moment race in PostgreSQL ("type … already exists"). Another instance starting at the same time
    // can still race the first: that one is retried once, the table being there by then.
    const first = await make('apiKey').catch(async () => {
      await new Promise((r) => setTimeout(r, 200));
      return make('apiKey');
    });
    return new RateLimits({ apiKey: first, session: await make('session'), address: await make('address'), apiKeyFailures: await make('apiKeyFailures') });
  }

  static off(): RateLimits {
    return new RateLimits({});
  }

  /**
   * For limits on failures (a wrong API key): 429 rate_limited with
   * Retry-After while `key` has used up its failures in the window. Checked
   * before the attempt, so once blocked even a right guess gets 429, and
   * guessing gains nothing by going on.
   */
  async assertNotBlocked(name: LimitName, key: string): Promise<void> {
    const limiter = this.#limiters[name];
    if (!limiter) return;
    const res = await limiter.get(key);
    if (res && res.consumedPoints >= limiter.points) {
      throw new AppError('rate_limited', undefined, { retryAfter: Math.max(1, Math.ceil(res.msBeforeNext / 1000)) });
    }
  }

  /** Counts one failure against `key` (the caller answers the failure as it is; the next attempt may be blocked). */
  async countFailure(name: LimitName, key: string): Promise<void> {
    const limiter = this.#limiters[name];
    if (!limiter) return;
    try {
      await limiter.consume(key, 1);
    } catch (e) {
      // Already over: the attempt was refused anyway. Anything else (the store) is a real error.
      if (!(e instanceof RateLimiterRes)) throw e;
    }
  }

  /** Counts one request; throws 429 rate_limited with Retry-After once the limit is reached. */
  async consume(name: LimitName, key: string): Promise<void> {
    const limiter = this.#limiters[name];
    if (!limiter) return;
    try {
      await limiter.consume(key, 1);
    } catch (e) {
      if (e instanceof RateLimiterRes) {
        throw new AppError('rate_limited', undefined, { retryAfter: Math.max(1, Math.ceil(e.msBeforeNext / 1000)) });
      }
      throw e;
    }
  }
}
