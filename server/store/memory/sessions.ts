import type { CardRecord, EventWrite, HistoryRecord, Mode, OperationContextRecord, SessionRecord, SessionStore, TdsRecord } from '../store.js';
import { usableCvc } from './cards.js';
import { copy, page, Refusal, replayOf, type Tables } from './tables.js';

const ENDED = new Set(['completed', 'canceled', 'expired']);

export class MemorySessionStore implements SessionStore {
  constructor(private readonly t: Tables) {}

  async insert(s: SessionRecord, idempotency?: Parameters<SessionStore['insert']>[1], history: HistoryRecord[] = []): Promise<boolean> {
    const row: SessionRecord = { ...copy(s), replay: null, chargeInFlight: null };
    return this.t.tx(() => {
      if (idempotency) {
        const i = idempotency;
        const key = `${s.merchantId}|${i.endpoint}|${i.key}`;
        const held = this.t.idempotency.get(key);
        if (held && held.expiresAt <= i.now) this.t.idempotency.delete(key);
        else if (held) throw new Refusal(false);
        this.t.idempotency.set(key, {
          requestHash: i.requestHash,
          status: i.status,
          responseSealed: copy(i.responseSealed),
          createdAt: i.now,
          expiresAt: i.expiresAt,
        });
      }
      this.t.insert(this.t.sessions, s.id, row, `session ${s.id}`);
      this.t.writeEvents(history);
      return true;
    });
  }

  async getCreateContext(p: Parameters<SessionStore['getCreateContext']>[0]): ReturnType<SessionStore['getCreateContext']> {
    const c = this.t.cards.get(p.cardToken);
    const card = c && c.merchantId === p.merchantId && c.mode === p.mode ? copy(c) : null;
    const i = p.idempotency;
    const k = i ? this.t.idempotency.get(`${p.merchantId}|${i.endpoint}|${i.key}`) : undefined;
    const idempotency = i && k && k.expiresAt > i.now ? { requestHash: k.requestHash, status: k.status, responseSealed: copy(k.responseSealed) } : null;
    return { card, idempotency };
  }

  async get(merchantId: string, mode: Mode, id: string): Promise<SessionRecord | null> {
    const s = this.t.sessions.get(id);
    return s && s.merchantId === merchantId && s.mode === mode ? copy(s) : null;
  }

  async getById(id: string): Promise<SessionRecord | null> {
    return copy(this.t.sessions.get(id) ?? null);
  }

  async getOperationContext(id: string, now: number, chargeKey?: string): Promise<OperationContextRecord | null> {
    const s = this.t.sessions.get(id);
    if (!s) return null;
    const c = this.t.cards.get(s.cardToken);
    const card: CardRecord | null = c && c.merchantId === s.merchantId && c.mode === s.mode ? c : null;
    const m = this.t.merchants.get(s.merchantId);
    const settings = this.t.settings.get(`${s.merchantId}|${s.mode}`);
    const merchant = m && settings ? { id: m.id, name: m.name, mode: s.mode, ...settings, createdAt: m.createdAt } : null;
    const cvvStatus = card ? (this.t.cvvStatus.get(`${s.merchantId}|${card.fingerprint}`) ?? null) : null;
    const tds = [...this.t.tds.values()].filter((x) => x.sessionId === id).sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
    let keyedChargeId: string | null = null;
    if (chargeKey !== undefined) {
      for (const { rec } of this.t.charges.values()) {
        if (rec.merchantId === s.merchantId && rec.mode === s.mode && rec.idempotencyKey === chargeKey) keyedChargeId = rec.id;
      }
    }
    return copy({
      session: s,
      card,
      merchant,
      cvvStatus,
      latestTds: tds[0] ?? null,
      usableCvc: usableCvc(this.t, s.merchantId, s.cardToken, id, now),
      keyedChargeId,
    });
  }

  async commitOperation(p: Parameters<SessionStore['commitOperation']>[0]): Promise<boolean> {
    const s = this.t.sessions.get(p.id);
    if (!s || s.jti !== p.jti || s.status !== 'active' || s.expiresAt <= p.now || s.chargeInFlight) return false;
    if (p.countAttempt && s.attempts[p.op] >= s.maxAttempts) return false;
    return this.t.tx(() => {
      this.t.sessions.set(p.id, {
        ...s,
        jti: p.newJti,
        seq: s.seq + 1,
        attempts: p.countAttempt ? { ...s.attempts, [p.op]: s.attempts[p.op] + 1 } : s.attempts,
        results: copy(p.results),
        tokenHash: p.tokenHash,
        updatedAt: p.now,
        replay: replayOf(p.replay),
        ...(p.complete ? { status: 'completed' as const } : {}),
      });
      for (const w of p.writes) {
        if (w.kind === 'cvc') {
          const { keyShare: _share, ...c } = copy(w.record);
          if (w.replace && c.sessionId !== null) this.t.dropCvc((v) => v.sessionId === c.sessionId);
          this.t.insert(this.t.keyShares, c.id, { share: Buffer.from(w.share), createdAt: c.createdAt }, `key share ${c.id}`);
          this.t.insert(this.t.cvc, c.id, c, `cvc session ${c.id}`);
        } else {
          this.t.insert(this.t.tds, w.record.id, copy(w.record), `3DS transaction ${w.record.id}`);
        }
      }
      this.t.writeEvents(p.events);
      return true;
    });
  }

  async finishOperation(p: Parameters<SessionStore['finishOperation']>[0]): Promise<boolean> {
    const s = this.t.sessions.get(p.id);
    if (!s || s.jti !== p.jti || s.status !== 'active') return false;
    this.t.sessions.set(p.id, {
      ...s,
      results: copy(p.results),
      tokenHash: p.tokenHash,
      updatedAt: p.now,
      replay: replayOf(p.replay),
      chargeInFlight: null,
      ...(p.complete ? { status: 'completed' as const } : {}),
    });
    return true;
  }

  async rotateToken(p: { id: string; jti: string; newJti: string; tokenHash: string; now: number }): Promise<boolean> {
    const s = this.t.sessions.get(p.id);
    if (!s || s.jti !== p.jti || s.status !== 'active' || s.expiresAt <= p.now || s.chargeInFlight) return false;
    this.t.sessions.set(p.id, { ...s, jti: p.newJti, seq: s.seq + 1, tokenHash: p.tokenHash, updatedAt: p.now, replay: null });
    return true;
  }

  async listExpired(now: number, limit: number): Promise<Array<{ id: string; merchantId: string; mode: Mode }>> {
    return [...this.t.sessions.values()]
      .filter((s) => s.status === 'active' && s.expiresAt <= now && !s.chargeInFlight)
      .sort((a, b) => a.expiresAt - b.expiresAt)
      .slice(0, limit)
      .map((s) => ({ id: s.id, merchantId: s.merchantId, mode: s.mode }));
  }

  async expire(id: string, now: number, events: EventWrite[]): Promise<boolean> {
    return this.#end(id, 'expired', now, events, (s) => s.expiresAt <= now);
  }

  async cancel(merchantId: string, mode: Mode, id: string, now: number, events: EventWrite[] = []): Promise<boolean> {
    return this.#end(id, 'canceled', now, events, (s) => s.merchantId === merchantId && s.mode === mode && s.expiresAt > now);
  }

  /** A session's end: active → `status` (never while a charge owns it), with its CVV's deletion and its events. */
  #end(id: string, status: 'expired' | 'canceled', now: number, events: EventWrite[], may: (s: SessionRecord) => boolean): boolean {
    const s = this.t.sessions.get(id);
    if (!s || s.status !== 'active' || s.chargeInFlight || !may(s)) return false;
    return this.t.tx(() => {
      this.t.sessions.set(id, { ...s, status, updatedAt: now, replay: null });
      this.t.dropCvc((v) => v.sessionId === id);
      this.t.writeEvents(events);
      return true;
    });
  }

  async list(merchantId: string, mode: Mode, q: Parameters<SessionStore['list']>[2]): Promise<SessionRecord[]> {
    const own = [...this.t.sessions.values()].filter((s) => s.merchantId === merchantId && s.mode === mode);
    const cursor = q.after === undefined ? undefined : (own.find((s) => s.id === q.after) ?? null);
    const rows = own.filter(
      (s) =>
        (q.card === undefined || s.cardToken === q.card) &&
        (q.createdGte === undefined || s.createdAt >= q.createdGte) &&
        (q.createdLt === undefined || s.createdAt < q.createdLt) &&
        (q.status === undefined ||
          (q.status === 'active'
            ? s.status === 'active' && s.expiresAt > q.now
            : q.status === 'expired'
              ? s.status === 'expired' || (s.status === 'active' && s.expiresAt <= q.now)
              : s.status === q.status)),
    );
    return page(rows, q.limit, cursor).map((s) => copy(s));
  }

  async dropReplaysBefore(before: number, limit: number): Promise<number> {
    const due = [...this.t.sessions.values()].filter((s) => s.status === 'completed' && s.replay && s.replay.at < before).slice(0, limit);
    for (const s of due) this.t.sessions.set(s.id, { ...s, replay: null });
    return due.length;
  }

  async deleteEnded(before: number, limit: number): Promise<number> {
    const ids = [...this.t.sessions.values()]
      .filter((s) => ENDED.has(s.status) && s.expiresAt < before && !s.chargeInFlight)
      .sort((a, b) => a.expiresAt - b.expiresAt)
      .slice(0, limit)
      .map((s) => s.id);
    return this.t.tx(() => {
      let n = 0;
      for (const id of ids) {
        for (const [k, x] of [...this.t.tds]) if (x.sessionId === id) this.t.tds.delete(k);
        let pending = false;
        for (const [k, c] of [...this.t.charges]) {
          if (c.rec.sessionId !== id) continue;
          if (c.rec.status === 'pending') pending = true;
          else this.t.charges.delete(k);
        }
        this.t.dropCvc((v) => v.sessionId === id);
        if (!pending) {
          this.t.sessions.delete(id);
          for (const [k, h] of [...this.t.history]) if (h.sessionId === id) this.t.history.delete(k);
          n++;
        }
      }
      return n;
    });
  }

  async appendHistory(rows: HistoryRecord[]): Promise<void> {
    this.t.tx(() => this.t.writeEvents(rows));
  }

  async history(merchantId: string, mode: Mode, sessionId: string, q: { limit: number; after?: string }): Promise<HistoryRecord[]> {
    const own = [...this.t.history.values()].filter((h) => h.sessionId === sessionId && h.merchantId === merchantId && h.mode === mode);
    const byTime = (a: HistoryRecord, b: HistoryRecord) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    own.sort(byTime);
    if (q.after !== undefined) {
      const at = own.findIndex((h) => h.id === q.after);
      if (at < 0) return [];
      return own.slice(at + 1, at + 1 + q.limit).map((h) => copy(h));
    }
    return own.slice(0, q.limit).map((h) => copy(h));
  }

  async insertTds(x: TdsRecord): Promise<void> {
    this.t.insert(this.t.tds, x.id, copy(x), `3DS transaction ${x.id}`);
  }

  async getTds(id: string): Promise<TdsRecord | null> {
    return copy(this.t.tds.get(id) ?? null);
  }

  async completeTds(id: string, result: NonNullable<TdsRecord['result']>, now: number, events: EventWrite[] = []): Promise<boolean> {
    const x = this.t.tds.get(id);
    if (!x || x.status !== 'challenge') return false;
    return this.t.tx(() => {
      this.t.tds.set(id, { ...x, status: 'completed', result: copy(result), completedAt: now });
      this.t.writeEvents(events);
      return true;
    });
  }
}
