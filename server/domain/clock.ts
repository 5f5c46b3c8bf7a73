/** Time as the domain sees it: injected so lifetimes are tested without sleeping. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that only moves when told to (tests). */
export class ManualClock implements Clock {
  #t: number;
  constructor(start = Date.UTC(2026, 10, 21, 12, 0, 0)) {
    this.#t = start;
  }
  now(): number {
    return this.#t;
  }
  advance(ms: number): void {
    this.#t += ms;
  }
  set(ms: number): void {
    this.#t = ms;
  }
}

/**
 * A monotonic clock with its sleep, for spacing work in time (how often a
 * cache may read the store), not for the domain's time (which is `Clock`).
 */
export interface Timer {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const systemTimer: Timer = {
  now: () => performance.now(),
  sleep: (ms) => new Promise<void>((r) => setTimeout(r, ms)),
};

/** A Timer that moves only when told: `sleep` resolves once `advance` has passed its deadline. */
export class ManualTimer implements Timer {
  #t = 0;
  #sleepers: Array<{ at: number; wake: () => void }> = [];
  now(): number {
    return this.#t;
  }
  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((wake) => this.#sleepers.push({ at: this.#t + ms, wake }));
  }
  /** How many sleeps are waiting. */
  get sleeping(): number {
    return this.#sleepers.length;
  }
  advance(ms: number): void {
    this.#t += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.#t);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.#t);
    for (const s of due) s.wake();
  }
}

export const isoTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
export const epochSeconds = (ms: number): number => Math.floor(ms / 1000);
