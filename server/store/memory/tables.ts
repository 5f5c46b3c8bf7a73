import type {
  ApiKeyRecord,
  CardRecord,
  ChargeRecord,
  CustomFormRecord,
  CvcSessionRecord,
  CvvStatusRecord,
  EventRecord,
  EventWrite,
  HistoryRecord,
  IdempotencyRecord,
  MerchantRecord,
  Mode,
  OutboxRecord,
  ReplayRecord,
  SessionRecord,
  SigningKeyRecord,
  TdsRecord,
  WebhookEndpointRecord,
} from '../store.js';
import { isEventRecord, isHistoryRecord } from '../store.js';

/** A merchant's own row: its settings live per mode (`settings`). */
export interface MerchantRow {
  id: string;
  name: string;
  createdAt: number;
}
export type SettingsRow = Omit<MerchantRecord, 'id' | 'name' | 'createdAt' | 'mode'>;
/** A charge and, for a charge that sends a CVV, the card number it counts against (a column of its own in SQL). */
export interface ChargeRow {
  rec: ChargeRecord;
  cvvFingerprint: string | null;
}
export interface IdempotencyRow extends IdempotencyRecord {
  createdAt: number;
  expiresAt: number;
}

/**
 * The in-memory store's tables: one Map each, keyed as the SQL primary key.
 * Rows are never changed in place, only replaced (`Map.set` of a new object),
 * so a transaction can be undone by putting the Maps back (see `tx`).
 */
export class Tables {
  meta = new Map<string, string>();
  leases = new Map<string, { holder: string; until: number }>();
  merchants = new Map<string, MerchantRow>();
  /** By `${merchantId}|${mode}`. */
  settings = new Map<string, SettingsRow>();
  apiKeys = new Map<string, ApiKeyRecord>();
  signingKeys = new Map<string, SigningKeyRecord>();
  cards = new Map<string, CardRecord>();
  /** By `${merchantId}|${fingerprint}`. */
  cvvStatus = new Map<string, CvvStatusRecord>();
  cvc = new Map<string, Omit<CvcSessionRecord, 'keyShare'>>();
  keyShares = new Map<string, { share: Buffer; createdAt: number }>();
  sessions = new Map<string, SessionRecord>();
  tds = new Map<string, TdsRecord>();
  charges = new Map<string, ChargeRow>();
  endpoints = new Map<string, WebhookEndpointRecord>();
  events = new Map<string, EventRecord>();
  history = new Map<string, HistoryRecord>();
  outbox = new Map<string, OutboxRecord>();
  forms = new Map<string, CustomFormRecord>();
  /** By `${merchantId}|${endpoint}|${key}`. */
  idempotency = new Map<string, IdempotencyRow>();

  /**
   * Runs `fn` as one transaction: JavaScript runs it without interleaving (it
   * is synchronous), and a throw (a refusal, a duplicate key) puts every
   * table back as it was.
   */
  tx<T>(fn: () => T): T {
    const tables = this as unknown as Record<string, unknown>;
    const saved = Object.entries(tables).flatMap(([k, m]) => (m instanceof Map ? [[k, new Map(m)] as const] : []));
    try {
      return fn();
    } catch (e) {
      for (const [k, m] of saved) tables[k] = m;
      if (e instanceof Refusal) return e.value as T;
      throw e;
    }
  }

  /** Inserts a row under a key that must be new (a primary key): throws, as a database would, when it is taken. */
  insert<K, V>(table: Map<K, V>, key: K, row: V, what: string): void {
    if (table.has(key)) throw new Error(`duplicate key: ${what}`);
    table.set(key, row);
  }

  /** Deletes the CVC sessions matching `pick`, with their key shares; how many. */
  dropCvc(pick: (c: Omit<CvcSessionRecord, 'keyShare'>) => boolean): number {
    let n = 0;
    for (const [id, c] of this.cvc) {
      if (!pick(c)) continue;
      this.cvc.delete(id);
      this.keyShares.delete(id);
      n++;
    }
    return n;
  }

  /** Writes events: their records and their outbox rows (ids are unique). */
  writeEvents(rows: EventWrite[]): void {
    for (const w of rows) {
      if (isEventRecord(w)) this.insert(this.events, w.id, copy(w), `event ${w.id}`);
      else if (isHistoryRecord(w)) this.insert(this.history, w.id, copy(w), `history ${w.id}`);
      else this.insert(this.outbox, w.id, copy(w), `outbox ${w.id}`);
    }
  }
}

/** Thrown inside `Tables.tx`: undo everything and return `value`. */
export class Refusal<T> {
  constructor(readonly value: T) {}
}

/** A deep copy (Buffers stay Buffers): nothing a caller holds is the stored row. */
export function copy<T>(v: T): T {
  if (Buffer.isBuffer(v)) return Buffer.from(v) as T;
  if (v instanceof Uint8Array) return Buffer.from(v) as T;
  if (Array.isArray(v)) return v.map((x: unknown) => copy(x)) as T;
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = copy(x);
    return o as T;
  }
  return v;
}

/** Newest first by creation time, then id (binary order, as SQLite compares text). */
export const newestFirst = (a: { createdAt: number; id: string }, b: { createdAt: number; id: string }): number =>
  b.createdAt - a.createdAt || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/**
 * Keyset pagination, newest first: at most `limit` of `rows`, those before
 * `cursor` when one is given (the row `after` named, looked up among the
 * merchant's, mode's or endpoint's own rows: `null`, not found, is an empty
 * page).
 */
export function page<T extends { createdAt: number; id: string }>(rows: T[], limit: number, cursor?: { createdAt: number; id: string } | null): T[] {
  if (cursor === null) return [];
  const c = cursor;
  const before = c ? rows.filter((r) => r.createdAt < c.createdAt || (r.createdAt === c.createdAt && r.id < c.id)) : rows;
  return before.sort(newestFirst).slice(0, limit);
}

/** The newest of `rows` (ties: the last inserted), or null. */
export function newest<T extends { createdAt: number }>(rows: Iterable<T>): T | null {
  let best: T | null = null;
  for (const r of rows) if (!best || r.createdAt >= best.createdAt) best = r;
  return best;
}

/** A replay record as SQL reads it back: one without a jti or hash is none. */
export const replayOf = (r: ReplayRecord | null): ReplayRecord | null => (r && r.jti && r.hash ? copy(r) : null);

export const modeKey = (merchantId: string, mode: Mode): string => `${merchantId}|${mode}`;
