import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, fsyncSync, openSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import Sqlite from 'better-sqlite3';

/**
 * Rows written straight into a migrated SQLite file with better-sqlite3
 * (server stopped): through the HTTP API a million sessions would take hours.
 * The rows have the shapes, id formats and sizes the server itself writes
 * (measured on a real flow: a completed session keeps its ~1.6 KB sealed
 * replay record, a charge its ~1.6 KB sealed response). Sealed columns are
 * random bytes of the real length with the key-version byte first: nobody
 * decrypts them.
 */

const DAY = 24 * 3600 * 1000;
/** Test-mode CVC sessions live a year (server/domain/vault.ts TEST_CVC_LIFETIME_MS). */
const TEST_CVC_LIFETIME_MS = 365 * DAY;
/** A session lives 15 minutes, its 3DS transaction 10 (as the server writes them). */
const SESSION_LIFETIME_MS = 15 * 60 * 1000;
const TDS_LIFETIME_MS = 10 * 60 * 1000;
const KEY_VERSION = 1;

// ---- random material, cheaply ----------------------------------------------------

const BLOB_POOL = randomBytes(8 << 20);
/** `len` random bytes with the key version first (a view into a pool: SQLite copies bound blobs). */
function sealed(len: number): Buffer {
  const off = Math.floor(Math.random() * (BLOB_POOL.length - len));
  BLOB_POOL[off] = KEY_VERSION;
  return BLOB_POOL.subarray(off, off + len);
}

let idPool = Buffer.alloc(0);
let idOff = 0;
function rnd(bytes: number): Buffer {
  if (idOff + bytes > idPool.length) {
    idPool = randomBytes(1 << 20);
    idOff = 0;
  }
  const b = idPool.subarray(idOff, idOff + bytes);
  idOff += bytes;
  return b;
}
/** `prefix_` + 160 random bits in base64url (27 characters), as server/domain/ids.ts newId. */
const newId = (prefix: string) => `${prefix}_${rnd(20).toString('base64url')}`;
/** The base64url alphabet in byte (collation) order. */
const SORTED_B64 = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz';
/**
 * An id of the same format whose first four characters follow `at` (0 ≤ at < 1):
 * ids handed out in row order then also ascend, so the primary-key indexes
 * are appended to instead of written all over (with random ids a million
 * sessions took ~68 s to seed instead of ~46 s here). Rows the server adds
 * later have random ids, as always.
 */
function orderedId(prefix: string, at: number): string {
  let c = Math.floor(at * 64 ** 4);
  let head = '';
  for (let i = 0; i < 4; i++, c = Math.floor(c / 64)) head = SORTED_B64[c % 64]! + head;
  return `${prefix}_${head}${rnd(20).toString('base64url').slice(4)}`;
}
const b64 = (bytes: number) => rnd(bytes).toString('base64url');
const hex = (bytes: number) => rnd(bytes).toString('hex');
const int = (n: number) => Math.floor(Math.random() * n);
const between = (a: number, b: number) => a + int(b - a + 1);
const digits = (n: number) => String(int(10 ** n)).padStart(n, '0');
const pick = <T>(xs: readonly T[]) => xs[int(xs.length)]!;

// ---- the file ---------------------------------------------------------------------

export interface SeedReport {
  seconds: number;
  /** Of `seconds`: the fsync of the file at the end, so no write-back of the seed competes with the measurement. */
  flushSeconds: number;
  rows: Record<string, number>;
  fileBytes: number;
}

/** Secondary indexes (server/store/migrations.ts) keyed by a random value first: a card token, a fingerprint, an idempotency key. */
const REBUILT_INDEXES = ['charges_idem', 'cvc_sessions_card', 'cvc_sessions_card_level', 'cards_merchant_fp'];

/**
 * Opens the migrated file for bulk loading: the rollback journal in memory
 * instead of the WAL (every page would otherwise be written twice), no syncs
 * (the file is thrown away if this fails), then puts WAL back as the server
 * left it and flushes the file to disk.
 */
function bulkLoad(file: string, load: (txn: Txn, rows: Record<string, number>) => void): SeedReport {
  const t0 = performance.now();
  const db = new Sqlite(file);
  const rows: Record<string, number> = {};
  try {
    db.pragma('journal_mode = MEMORY');
    db.pragma('synchronous = OFF');
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('cache_size = -262144');
    db.pragma('temp_store = MEMORY');
    db.pragma('foreign_keys = OFF');
    // Indexes on random values are built once at the end (a sort) instead of row by row (writes all over
    // the index); the others grow at their end as rows are added in time order, cheaper than a rebuild.
    const indexes = (
      db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all() as Array<{ name: string; sql: string }>
    ).filter((i) => REBUILT_INDEXES.includes(i.name));
    for (const i of indexes) db.exec(`DROP INDEX "${i.name}"`);
    const txn = new Txn(db);
    load(txn, rows);
    txn.end();
    for (const i of indexes) db.exec(i.sql);
    db.pragma('journal_mode = WAL');
  } finally {
    db.close();
  }
  const t1 = performance.now();
  const fd = openSync(file, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const t2 = performance.now();
  return { seconds: (t2 - t0) / 1000, flushSeconds: (t2 - t1) / 1000, rows, fileBytes: statSync(file).size };
}

/** One transaction for every table, committed every `COMMIT_EVERY` rows in all (the cache holds what one dirties). */
const COMMIT_EVERY = 50_000;
class Txn {
  #n = 0;
  constructor(readonly db: Sqlite.Database) {}
  wrote(rows: number): void {
    this.#n += rows;
    if (this.#n >= COMMIT_EVERY) this.end();
  }
  begin(): void {
    if (!this.db.inTransaction) this.db.exec('BEGIN');
  }
  end(): void {
    this.#n = 0;
    if (this.db.inTransaction) this.db.exec('COMMIT');
  }
}

/** Inserts through prepared statements of `ROWS_PER_STATEMENT` rows each (fewer calls into SQLite). */
const ROWS_PER_STATEMENT = 16;
class Inserter {
  readonly #one: Sqlite.Statement;
  readonly #many: Sqlite.Statement;
  readonly #buf: unknown[] = [];
  readonly #width: number;
  constructor(
    private readonly txn: Txn,
    readonly table: string,
    columns: readonly string[],
    private readonly counts: Record<string, number>,
  ) {
    const row = `(${columns.map(() => '?').join(', ')})`;
    const head = `INSERT INTO ${table} (${columns.join(', ')}) VALUES `;
    this.#one = txn.db.prepare(head + row);
    this.#many = txn.db.prepare(head + Array.from({ length: ROWS_PER_STATEMENT }, () => row).join(', '));
    this.#width = columns.length;
    counts[table] ??= 0;
  }
  add(...values: unknown[]): void {
    if (values.length !== this.#width) throw new Error(`${this.table}: ${values.length} values for ${this.#width} columns`);
    for (const v of values) this.#buf.push(v);
    if (this.#buf.length === this.#width * ROWS_PER_STATEMENT) this.#flush();
  }
  #flush(): void {
    this.txn.begin();
    const rows = this.#buf.length / this.#width;
    if (rows === ROWS_PER_STATEMENT) this.#many.run(this.#buf);
    else for (let i = 0; i < rows; i++) this.#one.run(this.#buf.slice(i * this.#width, (i + 1) * this.#width));
    this.#buf.length = 0;
    this.counts[this.table]! += rows;
    this.txn.wrote(rows);
  }
  /** Writes what is buffered. */
  end(): void {
    if (this.#buf.length) this.#flush();
  }
}

const COLUMNS = {
  merchants: [
    'id',
    'name',
    'allowed_origins',
    'allowed_proxy_targets',
    'processor',
    'cvv_block_threshold',
    'cvc_session_ttl_seconds',
    'created_at',
    'updated_at',
  ],
  cards: [
    'token',
    'merchant_id',
    'mode',
    'brand',
    'last4',
    'bin',
    'exp_month',
    'exp_year',
    'fingerprint',
    'number_sealed',
    'holder_sealed',
    'key_version',
    'created_at',
  ],
  cvv_status: ['merchant_id', 'fingerprint', 'failed_attempts', 'blocked', 'updated_at'],
  sessions: [
    'id',
    'merchant_id',
    'mode',
    'card_token',
    'operations',
    'amount_value',
    'amount_currency',
    'reference',
    'require_3ds',
    'require_cvv',
    'max_attempts',
    'cvv_retention',
    'form',
    'return_url',
    'metadata',
    'status',
    'jti',
    'seq',
    'token_hash',
    'att_collect',
    'att_threeds',
    'att_charge',
    'results',
    'replay_jti',
    'replay_hash',
    'replay_sealed',
    'replay_at',
    'expires_at',
    'created_at',
    'updated_at',
  ],
  cvc_sessions: ['id', 'merchant_id', 'mode', 'card_token', 'session_id', 'sealed', 'key_version', 'retention', 'expires_at', 'first_used_at', 'created_at'],
  cvv_keys: ['cvc_id', 'share', 'created_at'],
  tds_transactions: [
    'id',
    'merchant_id',
    'session_id',
    'mode',
    'status',
    'ds_transaction_id',
    'version',
    'result_status',
    'eci',
    'cavv_sealed',
    'created_at',
    'expires_at',
    'completed_at',
  ],
  charges: [
    'id',
    'merchant_id',
    'session_id',
    'mode',
    'idempotency_key',
    'request_hash',
    'provider_key',
    'processor',
    'amount_value',
    'currency',
    'status',
    'authorization_code',
    'decline_code',
    'cvv_result',
    'avs_result',
    'network_transaction_id',
    'response_sealed',
    'created_at',
    'updated_at',
  ],
  webhook_outbox: [
    'id',
    'event_id',
    'endpoint_id',
    'merchant_id',
    'body',
    'status',
    'attempts',
    'next_attempt_at',
    'locked_until',
    'last_status',
    'created_at',
    'delivered_at',
  ],
} as const;

type Table = keyof typeof COLUMNS;
const inserter = (txn: Txn, t: Table, rows: Record<string, number>) => new Inserter(txn, t, COLUMNS[t], rows);

interface Card {
  token: string;
  merchantId: string;
  mode: 'test' | 'live';
  createdAt: number;
}

const BRANDS = [
  { brand: 'visa', bin: () => `4${digits(5)}`, len: 16, weight: 55 },
  { brand: 'mastercard', bin: () => `5${between(1, 5)}${digits(4)}`, len: 16, weight: 35 },
  { brand: 'amex', bin: () => `3${pick(['4', '7'])}${digits(4)}`, len: 15, weight: 10 },
];
function brandOf(): (typeof BRANDS)[number] {
  let r = int(100);
  for (const b of BRANDS) if ((r -= b.weight) < 0) return b;
  return BRANDS[0]!;
}

/** Extra merchants beside the benchmark's own: other shops of the same installation. */
function insertMerchants(txn: Txn, rows: Record<string, number>, n: number, now: number): string[] {
  const ins = inserter(txn, 'merchants', rows);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = newId('mer');
    const created = now - between(200, 700) * DAY;
    ins.add(
      id,
      `Shop ${i + 1}`,
      JSON.stringify([`https://shop${i + 1}.example`]),
      JSON.stringify([`https://psp${i + 1}.example/v1/`]),
      '{"type":"simulator"}',
      3,
      90,
      created,
      created,
    );
    ids.push(id);
  }
  ins.end();
  return ids;
}

/**
 * `count` cards: the benchmark's merchant holds `benchShare` of them, all in
 * test mode (it is benchmarked with its test key); the other merchants'
 * cards are 90 % live. Created 180 to 400 days ago, before every seeded
 * session. A card-level test CVC session (POST /Cards with a CVV) for a fifth
 * of the test cards, when it has not expired yet (older ones would have been
 * swept).
 */
function insertCards(
  txn: Txn,
  rows: Record<string, number>,
  o: { count: number; bench: string; others: string[]; benchShare: number; now: number; mode?: 'live' },
): Card[] {
  const cards: Card[] = [];
  const ins = inserter(txn, 'cards', rows);
  const cvc = inserter(txn, 'cvc_sessions', rows);
  const keys = inserter(txn, 'cvv_keys', rows);
  const status = inserter(txn, 'cvv_status', rows);
  for (let i = 0; i < o.count; i++) {
    const bench = Math.random() < o.benchShare || o.others.length === 0;
    const merchantId = bench ? o.bench : pick(o.others);
    const mode = o.mode ?? (bench || Math.random() < 0.1 ? 'test' : 'live');
    const b = brandOf();
    const token = orderedId('tok', i / o.count);
    const createdAt = o.now - between(180 * DAY, 400 * DAY);
    const holder = Math.random() < 0.9 ? sealed(1 + 12 + between(8, 24) + 16) : null;
    const fingerprint = hex(32);
    ins.add(
      token,
      merchantId,
      mode,
      b.brand,
      digits(4),
      b.bin(),
      between(1, 12),
      new Date(o.now).getUTCFullYear() + int(6),
      fingerprint,
      sealed(1 + 12 + b.len + 16),
      holder,
      KEY_VERSION,
      createdAt,
    );
    cards.push({ token, merchantId, mode, createdAt });
    if (mode === 'test' && Math.random() < 0.2 && createdAt + TEST_CVC_LIFETIME_MS > o.now + DAY) {
      const id = orderedId('cvc', i / o.count);
      cvc.add(
        id,
        merchantId,
        mode,
        token,
        null,
        sealed(1 + 12 + (b.brand === 'amex' ? 4 : 3) + 16),
        KEY_VERSION,
        'reusable',
        createdAt + TEST_CVC_LIFETIME_MS,
        null,
        createdAt,
      );
      keys.add(id, rnd(32), createdAt);
    }
    // A few cards with failed CVV attempts (below the block threshold, or blocked).
    if (Math.random() < 0.02) status.add(merchantId, fingerprint, between(1, 3), Math.random() < 0.2 ? 1 : 0, createdAt + between(1, 100) * DAY);
  }
  for (const i of [ins, cvc, keys, status]) i.end();
  return cards;
}

const OPS = [
  { ops: ['collectCvv', 'threeDS', 'charge'], weight: 70 },
  { ops: ['collectCvv', 'charge'], weight: 20 },
  { ops: ['collectCvv'], weight: 10 },
] as const;
function opsOf(): readonly string[] {
  let r = int(100);
  for (const o of OPS) if ((r -= o.weight) < 0) return o.ops;
  return OPS[0].ops;
}

/**
 * `count` sessions of the last `days` days, in time order (as they would
 * have been written), and what came with them: 85 % completed (with their
 * 3DS transaction, charge, sealed replay record, and in test mode the CVC
 * session that lives a year and its key share), 12 % expired after part of
 * the flow, 3 % canceled. Expired and canceled sessions lost their CVC
 * sessions and replay records, as the sweeper and cancel leave them.
 */
function insertSessions(txn: Txn, rows: Record<string, number>, o: { count: number; cards: Card[]; days: number; now: number }): void {
  const sess = inserter(txn, 'sessions', rows);
  const cvc = inserter(txn, 'cvc_sessions', rows);
  const keys = inserter(txn, 'cvv_keys', rows);
  const tds = inserter(txn, 'tds_transactions', rows);
  const charges = inserter(txn, 'charges', rows);
  const start = o.now - o.days * DAY;
  // The last hour stays empty: nothing seeded is still active or due for the sweeper.
  const step = (o.days * DAY - 3600_000) / o.count;
  for (let i = 0; i < o.count; i++) {
    const card = o.cards[int(o.cards.length)]!;
    const created = Math.floor(start + i * step + Math.random() * step);
    const expires = Math.floor(created / 1000) * 1000 + SESSION_LIFETIME_MS;
    const ops = opsOf();
    const r = Math.random();
    const status = r < 0.85 ? 'completed' : r < 0.97 ? 'expired' : 'canceled';
    // How far the shopper got: all the way, or part of it.
    const done = status === 'completed' ? ops.length : int(ops.length);
    const has = (op: string) => ops.indexOf(op) !== -1 && ops.indexOf(op) < done;
    const at0 = i / o.count;
    const id = orderedId('cvo', at0);
    const amount = ops.includes('charge') ? between(100, 50_000) : null;
    const currency = amount === null ? null : pick(['EUR', 'EUR', 'EUR', 'USD', 'GBP']);
    const live = card.mode === 'live';
    const results: Record<string, unknown> = {};
    let at = created + between(5_000, 60_000);
    let tdsId: string | null = null;
    if (has('collectCvv')) {
      results.collectCvv = { status: 'succeeded', at: Math.floor(at / 1000) };
      if (card.mode === 'test' && status === 'completed') {
        const cvcId = orderedId('cvc', at0);
        cvc.add(cvcId, card.merchantId, card.mode, card.token, id, sealed(32), KEY_VERSION, 'reusable', at + TEST_CVC_LIFETIME_MS, null, at);
        keys.add(cvcId, rnd(32), at);
      }
    }
    if (has('threeDS')) {
      at += between(1_000, 30_000);
      tdsId = orderedId('tds', at0);
      const y = Math.random() < 0.95;
      results.threeDS = { status: y ? 'Y' : 'A', eci: y ? '05' : '06', transactionId: tdsId };
      tds.add(
        tdsId,
        card.merchantId,
        id,
        card.mode,
        'completed',
        randomUUID(),
        '2.2.0',
        y ? 'Y' : 'A',
        y ? '05' : '06',
        sealed(57),
        at - 500,
        at - 500 + TDS_LIFETIME_MS,
        at,
      );
    }
    if (has('charge')) {
      at += between(500, 5_000);
      const chargeId = orderedId('ch', at0);
      const auth = digits(6);
      results.charge = { status: 'approved', chargeId, amount: { value: amount, currency }, authorizationCode: auth, cvvResult: 'M', declineCode: null };
      charges.add(
        chargeId,
        card.merchantId,
        id,
        card.mode,
        randomUUID(),
        b64(32),
        `cvvops_${hex(20)}`,
        live ? 'http' : 'simulator',
        amount,
        currency,
        'approved',
        auth,
        null,
        'M',
        'U',
        hex(8).slice(0, 15),
        sealed(between(1_450, 1_700)),
        at - 300,
        at,
      );
    }
    const updated = status === 'expired' ? expires + between(0, 1_500) : status === 'canceled' ? at + between(1_000, 60_000) : at;
    const replay = status === 'completed';
    const n = Object.keys(results).length;
    sess.add(
      id,
      card.merchantId,
      card.mode,
      card.token,
      JSON.stringify(ops),
      amount,
      currency,
      `order-${digits(8)}`,
      ops.includes('threeDS') ? 1 : 0,
      1,
      3,
      'single_use',
      'hosted',
      null,
      Math.random() < 0.2 ? JSON.stringify({ cart: digits(6), channel: 'web' }) : null,
      status,
      b64(16),
      n,
      b64(32),
      has('collectCvv') ? 1 : 0,
      has('threeDS') ? 1 : 0,
      has('charge') ? 1 : 0,
      JSON.stringify(results),
      replay ? b64(16) : null,
      replay ? b64(32) : null,
      replay ? sealed(between(1_550, 1_700)) : null,
      replay ? at : null,
      expires,
      created,
      updated,
    );
  }
  for (const i of [sess, cvc, keys, tds, charges]) i.end();
}

export interface HistoryPlan {
  sessions: number;
  cards: number;
  /** Merchants beside the benchmark's own. */
  otherMerchants: number;
  /** Share of the cards (and so of the sessions) that are the benchmark merchant's, in test mode. */
  benchShare: number;
  /** Sessions spread over this many days before now. */
  days: number;
}

/** A history of past activity (growth): merchants, cards, sessions and everything a session leaves behind. */
export function seedHistory(file: string, benchMerchant: string, plan: HistoryPlan): SeedReport {
  return bulkLoad(file, (txn, rows) => {
    const now = Date.now();
    const others = insertMerchants(txn, rows, plan.otherMerchants, now);
    const cards = insertCards(txn, rows, { count: plan.cards, bench: benchMerchant, others, benchShare: plan.benchShare, now });
    insertSessions(txn, rows, { count: plan.sessions, cards, days: plan.days, now });
  });
}

export interface BacklogPlan {
  /** Live CVC sessions (with their key shares) that expired while the server was down. */
  expiredCvcSessions: number;
  /** Test-mode sessions still `active` past their expiry, each with its CVC session (the sweeper expires them and emits `session.expired`). */
  expiredActiveSessions: number;
  /** Pending webhook deliveries (`charge.succeeded`), due now, to `endpointId`. */
  outbox: number;
  endpointId: string;
}

/**
 * Work for the sweeper and the outbox, as a server finds it after being down
 * for a while: the benchmark merchant's live CVC sessions past their lifetime
 * (90 s: live CVC sessions are the ones that expire in minutes), test-mode
 * sessions abandoned after collectCvv and left active past their expiry, and
 * events waiting to be delivered to its test-mode webhook endpoint.
 */
export function seedBacklog(file: string, merchantId: string, plan: BacklogPlan): SeedReport {
  return bulkLoad(file, (txn, rows) => {
    const now = Date.now();
    const live = insertCards(txn, rows, { count: 1_000, bench: merchantId, others: [], benchShare: 1, now, mode: 'live' });
    const test = insertCards(txn, rows, { count: 1_000, bench: merchantId, others: [], benchShare: 1, now });
    const cvc = inserter(txn, 'cvc_sessions', rows);
    const keys = inserter(txn, 'cvv_keys', rows);
    const sess = inserter(txn, 'sessions', rows);
    const out = inserter(txn, 'webhook_outbox', rows);
    // Expired within the last half hour.
    for (let i = 0; i < plan.expiredCvcSessions; i++) {
      const card = pick(live);
      const expires = now - between(1_000, 1_800_000);
      const id = newId('cvc');
      cvc.add(id, merchantId, 'live', card.token, null, sealed(32), KEY_VERSION, 'single_use', expires, null, expires - 90_000);
      keys.add(id, rnd(32), expires - 90_000);
    }
    for (let i = 0; i < plan.expiredActiveSessions; i++) {
      const card = pick(test);
      const expires = Math.floor((now - between(1_000, 1_800_000)) / 1000) * 1000;
      const created = expires - SESSION_LIFETIME_MS + between(0, 999);
      const id = newId('cvo');
      const cvcId = newId('cvc');
      const at = created + between(5_000, 60_000);
      cvc.add(cvcId, merchantId, 'test', card.token, id, sealed(32), KEY_VERSION, 'reusable', at + TEST_CVC_LIFETIME_MS, null, at);
      keys.add(cvcId, rnd(32), at);
      sess.add(
        id,
        merchantId,
        'test',
        card.token,
        '["collectCvv","threeDS","charge"]',
        1999,
        'EUR',
        `order-${digits(8)}`,
        1,
        1,
        3,
        'single_use',
        'hosted',
        null,
        null,
        'active',
        b64(16),
        1,
        b64(32),
        1,
        0,
        0,
        JSON.stringify({ collectCvv: { status: 'succeeded', at: Math.floor(at / 1000) } }),
        b64(16),
        b64(32),
        sealed(between(1_100, 1_300)),
        at,
        expires,
        created,
        at,
      );
    }
    for (let i = 0; i < plan.outbox; i++) {
      const eventId = newId('evt');
      const created = now - between(1_000, 600_000);
      const body = JSON.stringify({
        id: eventId,
        type: 'charge.succeeded',
        created: Math.floor(created / 1000),
        mode: 'test',
        data: {
          session: newId('cvo'),
          chargeId: newId('ch'),
          status: 'approved',
          amount: { value: between(100, 50_000), currency: 'EUR' },
          declineCode: null,
          cvvResult: 'M',
        },
      });
      out.add(`${eventId}.${plan.endpointId}`, eventId, plan.endpointId, merchantId, body, 'pending', 0, created, 0, null, created, null);
    }
    for (const i of [cvc, keys, sess, out]) i.end();
  });
}
