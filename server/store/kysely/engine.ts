import { type Compilable, type CompiledQuery, Kysely, Migrator, PostgresDialect, type SelectQueryBuilder, sql, SqliteDialect } from 'kysely';
import type BetterSqlite3 from 'better-sqlite3';
import { chmodSync, closeSync, fdatasync, fstatSync, openSync } from 'node:fs';
import { migrationProvider, type Engine } from '../migrations.js';
import { Checkpointer } from './checkpointer.js';
import type { Sealed } from '../../types/shared.js';
import type { Database } from '../schema.js';
import type { Mode } from '../store.js';

/** A sealed value in one column: its key version in the first byte. */
export const pack = (s: Sealed): Buffer => Buffer.concat([Buffer.from([s.keyVersion]), s.blob]);
export const unpack = (b: Buffer | Uint8Array): Sealed => {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b);
  return { keyVersion: buf[0]!, blob: buf.subarray(1) };
};

/** What a statement of a transaction unit gives back to it. */
export interface StepResult {
  rows: any[];
  affected: number;
}
/**
 * A statement compiled once (see KyselyStore.#compile): `build` is called the
 * first time only, with a marker in place of each of `args`, and its SQL kept
 * under `key`; later runs only bind `args`. Whatever changes the SQL (not just
 * a value) belongs in `key`.
 */
export interface Prepared {
  readonly key: string;
  readonly args: Record<string, unknown>;
  readonly build: (a: any) => Compilable<unknown>;
}
export const prepared = <A extends Record<string, unknown>>(key: string, args: A, build: (a: A) => Compilable<unknown>): Prepared => ({ key, args, build });
/**
 * A statement that must give back exactly one row (a SELECT, or a write with
 * RETURNING); otherwise the whole unit is undone and returns `refuse`. The
 * check runs where the statement runs: on SQLite in the synchronous
 * transaction, on PostgreSQL in the statement itself (wrapped so that it
 * raises cvvops_refuse's error, migration 0008), so the statements sent after
 * it in the same round trip fail and the COMMIT that follows them rolls back.
 */
export interface Guarded {
  readonly step: Prepared | Compilable<unknown>;
  readonly refuse: unknown;
}
export const guarded = (step: Prepared | Compilable<unknown>, refuse: unknown): Guarded => ({ step, refuse });
export type Step = Compilable<unknown> | Prepared | Guarded;
/**
 * Statements sent together: on PostgreSQL in one round trip (pipelined; the
 * BEGIN rides with the unit's first batch). `final`: the unit ends after it
 * (it may read the results, but not refuse: its refusals are guards), so the
 * COMMIT rides along too, and a unit of one final batch is one round trip.
 */
export class Batch {
  constructor(
    readonly steps: readonly Step[],
    readonly final: boolean,
  ) {}
}
/**
 * A transaction unit: yields the statements it runs (Kysely builders, or
 * `prepared` ones on the hot paths) one by one or in batches (`send`), gets
 * their results back.
 */
export type Unit<T> = Generator<Compilable<unknown> | Prepared | Batch, T, any>;
/** Inside a unit: runs `steps` together (see Batch) and gives back their results, in order. */
export function* send(steps: readonly Step[], opts: { final: boolean }): Generator<Batch, StepResult[], any> {
  return (yield new Batch(steps, opts.final)) as StepResult[];
}
export const isGuarded = (s: Step): s is Guarded => 'refuse' in s;
/** Thrown inside a unit: undo everything it wrote and return `value`. */
export class Rollback<T> {
  constructor(readonly value: T) {}
}
/** The SQLSTATE cvvops_refuse raises (migration 0008): a guard found its statement gave no row. */
export const REFUSED = 'CV001';

/** What a guarded write gives back: one row with a constant, so the guard can count it. */
export const ONE = sql<number>`1`.as('one');

/**
 * 'pending' as a literal in the SQL, not a parameter: the partial index on
 * pending charges (charges_cvv_in_flight) makes SQLite re-prepare, on every
 * run, a statement that compares `status` with a bound value.
 */
export const PENDING = sql.lit('pending');
/** 'completed' as a literal, for the partial index on completed sessions' replay records (as PENDING). */
export const COMPLETED = sql.lit('completed');

export interface KyselyStoreOptions {
  /** SQLite `synchronous` for ordinary writes. */
  synchronous?: 'FULL' | 'NORMAL';
  /** Called after CVV rows were deleted (tests observe checkpoints). */
  onCheckpoint?: (ms: number) => void;
  /** The time, in ms since the epoch, for the store's own caches (the server's clock; default Date.now). */
  now?: () => number;
}

/**
 * The database under the store: the driver (better-sqlite3 or pg), the
 * compiled-statement cache, transaction units, and what SQLite and PostgreSQL
 * need after CVV rows are deleted. The aggregates (this folder) run their
 * statements through it.
 */
/**
 * Keyset pagination's condition: the rows after the cursor row `c` in
 * (created_at, id) order, going to `older` rows (newest-first lists) or
 * `newer` ones (oldest-first, a session's history).
 */
export function pastCursor(c: { created_at: number; id: string }, toward: 'older' | 'newer') {
  return toward === 'older'
    ? sql<boolean>`(created_at < ${c.created_at} OR (created_at = ${c.created_at} AND id < ${c.id}))`
    : sql<boolean>`(created_at > ${c.created_at} OR (created_at = ${c.created_at} AND id > ${c.id}))`;
}

export class KyselyEngine {
  readonly db: Kysely<Database>;
  readonly engine: Engine;
  readonly #sqlite: BetterSqlite3.Database | null;
  /** SQLite: prepared statements by SQL text (shared with Kysely's own calls). */
  readonly #prepare: ((text: string) => BetterSqlite3.Statement) | null;
  /** The pg pool (PostgreSQL only): shared with the rate limiter so limits hold across instances. */
  pgPool: unknown = null;
  #checkpointTimer: NodeJS.Timeout | null = null;
  readonly opts: KyselyStoreOptions;

  /** Statements run so far, however they were sent (tests report how many an operation runs). */
  readonly #statements: { n: number; trips: number };
  get statementsRun(): number {
    return this.#statements.n;
  }
  /**
   * Round trips to the database so far: on PostgreSQL each awaited exchange
   * (a transaction unit's batch, a statement), on SQLite each synchronous call.
   */
  get roundTrips(): number {
    return this.#statements.trips;
  }

  private constructor(
    db: Kysely<Database>,
    engine: Engine,
    sqliteDb: BetterSqlite3.Database | null,
    opts: KyselyStoreOptions,
    prepare: ((text: string) => BetterSqlite3.Statement) | null = null,
    statements = { n: 0, trips: 0 },
  ) {
    this.#statements = statements;
    this.db = db;
    this.engine = engine;
    this.#sqlite = sqliteDb;
    this.#prepare = prepare;
    this.opts = opts;
  }

  static async open(url: string, opts: KyselyStoreOptions = {}): Promise<KyselyEngine> {
    if (url.startsWith('sqlite:')) {
      const path = url.slice('sqlite:'.length);
      const { default: Sqlite } = await import('better-sqlite3');
      if (path !== ':memory:') {
        const { mkdirSync } = await import('node:fs');
        const path_ = await import('node:path');
        mkdirSync(path_.dirname(path), { recursive: true, mode: 0o700 });
        KyselyEngine.#ownerOnly(path, true);
      }
      const raw = new Sqlite(path);
      raw.pragma('journal_mode = WAL');
      raw.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
      raw.pragma('secure_delete = ON');
      raw.pragma('foreign_keys = ON');
      raw.pragma('busy_timeout = 5000');
      // SQLite gives the -wal and -shm files the database file's mode; ones left by an older version are tightened too.
      if (path !== ':memory:') for (const f of [`${path}-wal`, `${path}-shm`]) KyselyEngine.#ownerOnly(f, false);
      // Kysely prepares every statement on every call; the same SQL text is reused here (a profile showed
      // prepare() at ~11 % of the server's time under load). Statements are never iterated, so sharing is safe.
      const statements = new Map<string, BetterSqlite3.Statement>();
      const database = {
        prepare(text: string) {
          let st = statements.get(text);
          if (!st) {
            st = raw.prepare(text);
            if (statements.size < 1000) statements.set(text, st);
          }
          return st;
        },
        close() {
          statements.clear();
          raw.close();
        },
      };
      const counter = { n: 0, trips: 0 };
      const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: database }), log: () => void (counter.n++, counter.trips++) });
      const engine = new KyselyEngine(db, 'sqlite', raw, opts, (text) => database.prepare(text), counter);
      if (path !== ':memory:') {
        engine.#checkpointer = Checkpointer.start(path);
        if (engine.#checkpointer) {
          // Checkpoints run in the worker, after CVV deletions and once a second: none inside a commit on this thread.
          raw.pragma('wal_autocheckpoint = 0');
          engine.#periodic = setInterval(() => engine.#checkpoint(), 1000);
          engine.#periodic.unref();
        }
      }
      return engine;
    }
    if (/^postgres(ql)?:\/\//.test(url)) {
      const pg = await import('pg');
      pg.default.types.setTypeParser(20, (v: string) => Number(v));
      // Pipeline mode: a transaction unit's statements are sent together, without waiting for each result (transaction).
      const pool = new pg.default.Pool({ connectionString: url, max: 10, pipeline: true });
      const counter = { n: 0, trips: 0 };
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log: () => void (counter.n++, counter.trips++) });
      const store = new KyselyEngine(db, 'postgres', null, opts, null, counter);
      store.pgPool = pool;
      return store;
    }
    throw new Error('unsupported DATABASE_URL');
  }

  /**
   * The database files hold card data (encrypted) and its metadata: readable
   * by their owner only (0600), whatever the umask. `create`: made so before
   * SQLite opens it, so it is never briefly world-readable.
   */
  static #ownerOnly(file: string, create: boolean): void {
    try {
      if (create) closeSync(openSync(file, 'a', 0o600));
      chmodSync(file, 0o600);
    } catch (e) {
      // Not there (a -wal before the first write), or not ours to change (a file another user owns): SQLite decides.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'EPERM') throw e;
    }
  }

  readonly #compiled = new Map<string, { query: CompiledQuery; slots: Array<string | { value: unknown }> }>();
  /**
   * Runs a hot-path query built by Kysely only once: the builder is called the
   * first time with a marker in place of each argument, the compiled SQL is
   * kept under `key`, and later calls only bind the arguments (on SQLite
   * straight to the prepared statement, synchronously; on PostgreSQL as a
   * named statement, prepared once per connection). A profile showed
   * Kysely's per-call building and compiling at ~9 % of the server's time.
   * `build` must pass every argument through as a value (no arithmetic or
   * branching on it): whatever changes the SQL belongs in `key`.
   */
  async exec<A extends Record<string, unknown>, R>(key: string, args: A, build: (a: A) => Compilable<R>): Promise<{ rows: R[]; affected: number }> {
    const { query, params } = this.#compile(key, args, build);
    if (this.#prepare || this.pgPool) this.#statements.n++;
    this.#statements.trips++;
    if (this.#prepare) {
      const st = this.#prepare(query.sql);
      if (st.reader) return { rows: st.all(params) as R[], affected: 0 };
      return { rows: [], affected: st.run(params).changes };
    }
    if (this.pgPool) {
      // A named statement: PostgreSQL parses and plans it once per connection instead of on every call.
      const r = await (this.pgPool as { query(q: { name: string; text: string; values: unknown[] }): Promise<{ rows: R[]; rowCount: number | null }> }).query({
        name: `cvvops:${key}`,
        text: query.sql,
        values: params,
      });
      return { rows: r.rows, affected: r.rowCount ?? 0 };
    }
    const r = await this.db.executeQuery<R>({ ...query, parameters: params });
    return { rows: r.rows, affected: Number(r.numAffectedRows ?? 0n) };
  }

  /** The SQL of the query `build` makes, compiled the first time `key` is seen, and `args` bound to it (see exec). */
  #compile<A extends Record<string, unknown>>(key: string, args: A, build: (a: A) => Compilable<unknown>): { query: CompiledQuery; params: unknown[] } {
    let c = this.#compiled.get(key);
    if (!c) {
      const marker = (k: string) => `\u0000cvvops-arg:${k}\u0000`;
      const markers = Object.fromEntries(Object.keys(args).map((k) => [k, marker(k)])) as A;
      const query = build(markers).compile();
      const byMarker = new Map(Object.keys(args).map((k) => [marker(k), k]));
      const slots = query.parameters.map((p) => (typeof p === 'string' && byMarker.has(p) ? byMarker.get(p)! : { value: p }));
      for (const k of Object.keys(args)) {
        if (!slots.includes(k)) throw new Error(`prepared query ${key}: argument ${k} is not a parameter`);
      }
      c = { query, slots };
      this.#compiled.set(key, c);
    }
    // An absent value is NULL (the SQL was built with a parameter in its place, never without the column).
    return { query: c.query, params: c.slots.map((s) => (typeof s === 'string' ? (args[s] ?? null) : s.value)) };
  }

  /**
   * A unit's statement as SQL and parameters, and the name it is prepared
   * under on PostgreSQL (prepared ones only). A guarded one, on PostgreSQL,
   * raises cvvops_refuse's error unless it gives back exactly one row (on
   * SQLite the unit checks the rows, see #runSqlite).
   */
  #bind(step: Step): { sql: string; params: unknown[]; name?: string } {
    if (isGuarded(step)) {
      const b = this.#bind(step.step);
      if (this.engine !== 'postgres') return b;
      return {
        sql: `WITH w AS (${b.sql}), g AS (SELECT cvvops_refuse(count(*) <> 1) AS refused FROM w) SELECT w.* FROM g LEFT JOIN w ON true`,
        params: b.params,
        ...(b.name ? { name: `${b.name}:guarded` } : {}),
      };
    }
    if ('build' in step) {
      const { query, params } = this.#compile(step.key, step.args, step.build);
      return { sql: query.sql, params, name: `cvvops:${step.key}` };
    }
    const c = step.compile();
    return { sql: c.sql, params: c.parameters as unknown[] };
  }

  async migrate(): Promise<void> {
    // PostgreSQL: Kysely's Migrator looks for its bookkeeping tables in every
    // schema unless told which one, so a `kysely_migration` table in another
    // schema (another app's, or another cvvops instance's) made it skip
    // creating its own and then fail. Pin it to the schema our tables go to.
    let migrationTableSchema: string | undefined;
    if (this.engine === 'postgres') {
      const { rows } = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(this.db);
      migrationTableSchema = rows[0]?.schema ?? undefined;
    }
    const migrator = new Migrator({ db: this.db, provider: migrationProvider(this.engine), migrationTableSchema });
    const { error } = await migrator.migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error('the migrations failed', { cause: error });
  }

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  async close(): Promise<void> {
    if (this.#periodic) clearInterval(this.#periodic);
    await this.#checkpointer?.close();
    this.#checkpointer = null;
    await this.#walSyncing?.catch(() => undefined);
    if (this.#walFd !== null) {
      closeSync(this.#walFd);
      this.#walFd = null;
    }
    if (this.#checkpointTimer) {
      clearTimeout(this.#checkpointTimer);
      this.#checkpointTimer = null;
      this.checkpointNow();
    }
    await this.db.destroy();
  }

  /**
   * After CVV rows are deleted (secure_delete zeroes them in the main file),
   * their earlier versions may still sit in the write-ahead log: checkpoint
   * it with TRUNCATE soon after (20 ms: deletions that come close together share one,
   * and the log it copies stays small, so the checkpoint holds the event loop briefly).
   */
  afterCvvDelete(): void {
    if (!this.#sqlite || this.#checkpointTimer) return;
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = null;
      this.#checkpoint();
    }, 20);
    this.#checkpointTimer.unref();
  }

  /** The worker thread that checkpoints the WAL (SQLite files), when it could be started. */
  #checkpointer: Checkpointer | null = null;
  #periodic: NodeJS.Timeout | null = null;
  /** A checkpoint: in the worker when there is one (retried as checkpointNow retries), else on this thread. */
  #checkpoint(): void {
    if (!this.#checkpointer) return this.checkpointNow();
    void this.#checkpointer.run(this.opts.onCheckpoint).then((done) => this.#retry(done));
  }

  /**
   * Background writers (the sweeper's purges, the webhook outbox) call this
   * before writing: while the worker's checkpoint holds the write lock they
   * wait here, asynchronously, rather than in SQLite's busy handler, which
   * would block the event loop.
   */
  async backgroundTurn(): Promise<void> {
    await this.#checkpointer?.inflight;
  }

  #checkpointRetries = 0;
  /** After a checkpoint: one that could not finish (a reader or writer held it) is retried shortly, up to 5 s. */
  #retry(done: boolean): void {
    if (done) {
      this.#checkpointRetries = 0;
    } else if (this.#checkpointRetries++ < 50 && !this.#checkpointTimer) {
      this.#checkpointTimer = setTimeout(() => {
        this.#checkpointTimer = null;
        this.#checkpoint();
      }, 100);
      this.#checkpointTimer.unref();
    }
  }

  /**
   * Runs the WAL checkpoint at once (SQLite); a no-op on PostgreSQL. With
   * several processes on one file (CVVOPS_WORKERS) another one may be reading:
   * a checkpoint that could not finish is retried shortly, up to 5 s.
   */
  checkpointNow(): void {
    if (!this.#sqlite || !this.#sqlite.open) return;
    const t0 = performance.now();
    let done = false;
    try {
      const [r] = this.#sqlite.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
      done = !r || r.busy === 0;
    } catch {
      done = false;
    }
    this.opts.onCheckpoint?.(performance.now() - t0);
    this.#retry(done);
  }

  /**
   * Money writes (charge intents and outcomes) are durable before the
   * processor is called and before the response is sent. PostgreSQL commits
   * synchronously by default. On SQLite (WAL) `synchronous=FULL` means: the
   * WAL is fsync'ed after the commit. We do exactly that, but in the thread
   * pool and shared: the write commits (at the connection's setting), then
   * its caller waits for an fdatasync of the WAL file that started after
   * the commit. Concurrent charges share one fdatasync (group commit), and
   * the event loop, and the write lock other processes wait for, are not
   * held during the disk flush (the profile showed FULL commits at ~10 % of
   * the server's time, all of it waiting on the disk).
   */
  async #durable(): Promise<void> {
    if (this.#walPath && this.opts.synchronous !== 'FULL') await this.#syncWal();
  }

  /** The SQLite WAL file (null for PostgreSQL and in-memory databases). */
  get #walPath(): string | null {
    if (!this.#sqlite || this.#sqlite.memory) return null;
    return `${this.#sqlite.name}-wal`;
  }

  #walFd: number | null = null;
  #walSyncing: Promise<void> | null = null;
  #walSyncNext: Promise<void> | null = null;
  /** How many WAL flushes this store made (tests observe that money writes wait for one). */
  walSyncs = 0;

  /** Resolves once everything committed before the call is on disk: a flush that starts now, or the next one if one is already running. */
  #syncWal(): Promise<void> {
    if (!this.#walSyncing) {
      this.#walSyncing = this.#flushWal().finally(() => {
        this.#walSyncing = null;
      });
      return this.#walSyncing;
    }
    // The running flush may have started before this caller's commit: wait for the one after it.
    this.#walSyncNext ??= this.#walSyncing.then(() => {
      this.#walSyncNext = null;
      return this.#syncWal();
    });
    return this.#walSyncNext;
  }

  async #flushWal(): Promise<void> {
    // The WAL stays the same file while this connection is open; reopened should it ever have been unlinked.
    if (this.#walFd !== null && fstatSync(this.#walFd).nlink === 0) {
      closeSync(this.#walFd);
      this.#walFd = null;
    }
    this.#walFd ??= openSync(this.#walPath!, 'r');
    const fd = this.#walFd;
    await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    this.walSyncs++;
  }

  /**
   * Runs `unit` as one transaction. The unit yields the statements it needs,
   * one by one or in batches, and gets their results back, so one body serves
   * both engines: on SQLite it runs synchronously inside BEGIN IMMEDIATE
   * (nothing else can interleave on the connection, and no await sits inside
   * the transaction); on PostgreSQL on one pooled client in pipeline mode, one
   * round trip per batch: the BEGIN goes with the first batch and the COMMIT
   * with the final one, so a unit of one final batch is one round trip. A
   * `Rollback` thrown by the unit, or a guard's refusal, undoes it and returns
   * its value. `durable`: a money write, on disk before this resolves (#durable).
   */
  async transaction<T>(unit: () => Unit<T>, opts: { durable?: boolean } = {}): Promise<T> {
    this.#statements.trips++;
    if (this.#sqlite) {
      const run = this.#sqlite.transaction(() => {
        const g = unit();
        let step = g.next();
        let ended = false;
        while (!step.done) {
          if (ended) throw new Error('a transaction unit went on after its final batch');
          const v = step.value;
          if (v instanceof Batch) {
            ended = v.final;
            step = g.next(v.steps.map((s) => this.#runSqlite(s)));
          } else step = g.next(this.#runSqlite(v));
        }
        return step.value;
      });
      let out: T;
      try {
        out = run.immediate();
      } catch (e) {
        if (e instanceof Rollback) return e.value as T;
        throw e;
      }
      if (opts.durable) await this.#durable();
      return out;
    }
    type Result = { rows: any[]; rowCount: number | null; command?: string };
    const pool = this.pgPool as { connect(): Promise<{ query(q: { name?: string; text: string; values?: unknown[] }): Promise<Result>; release(): void }> };
    const client = await pool.connect();
    // Sent at once, without waiting for the one before (pipeline mode); each result is awaited with its batch.
    const query = (text: string, values?: unknown[], name?: string): Promise<Result> => {
      const r = client.query(name ? { name, text, values } : { text, values });
      r.catch(() => undefined); // awaited below; a rejection before that is not unhandled
      return r;
    };
    let leading: Array<Promise<Result>> = [query('BEGIN')];
    let ended = false; // the COMMIT (or the ROLLBACK a failed statement turns it into) has run
    let refusal: Rollback<unknown> | null = null;
    try {
      const g = unit();
      let step = g.next();
      let first = true;
      while (!step.done) {
        if (ended) throw new Error('a transaction unit went on after its final batch');
        const v = step.value;
        const steps = v instanceof Batch ? v.steps : [v];
        const final = v instanceof Batch && v.final;
        // Every statement is bound before any is sent: nothing can fail half-sent in JavaScript.
        const bound = steps.map((s) => this.#bind(s));
        if (!first) this.#statements.trips++;
        first = false;
        const sent = [...leading, ...bound.map((b) => query(b.sql, b.params, b.name)), ...(final ? [query('COMMIT')] : [])];
        const settled = await Promise.allSettled(sent);
        this.#statements.n += steps.length;
        ended = final;
        const failed = settled.findIndex((x) => x.status === 'rejected');
        if (failed >= 0) {
          const err: unknown = (settled[failed] as PromiseRejectedResult).reason;
          const s = steps[failed - leading.length];
          if (s && isGuarded(s) && (err as { code?: unknown } | null)?.code === REFUSED) {
            const r = new Rollback(s.refuse);
            refusal = r;
            throw r;
          }
          throw err;
        }
        const results = settled.map((x) => (x as PromiseFulfilledResult<Result>).value);
        if (final && results.at(-1)?.command !== 'COMMIT') throw new Error(`the transaction ended with ${results.at(-1)?.command}, not COMMIT`);
        const mine = results.slice(leading.length, leading.length + steps.length).map((r) => ({ rows: r.rows, affected: r.rowCount ?? 0 }));
        leading = [];
        step = g.next(v instanceof Batch ? mine : mine[0]);
      }
      if (!ended) {
        this.#statements.trips++;
        await Promise.all([...leading, query('COMMIT')]);
        ended = true;
      }
      return step.value;
    } catch (e) {
      if (!ended) await query('ROLLBACK').catch(() => undefined);
      if (e instanceof Rollback) {
        // After its final batch a unit may read results, not refuse: its writes are committed.
        if (ended && e !== refusal) throw new Error('a transaction unit refused after its final batch');
        return e.value as T;
      }
      throw e;
    } finally {
      client.release();
    }
  }

  /** SQLite: one statement of a unit, run now; a guard's refusal undoes the unit (see Guarded). */
  #runSqlite(s: Step): StepResult {
    const { sql: text, params } = this.#bind(s);
    const st = this.#prepare!(text);
    this.#statements.n++;
    const r = st.reader ? { rows: st.all(params), affected: 0 } : { rows: [], affected: st.run(params).changes };
    if (isGuarded(s) && r.rows.length !== 1) throw new Rollback(s.refuse);
    return r;
  }

  /** PostgreSQL: the row read is locked until the transaction ends (SQLite's BEGIN IMMEDIATE already serializes writers). */
  locked<Q extends SelectQueryBuilder<Database, any, any>>(q: Q): Q {
    return (this.engine === 'postgres' ? q.forUpdate() : q) as Q;
  }

  /** Deletes the key shares of these CVC sessions (before their rows): what makes their ciphertext useless. */
  async dropKeys(ids: string[] | SelectQueryBuilder<Database, any, { id: string }>): Promise<void> {
    if (Array.isArray(ids) && ids.length === 0) return;
    const r = await this.db
      .deleteFrom('cvv_keys')
      .where('cvc_id', 'in', ids as never)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) > 0) this.afterKeyDelete();
  }

  #vacuumTimer: NodeJS.Timeout | null = null;
  /**
   * PostgreSQL keeps deleted rows until vacuum: the small, unlogged key-share
   * table is vacuumed right after deletions (batched within 50 ms), so a
   * destroyed CVV's share does not linger as a dead tuple. SQLite overwrites
   * deleted content itself (secure_delete) and checkpoints its WAL.
   */
  afterKeyDelete(): void {
    if (this.engine !== 'postgres' || this.#vacuumTimer) return;
    this.#vacuumTimer = setTimeout(() => {
      this.#vacuumTimer = null;
      void sql`VACUUM cvv_keys`.execute(this.db).then(
        () => this.opts.onCheckpoint?.(0),
        () => undefined,
      );
    }, 50);
    this.#vacuumTimer.unref();
  }

  /**
   * Keyset pagination, newest first (creation time, then id): the rows
   * before the one `after` names, or null when that row is not this
   * merchant's and mode's (the page is then empty).
   */
  async before(table: 'sessions' | 'events', merchantId: string, mode: Mode, after: string) {
    const c = await this.db
      .selectFrom(table)
      .select(['created_at', 'id'])
      .where('id', '=', after)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return c ? pastCursor(c, 'older') : null;
  }
}
