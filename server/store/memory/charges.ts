import type { Sealed } from '../../types/shared.js';
import type { ChargeOutcome, ChargeRecord, ChargeStore, CvcSessionRecord, EventWrite, Mode } from '../store.js';
import { NO_OUTCOME } from '../store.js';
import { copy, Refusal, replayOf, type Tables } from './tables.js';

type Begin = Awaited<ReturnType<ChargeStore['begin']>>;
const NOT_RECORDED = { recorded: false, cvvBlocked: false };

export class MemoryChargeStore implements ChargeStore {
  constructor(private readonly t: Tables) {}

  async begin(p: Parameters<ChargeStore['begin']>[0]): Promise<Begin> {
    const { claim, charge: c, cvv, take } = p;
    return this.t.tx((): Begin => {
      const s = this.t.sessions.get(claim.id);
      if (!s || s.jti !== claim.jti || s.status !== 'active' || s.expiresAt <= claim.now || s.chargeInFlight || s.attempts.charge >= s.maxAttempts) {
        throw new Refusal({ status: 'lost' });
      }
      this.t.sessions.set(s.id, {
        ...s,
        jti: claim.newJti,
        seq: s.seq + 1,
        attempts: { ...s.attempts, charge: s.attempts.charge + 1 },
        chargeInFlight: { chargeId: c.id, since: claim.now },
        updatedAt: claim.now,
      });
      if (cvv) {
        const key = `${c.merchantId}|${cvv.fingerprint}`;
        if (!this.t.cvvStatus.has(key)) {
          this.t.cvvStatus.set(key, { merchantId: c.merchantId, fingerprint: cvv.fingerprint, failedAttempts: 0, blocked: false, updatedAt: claim.now });
        }
        const st = this.t.cvvStatus.get(key)!;
        if (st.blocked || st.failedAttempts >= cvv.threshold) throw new Refusal({ status: 'cvv_blocked' });
        let inFlight = 0;
        for (const x of this.t.charges.values()) {
          if (x.rec.merchantId === c.merchantId && x.cvvFingerprint === cvv.fingerprint && x.rec.status === 'pending') inFlight++;
        }
        if (st.failedAttempts + inFlight >= cvv.threshold) throw new Refusal({ status: 'cvv_busy' });
      }
      const taken =
        this.t.charges.has(c.id) ||
        (c.idempotencyKey !== null &&
          [...this.t.charges.values()].some((x) => x.rec.merchantId === c.merchantId && x.rec.mode === c.mode && x.rec.idempotencyKey === c.idempotencyKey));
      if (taken) throw new Refusal({ status: 'key_reused' });
      const rec: ChargeRecord = { ...copy(c), ...NO_OUTCOME };
      this.t.charges.set(c.id, { rec, cvvFingerprint: cvv?.fingerprint ?? null });
      // The CVV the charge sends, taken now: gone or expired, the whole charge is refused and nothing changes.
      let cvc: CvcSessionRecord | null = null;
      if (take) {
        let v = this.t.cvc.get(take.id);
        const k = this.t.keyShares.get(take.id);
        if (!v || v.expiresAt <= claim.now || !k) throw new Refusal({ status: 'cvc_gone' });
        if (take.retention === 'single_use') {
          this.t.cvc.delete(take.id);
          this.t.keyShares.delete(take.id);
        } else if (take.retention === 'cache' && v.firstUsedAt === null) {
          v = { ...v, firstUsedAt: claim.now, expiresAt: Math.min(v.expiresAt, take.cacheUntil) };
          this.t.cvc.set(take.id, v);
          if (v.expiresAt <= claim.now) throw new Refusal({ status: 'cvc_gone' });
        }
        cvc = { ...copy(v), keyShare: Buffer.from(k.share) };
      }
      return { status: 'ok', cvc };
    });
  }

  /** A charge's outcome (only from pending, or the unit is refused) and what it says about the CVV it sent; true when it blocked the card number. */
  #outcome(id: string, o: ChargeOutcome, now: number, threshold: number): boolean {
    const c = this.t.charges.get(id);
    if (!c || c.rec.status !== 'pending') throw new Refusal(NOT_RECORDED);
    this.t.charges.set(id, { ...c, rec: { ...c.rec, ...copy(o), updatedAt: now } });
    const key = `${c.rec.merchantId}|${c.cvvFingerprint}`;
    const st = c.cvvFingerprint === null ? undefined : this.t.cvvStatus.get(key);
    if (!st) return false;
    if (o.declineCode === 'incorrect_cvc') {
      const failed = st.failedAttempts + 1;
      const blocked = failed >= threshold || st.blocked;
      this.t.cvvStatus.set(key, { ...st, failedAttempts: failed, blocked, updatedAt: now });
      return blocked && failed === threshold;
    }
    if (o.cvvResult === 'M' && (st.failedAttempts > 0 || st.blocked)) this.t.cvvStatus.set(key, { ...st, failedAttempts: 0, blocked: false, updatedAt: now });
    return false;
  }

  async complete(p: Parameters<ChargeStore['complete']>[0]): Promise<{ recorded: boolean; cvvBlocked: boolean }> {
    return this.t.tx(() => {
      const cvvBlocked = this.#outcome(p.chargeId, p.outcome, p.now, p.threshold);
      if (p.responseSealed) this.#setResponse(p.chargeId, p.responseSealed);
      if (p.destroyCvc) this.t.dropCvc((v) => v.id === p.destroyCvc);
      const f = p.finish;
      const s = this.t.sessions.get(f.id);
      if (!s || s.jti !== f.jti || s.chargeInFlight?.chargeId !== p.chargeId) throw new Refusal(NOT_RECORDED);
      this.t.sessions.set(s.id, {
        ...s,
        results: copy(f.results),
        tokenHash: f.tokenHash,
        updatedAt: p.now,
        replay: replayOf(f.replay),
        chargeInFlight: null,
        ...(f.complete ? { status: 'completed' as const } : {}),
      });
      const mayBlock = p.ifBlocked.length > 0 && p.outcome.declineCode === 'incorrect_cvc';
      this.t.writeEvents(mayBlock && cvvBlocked ? [...p.ifBlocked, ...p.events] : p.events);
      return { recorded: true, cvvBlocked };
    });
  }

  async abort(p: Parameters<ChargeStore['abort']>[0]): Promise<boolean> {
    const s = this.t.sessions.get(p.id);
    if (!s || s.jti !== p.jti || s.chargeInFlight?.chargeId !== p.chargeId) return false;
    this.t.sessions.set(s.id, {
      ...s,
      jti: p.oldJti,
      seq: s.seq - 1,
      attempts: { ...s.attempts, charge: s.attempts.charge - 1 },
      chargeInFlight: null,
      updatedAt: p.now,
    });
    // It never reached the processor: no record of a charge that was not made (and its CVV reservation goes with it).
    if (this.t.charges.get(p.chargeId)?.rec.status === 'pending') this.t.charges.delete(p.chargeId);
    return true;
  }

  async recordOutcome(
    id: string,
    o: ChargeOutcome,
    now: number,
    threshold: number,
    ev: { events: EventWrite[]; ifBlocked: EventWrite[] } = { events: [], ifBlocked: [] },
  ): Promise<{ recorded: boolean; cvvBlocked: boolean }> {
    return this.t.tx(() => {
      const cvvBlocked = this.#outcome(id, o, now, threshold);
      const mayBlock = ev.ifBlocked.length > 0 && o.declineCode === 'incorrect_cvc';
      this.t.writeEvents(mayBlock && cvvBlocked ? [...ev.ifBlocked, ...ev.events] : ev.events);
      return { recorded: true, cvvBlocked };
    });
  }

  async settleLock(p: Parameters<ChargeStore['settleLock']>[0]): Promise<boolean> {
    const s = this.t.sessions.get(p.id);
    if (!s || s.chargeInFlight?.chargeId !== p.chargeId) return false;
    this.t.sessions.set(s.id, {
      ...s,
      jti: p.newJti,
      seq: s.seq + 1,
      tokenHash: p.tokenHash,
      results: copy(p.results),
      updatedAt: p.now,
      chargeInFlight: null,
      replay: null,
      ...(p.complete ? { status: 'completed' as const } : {}),
    });
    return true;
  }

  async leaseRecovery(p: Parameters<ChargeStore['leaseRecovery']>[0]): Promise<boolean> {
    const s = this.t.sessions.get(p.id);
    if (!s || s.chargeInFlight?.chargeId !== p.chargeId || s.chargeInFlight.since !== p.since) return false;
    this.t.sessions.set(s.id, { ...s, chargeInFlight: { chargeId: p.chargeId, since: p.now } });
    return true;
  }

  async listLocks(since: number, limit: number): Promise<Array<{ sessionId: string; chargeId: string; since: number; merchantId: string; mode: Mode }>> {
    return [...this.t.sessions.values()]
      .flatMap((s) => (s.chargeInFlight && s.chargeInFlight.since < since ? [{ s, lock: s.chargeInFlight }] : []))
      .sort((a, b) => a.lock.since - b.lock.since)
      .slice(0, limit)
      .map(({ s, lock }) => ({ sessionId: s.id, chargeId: lock.chargeId, since: lock.since, merchantId: s.merchantId, mode: s.mode }));
  }

  #setResponse(id: string, sealed: Sealed): void {
    const c = this.t.charges.get(id);
    if (c) this.t.charges.set(id, { ...c, rec: { ...c.rec, responseSealed: copy(sealed) } });
  }

  async setResponse(id: string, sealed: Sealed): Promise<void> {
    this.#setResponse(id, sealed);
  }

  async get(id: string): Promise<ChargeRecord | null> {
    return copy(this.t.charges.get(id)?.rec ?? null);
  }

  async findByIdempotencyKey(merchantId: string, mode: Mode, key: string): Promise<ChargeRecord | null> {
    for (const { rec } of this.t.charges.values()) if (rec.merchantId === merchantId && rec.mode === mode && rec.idempotencyKey === key) return copy(rec);
    return null;
  }
}
