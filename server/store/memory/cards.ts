import type { CardRecord, CardStore, CvcSessionRecord, CvcStore, CvvStatusRecord, Mode } from '../store.js';
import { copy, newest, type Tables } from './tables.js';

type CvcRow = Omit<CvcSessionRecord, 'keyShare'>;

export class MemoryCardStore implements CardStore {
  constructor(private readonly t: Tables) {}

  async insert(c: CardRecord): Promise<void> {
    if (!this.t.merchants.has(c.merchantId)) throw new Error(`no merchant ${c.merchantId}`);
    this.t.insert(this.t.cards, c.token, copy(c), `card ${c.token}`);
  }

  async listSealedBelow(version: number, limit: number): Promise<CardRecord[]> {
    return [...this.t.cards.values()]
      .filter((c) => c.numberSealed.keyVersion < version)
      .sort((a, b) => a.createdAt - b.createdAt || (a.token < b.token ? -1 : 1))
      .slice(0, limit)
      .map((c) => copy(c));
  }

  async reseal(c: Pick<CardRecord, 'token' | 'merchantId' | 'numberSealed' | 'holderSealed'>, was: CardRecord['numberSealed']): Promise<boolean> {
    const cur = this.t.cards.get(c.token);
    if (!cur || cur.merchantId !== c.merchantId || !cur.numberSealed.blob.equals(was.blob) || cur.numberSealed.keyVersion !== was.keyVersion) return false;
    this.t.cards.set(c.token, { ...cur, numberSealed: copy(c.numberSealed), holderSealed: c.holderSealed ? copy(c.holderSealed) : null });
    return true;
  }

  async get(merchantId: string, mode: Mode, token: string): Promise<CardRecord | null> {
    const c = this.t.cards.get(token);
    return c && c.merchantId === merchantId && c.mode === mode ? copy(c) : null;
  }

  async delete(merchantId: string, mode: Mode, token: string): Promise<boolean> {
    const c = this.t.cards.get(token);
    if (!c || c.merchantId !== merchantId || c.mode !== mode) return false;
    for (const s of this.t.sessions.values()) if (s.chargeInFlight && s.cardToken === token && s.merchantId === merchantId) return false;
    this.t.cards.delete(token);
    this.t.dropCvc((v) => v.cardToken === token && v.merchantId === merchantId);
    return true;
  }

  async getCvvStatus(merchantId: string, fingerprint: string): Promise<CvvStatusRecord | null> {
    return copy(this.t.cvvStatus.get(`${merchantId}|${fingerprint}`) ?? null);
  }

  async recordCvvFailure(merchantId: string, fingerprint: string, threshold: number, now: number): Promise<CvvStatusRecord> {
    const key = `${merchantId}|${fingerprint}`;
    const st = this.t.cvvStatus.get(key);
    const failed = (st?.failedAttempts ?? 0) + 1;
    const next = { merchantId, fingerprint, failedAttempts: failed, blocked: failed >= threshold || (st?.blocked ?? false), updatedAt: now };
    this.t.cvvStatus.set(key, next);
    return copy(next);
  }

  async deleteStaleCvvStatus(before: number, limit: number): Promise<number> {
    const pending = (merchantId: string, fp: string) =>
      [...this.t.charges.values()].some((c) => c.rec.merchantId === merchantId && c.cvvFingerprint === fp && c.rec.status === 'pending');
    const stale = [...this.t.cvvStatus].filter(([, st]) => !st.blocked && st.updatedAt < before && !pending(st.merchantId, st.fingerprint)).slice(0, limit);
    for (const [k] of stale) this.t.cvvStatus.delete(k);
    return stale.length;
  }

  async resetCvvStatus(merchantId: string, fingerprint: string, now: number): Promise<void> {
    const key = `${merchantId}|${fingerprint}`;
    const st = this.t.cvvStatus.get(key);
    if (st && (st.failedAttempts > 0 || st.blocked)) this.t.cvvStatus.set(key, { ...st, failedAttempts: 0, blocked: false, updatedAt: now });
  }
}

/** The live CVC session a charge of this session would use: its own, else the card's (from POST /Cards). */
export function usableCvc(t: Tables, merchantId: string, cardToken: string, sessionId: string, now: number): CvcRow | null {
  const live = [...t.cvc.values()].filter((v) => v.merchantId === merchantId && v.cardToken === cardToken && v.expiresAt > now);
  return newest(live.filter((v) => v.sessionId === sessionId)) ?? newest(live.filter((v) => v.sessionId === null));
}

export class MemoryCvcStore implements CvcStore {
  constructor(private readonly t: Tables) {}

  async putKeyShare(cvcId: string, share: Buffer, now: number): Promise<void> {
    this.t.insert(this.t.keyShares, cvcId, { share: Buffer.from(share), createdAt: now }, `key share ${cvcId}`);
  }

  async getKeyShare(cvcId: string): Promise<Buffer | null> {
    const k = this.t.keyShares.get(cvcId);
    return k ? Buffer.from(k.share) : null;
  }

  async insert(c: CvcSessionRecord, opts: { replace?: boolean } = {}): Promise<void> {
    const { keyShare: _share, ...row } = copy(c);
    this.t.tx(() => {
      if (c.sessionId !== null && opts.replace !== false) this.t.dropCvc((v) => v.sessionId === c.sessionId);
      this.t.insert(this.t.cvc, c.id, row, `cvc session ${c.id}`);
    });
  }

  async findUsable(merchantId: string, cardToken: string, sessionId: string, now: number): Promise<CvcSessionRecord | null> {
    return copy(usableCvc(this.t, merchantId, cardToken, sessionId, now));
  }

  async getLive(merchantId: string, mode: Mode, id: string, now: number): Promise<CvcSessionRecord | null> {
    const v = this.t.cvc.get(id);
    return v && v.merchantId === merchantId && v.mode === mode && v.expiresAt > now ? copy(v) : null;
  }

  async getById(id: string, now: number): Promise<CvcSessionRecord | null> {
    const v = this.t.cvc.get(id);
    return v && v.expiresAt > now ? copy(v) : null;
  }

  async findLiveOfCard(merchantId: string, cardToken: string, now: number): Promise<CvcSessionRecord | null> {
    return copy(newest([...this.t.cvc.values()].filter((v) => v.merchantId === merchantId && v.cardToken === cardToken && v.expiresAt > now)));
  }

  async take(id: string, now: number): Promise<CvcSessionRecord | null> {
    const v = this.t.cvc.get(id);
    if (!v || v.expiresAt <= now) return null;
    const k = this.t.keyShares.get(id);
    this.t.cvc.delete(id);
    this.t.keyShares.delete(id);
    return { ...copy(v), keyShare: k ? Buffer.from(k.share) : null };
  }

  async startCacheWindow(id: string, now: number, until: number): Promise<void> {
    const v = this.t.cvc.get(id);
    if (v && v.firstUsedAt === null) this.t.cvc.set(id, { ...v, firstUsedAt: now, expiresAt: Math.min(v.expiresAt, until) });
  }

  async delete(merchantId: string, mode: Mode, id: string, now: number): Promise<boolean> {
    const v = this.t.cvc.get(id);
    if (!v || v.merchantId !== merchantId || v.mode !== mode) return false;
    this.t.dropCvc((x) => x.id === id);
    return v.expiresAt > now;
  }

  async deleteOfSession(sessionId: string): Promise<number> {
    return this.t.dropCvc((v) => v.sessionId === sessionId);
  }

  async deleteOfSessionUnlessCharging(sessionId: string): Promise<number | null> {
    if (this.t.sessions.get(sessionId)?.chargeInFlight) return null;
    return this.t.dropCvc((v) => v.sessionId === sessionId);
  }

  async deleteUnlessCharging(merchantId: string, mode: Mode, id: string, now: number): Promise<'deleted' | 'gone' | 'charging'> {
    const v = this.t.cvc.get(id);
    if (!v || v.merchantId !== merchantId || v.mode !== mode) return 'gone';
    // Its own session, or for a card-level CVV any session of its card: owned by a charge, it stays.
    const busy =
      v.sessionId !== null
        ? !!this.t.sessions.get(v.sessionId)?.chargeInFlight
        : [...this.t.sessions.values()].some((s) => s.chargeInFlight && s.cardToken === v.cardToken && s.merchantId === merchantId);
    if (busy) return 'charging';
    this.t.dropCvc((x) => x.id === id);
    return v.expiresAt > now ? 'deleted' : 'gone';
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    const ids = new Set(
      [...this.t.cvc.values()]
        .filter((v) => v.expiresAt <= now)
        .slice(0, limit)
        .map((v) => v.id),
    );
    return this.t.dropCvc((v) => ids.has(v.id));
  }

  async deleteOrphanKeyShares(now: number): Promise<number> {
    let n = 0;
    for (const [id, k] of [...this.t.keyShares]) {
      if (k.createdAt < now - 60_000 && k.createdAt >= now - 120_000 && !this.t.cvc.has(id)) {
        this.t.keyShares.delete(id);
        n++;
      }
    }
    return n;
  }
}
