import { RateLimiterCluster, RateLimiterMemory, RateLimiterPostgres, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors.js';

export type LimitName = 'apiKey' | 'session' | 'address';

/**
 * Rate limits (API.md section 2): per API key, per operations session and per
 * client address, each a number of requests per minute. Backed by
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
    return new RateLimits({ apiKey: make('apiKey'), session: make('session'), address: make('address') });
  }

  /** node:cluster workers share counts through the primary (which runs RateLimiterClusterMaster). */
  static cluster(perMinute: Record<LimitName, number>): RateLimits {
    const make = (name: LimitName) => new RateLimiterCluster({ keyPrefix: `cvvops_${name}`, points: perMinute[name], duration: 60, timeoutMs: 1000 });
    return new RateLimits({ apiKey: make('apiKey'), session: make('session'), address: make('address') });
  }

  /** Counts in PostgreSQL, so the limits hold across every instance sharing the database. */
  static async postgres(perMinute: Record<LimitName, number>, pool: unknown): Promise<RateLimits> {
    const make = (name: LimitName) => new Promise<RateLimiterAbstract>((resolve, reject) => {
      const l: RateLimiterPostgres = new RateLimiterPostgres({
        storeClient: pool, storeType: 'pool', tableName: 'cvvops_rate_limits', keyPrefix: `cvvops_${name}`,
        points: perMinute[name], duration: 60, clearExpiredByTimeout: true,
      }, (err?: unknown) => (err ? reject(err) : resolve(l)));
    });
    // One after the other: each creates the shared table (CREATE TABLE IF NOT EXISTS), and two such statements
    // at the same moment race in PostgreSQL ("type … already exists"). Another instance starting at the same time
    // can still race the first: that one is retried once, the table being there by then.
    const first = await make('apiKey').catch(async () => {
      await new Promise((r) => setTimeout(r, 200));
      return make('apiKey');
    });
    return new RateLimits({ apiKey: first, session: await make('session'), address: await make('address') });
  }

  static off(): RateLimits {
    return new RateLimits({});
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
