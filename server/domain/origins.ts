import type { Store } from '../store/store.js';

/**
 * Every origin some merchant allows, for CORS preflights (which arrive
 * before any token names the merchant). Refreshed from the store so
 * settings changed on another instance are picked up.
 */
export class OriginRegistry {
  #all = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  constructor(private readonly store: Store, private readonly ownOrigin: string) {}

  async refresh(): Promise<void> {
    this.#all = new Set(await this.store.listAllAllowedOrigins());
  }

  start(everyMs = 5000): void {
    this.#timer = setInterval(() => void this.refresh().catch(() => undefined), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Some merchant allows it, or it is the server's own origin. */
  known(origin: string): boolean {
    return origin === this.ownOrigin || this.#all.has(origin);
  }
}
