import type { MerchantStore } from '../store/store.js';
import { systemTimer, type Timer } from './clock.js';

/** How often, at most, origins the registry does not know make it read the store (a few times a second). */
export const MISS_REFRESH_INTERVAL_MS = 250;

/**
 * Every origin some merchant allows, for CORS preflights (which arrive
 * before any token names the merchant). Refreshed from the store so
 * settings changed on another instance are picked up: every few seconds,
 * and at once when an origin it does not know asks (`allows`), so a merchant
 * created by the CLI (another process) works without waiting for the timer.
 */
export class OriginRegistry {
  #all = new Set<string>();
  #interval: NodeJS.Timeout | null = null;
  /** Refreshes started, and the start number of the one whose result #all holds (a slower, older read never overwrites a newer one). */
  #started = 0;
  #applied = 0;
  /** The miss-driven read not yet started: every miss that arrives meanwhile waits for it (it will start after they arrived). */
  #queued: Promise<void> | null = null;
  /** The miss-driven read in flight (they run one at a time); it never rejects. */
  #running: Promise<void> | null = null;
  #lastMissRead = Number.NEGATIVE_INFINITY;
  readonly #missIntervalMs: number;
  readonly #timer: Timer;

  constructor(
    private readonly store: { readonly merchants: Pick<MerchantStore, 'listAllAllowedOrigins'> },
    private readonly ownOrigin: string,
    /** `timer`: a monotonic clock with its sleep (this is about spacing reads, not about the domain's time). */
    opts: { missIntervalMs?: number; timer?: Timer } = {},
  ) {
    this.#missIntervalMs = opts.missIntervalMs ?? MISS_REFRESH_INTERVAL_MS;
    this.#timer = opts.timer ?? systemTimer;
  }

  async refresh(): Promise<void> {
    const n = ++this.#started;
    const all = await this.store.merchants.listAllAllowedOrigins();
    if (n > this.#applied) {
      this.#applied = n;
      this.#all = new Set(all);
    }
  }

  start(everyMs = 5000): void {
    this.#interval = setInterval(() => void this.refresh().catch(() => undefined), everyMs);
    this.#interval.unref();
  }

  stop(): void {
    if (this.#interval) clearInterval(this.#interval);
  }

  /** Some merchant allows it, or it is the server's own origin, as of the last refresh. */
  known(origin: string): boolean {
    return origin === this.ownOrigin || this.#all.has(origin);
  }

  /**
   * `known`, but an origin it does not know first makes it read the store
   * again (a merchant may have been created or changed elsewhere since the
   * last refresh), with a read that starts after this call. Misses share
   * reads: every miss that arrives while a read is waiting to start joins it,
   * and miss-driven reads start at most once per MISS_REFRESH_INTERVAL_MS
   * (one at a time), so a flood of unknown origins costs the database a few
   * reads a second, whatever its rate. A failed read answers from what the
   * registry had.
   */
  async allows(origin: string): Promise<boolean> {
    if (this.known(origin)) return true;
    await this.#missRead();
    return this.known(origin);
  }

  #missRead(): Promise<void> {
    if (this.#queued) return this.#queued;
    const queued = this.#readAfter(this.#running);
    this.#queued = queued;
    return queued;
  }

  async #readAfter(previous: Promise<void> | null): Promise<void> {
    // Always yields first (even with nothing before it), so #missRead has recorded this read as queued.
    await previous;
    const wait = () => this.#lastMissRead + this.#missIntervalMs - this.#timer.now();
    for (let ms = wait(); ms > 0; ms = wait()) await this.#timer.sleep(ms);
    // It starts now: a miss arriving from here on may be newer than this read, so it queues the next one.
    this.#queued = null;
    this.#lastMissRead = this.#timer.now();
    // A failed read (store unreachable) leaves the registry as it was; the periodic refresh retries.
    const running = this.refresh().catch(() => undefined);
    this.#running = running;
    await running;
    if (this.#running === running) this.#running = null;
  }
}
