import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import type { EventWrite, Store } from '../store/store.js';
import type { Clock } from './clock.js';
import { historyEntry } from './history.js';
import { REPLAY_WINDOW_MS } from './sessions.js';
import type { TokenService } from './tokens.js';
import type { WebhookService } from './webhooks.js';

/** Rows per purge statement: deleting one costs ~0.3 ms (secure_delete, five indexes), 500 at once took 24–65 ms. */
export const SWEEP_BATCH = 10;
const DAY_MS = 24 * 3600 * 1000;
/** Delivered webhook rows are kept 30 days, failed ones 30 days after their last try, event records (GET /Events) 30 days. */
export const OUTBOX_RETENTION_MS = 30 * DAY_MS;
/** Rows each lifetime statement ends at most (each batch one short statement or transaction: a few ms with secure_delete). */
const RETENTION_BATCH = SWEEP_BATCH;
/**
 * How long the lifetime work (replay records, retention) may take in one tick,
 * in slices: a backlog (a first sweep after an upgrade, a long outage) is
 * spread over the next ticks instead of one long run that starves the rest.
 */
const LIFETIME_BUDGET_MS = 150;
const REPLAY_BATCH = 4;
/** Expired CVC sessions per purge statement: each also deletes its key share, and a batch of 10 took up to 18 ms in the benchmark's backlog. */
const CVC_BATCH = 4;
/** How long one slice of background work may hold the event loop before it gives a turn. */
const SLICE_MS = 1;

/** Gives the event loop a turn (pending requests run) once the current slice has used its time. */
class Slicer {
  #start = performance.now();
  async pace(): Promise<void> {
    if (performance.now() - this.#start < SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#start = performance.now();
  }
}

/**
 * Background work: expired CVC sessions purged, interrupted charges
 * recovered and completed sessions' replay records past their 60-s window
 * dropped every second;
 * expired idempotency keys (24 h), long-retired signing keys and, in one
 * instance of a cluster at a time (a lease in the database), the retention
 * sweep every minute: webhook outbox rows 30 days after delivery or their last
 * try, ended sessions with their 3DS transactions and charge records
 * `retentionDays` after their expiry. Expiry is also enforced
 * in every read, so the sweeper only decides how soon the bytes leave the
 * disk. It works in small slices with a turn of the event loop between them
 * (the benchmark's `background` scenario measures the longest block), since
 * better-sqlite3 calls resolve at once and would otherwise never give way.
 */
export class Sweeper {
  #timer: NodeJS.Timeout | null = null;
  #ticks = 0;
  #running = false;
  constructor(
    private readonly store: Pick<Store, 'cards' | 'cvc' | 'idempotency' | 'meta' | 'sessions' | 'webhooks'>,
    private readonly tokens: TokenService,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly webhooks?: WebhookService,
    /** Crash recovery of charges left at the processor by a server that stopped (ChargeService.recoverInFlight). */
    private readonly charges?: { recoverInFlight(): Promise<number> },
    private readonly opts: {
      retentionDays: number;
      holder?: string;
      /** The work a key rotation leaves, a slice at a time (KeyMaintenance.slice): done with the retention pass. */
      keys?: (limit: number) => Promise<number>;
    } = { retentionDays: 90 },
  ) {
    this.#holder = opts.holder ?? randomUUID();
  }
  /** This sweeper's name as the holder of the retention lease (random: one per process). */
  readonly #holder: string;

  start(everyMs = 1000): void {
    this.#timer = setInterval(() => void this.tick(), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** The last retention sweep ran out of its budget: the next tick goes on with it. */
  #backlog = false;

  async tick(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      const now = this.clock.now();
      const slice = new Slicer();
      let cvc = 0;
      for (let n = CVC_BATCH; n === CVC_BATCH && cvc < 50_000;) {
        n = await this.store.cvc.deleteExpired(now, CVC_BATCH);
        cvc += n;
        await slice.pace();
      }
      if (cvc > 0) this.log.info({ audit: true, event: 'cvv.destroyed', reason: 'expired', count: cvc }, 'expired CVVs purged');
      await this.store.cvc.deleteOrphanKeyShares(now);
      await slice.pace();
      if (this.charges) {
        // Sessions still owned by a charge long after its processor's timeout: settle them from the processor's records.
        await this.charges.recoverInFlight();
        await slice.pace();
      }
      for (const s of await this.store.sessions.listExpired(now, 100)) {
        // Expired, its CVV deleted and its event written, in one transaction (once, whatever other sweepers do).
        const events: EventWrite[] = [
          ...((await this.webhooks?.prepare(s.merchantId, s.mode, [{ type: 'session.expired', data: { session: s.id } }])) ?? []),
          historyEntry({ session: s, type: 'expired', at: now }),
        ];
        await this.store.sessions.expire(s.id, now, events);
        await slice.pace();
      }
      const deadline = performance.now() + LIFETIME_BUDGET_MS;
      const more = () => performance.now() < deadline;
      // Completed sessions' replay records past their window (a repeat of the call is then answered 409, API.md section 2).
      // Four rows a statement: clearing a 1.6 KB sealed record under secure_delete costs ~2.5 ms a row (the benchmark's background scenario).
      for (let n = REPLAY_BATCH; n === REPLAY_BATCH && more();) {
        n = await this.store.sessions.dropReplaysBefore(now - REPLAY_WINDOW_MS, REPLAY_BATCH);
        await slice.pace();
      }
      if (this.#ticks++ % 60 === 0 || this.#backlog) {
        for (let n = RETENTION_BATCH; n === RETENTION_BATCH && more();) {
          n = await this.store.idempotency.deleteExpired(now, RETENTION_BATCH);
          await slice.pace();
        }
        await this.tokens.pruneRetiredKeys();
        this.#backlog = !(await this.#retention(now, slice, more));
      }
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'sweeper tick failed');
    } finally {
      this.#running = false;
    }
  }

  /**
   * The retention sweep, by whichever instance holds the lease (taken for
   * five minutes, renewed at each sweep: another instance takes over when this
   * one stops). Each batch is one short transaction; the loop gives the event
   * loop a turn between them.
   */
  async #retention(now: number, slice: Slicer, more: () => boolean): Promise<boolean> {
    if (!(await this.store.meta.takeLease('retention', this.#holder, now, now + 5 * 60_000))) return true;
    let outbox = 0;
    let n = RETENTION_BATCH;
    for (n = RETENTION_BATCH; n === RETENTION_BATCH && more();) {
      n = await this.store.webhooks.deleteOldOutbox(now - OUTBOX_RETENTION_MS, now - OUTBOX_RETENTION_MS, RETENTION_BATCH);
      outbox += n;
      await slice.pace();
    }
    let events = 0;
    for (n = RETENTION_BATCH; n === RETENTION_BATCH && more();) {
      n = await this.store.webhooks.deleteOldEvents(now - OUTBOX_RETENTION_MS, RETENTION_BATCH);
      events += n;
      await slice.pace();
    }
    let sessions = 0;
    for (n = RETENTION_BATCH; n === RETENTION_BATCH && more();) {
      n = await this.store.sessions.deleteEnded(now - this.opts.retentionDays * DAY_MS, RETENTION_BATCH);
      sessions += n;
      await slice.pace();
    }
    // Card numbers' CVV statuses nobody touched for the retention period (never a block: it lasts until lifted).
    let cvvStatus = 0;
    for (n = RETENTION_BATCH; n === RETENTION_BATCH && more();) {
      n = await this.store.cards.deleteStaleCvvStatus(now - this.opts.retentionDays * DAY_MS, RETENTION_BATCH);
      cvvStatus += n;
      await slice.pace();
    }
    // What a key rotation leaves: values re-sealed, data keys re-wrapped, unused versions retired (it audits each step).
    if (this.opts.keys)
      for (n = RETENTION_BATCH; n > 0 && more();) {
        n = await this.opts.keys(RETENTION_BATCH);
        await slice.pace();
      }
    if (outbox + events + sessions + cvvStatus > 0)
      this.log.info(
        { audit: true, event: 'retention.swept', outbox, events, sessions, cvvStatus, retentionDays: this.opts.retentionDays },
        'old records deleted',
      );
    // Done when the last loop ran dry; otherwise the budget ran out somewhere (the next tick goes on).
    return n < RETENTION_BATCH && more();
  }
}
