import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** The worker's code (CommonJS, evaluated): its own connection to the file, one TRUNCATE checkpoint per message. */
const SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
parentPort.on('message', () => {
  const t0 = performance.now();
  let busy = 1;
  try {
    const [r] = db.pragma('wal_checkpoint(TRUNCATE)');
    busy = r ? r.busy : 0;
  } catch {
    busy = 1;
  }
  parentPort.postMessage({ busy, ms: performance.now() - t0 });
});
`;

/**
 * SQLite's WAL checkpoints, off the event loop: a worker thread with a
 * connection of its own runs `wal_checkpoint(TRUNCATE)`, which copies the
 * log into the database file, syncs it and empties the log (so deleted CVV
 * bytes leave it). Run on the main thread, that took 20–40 ms (the benchmark's
 * `background` scenario), and SQLite's automatic checkpoint did the same inside
 * whichever commit crossed 1,000 pages; the engine turns that one off while the
 * worker runs. A checkpoint in progress holds the write lock: the engine's
 * background writers wait for `inflight` (asynchronously) instead of sleeping
 * in SQLite's busy handler.
 */
export class Checkpointer {
  #inflight: Promise<boolean> | null = null;

  private constructor(private readonly worker: Worker) {
    worker.unref();
  }

  /** A checkpointer for the database file `file`, or null when no worker could be started (the caller checkpoints on its own thread). */
  static start(file: string): Checkpointer | null {
    try {
      const driver = createRequire(import.meta.url).resolve('better-sqlite3');
      const worker = new Worker(SOURCE, { eval: true, workerData: { file, driver } });
      worker.on('error', () => undefined);
      return new Checkpointer(worker);
    } catch {
      return null;
    }
  }

  /** The checkpoint in progress, if any. */
  get inflight(): Promise<boolean> | null {
    return this.#inflight;
  }

  /** Runs a checkpoint (or joins the one in progress): true when it completed, false when a reader or writer kept it from finishing. */
  run(onDone?: (ms: number) => void): Promise<boolean> {
    this.#inflight ??= new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        this.worker.off('message', onMessage);
        this.worker.off('exit', onExit);
        this.#inflight = null;
        resolve(ok);
      };
      const onMessage = (m: { busy: number; ms: number }) => {
        onDone?.(m.ms);
        done(m.busy === 0);
      };
      const onExit = () => done(false);
      this.worker.on('message', onMessage);
      this.worker.once('exit', onExit);
      this.worker.postMessage(0);
    });
    return this.#inflight;
  }

  async close(): Promise<void> {
    await this.#inflight;
    await this.worker.terminate();
  }
}
