import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { Clock } from './clock.js';
import type { TokenService } from './tokens.js';
import type { WebhookService } from './webhooks.js';

/**
 * Background purge: expired CVC sessions every second (in batches, so the
 * event loop is never held long), expired idempotency keys and long-retired
 * signing keys every minute. Expiry is also enforced in every read, so the
 * sweeper only decides how soon the bytes leave the disk.
 */
export class Sweeper {
  #timer: NodeJS.Timeout | null = null;
  #ticks = 0;
  #running = false;
  constructor(private readonly store: Store, private readonly tokens: TokenService, private readonly clock: Clock, private readonly log: Logger, private readonly webhooks?: WebhookService) {}

  start(everyMs = 1000): void {
    this.#timer = setInterval(() => void this.tick(), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const now = this.clock.now();
      let cvc = 0;
      for (let n = 500; n === 500 && cvc < 50_000;) {
        n = await this.store.deleteExpiredCvcSessions(now, 500);
        cvc += n;
        if (n === 500) await new Promise((r) => setImmediate(r));
      }
      if (cvc > 0) this.log.info({ audit: true, event: 'cvv.destroyed', reason: 'expired', count: cvc }, 'expired CVVs purged');
      for (const s of await this.store.expireSessions(now, 200)) {
        await this.store.deleteCvcSessionsOfSession(s.id);
        await this.webhooks?.emit(s.merchantId, s.mode, 'session.expired', { session: s.id });
      }
      if (this.#ticks++ % 60 === 0) {
        await this.store.deleteExpiredIdempotencyKeys(now, 1000);
        await this.tokens.pruneRetiredKeys();
      }
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'sweeper tick failed');
    } finally {
      this.#running = false;
    }
  }
}
