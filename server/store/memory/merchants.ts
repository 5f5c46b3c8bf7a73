import type { ApiKeyRecord, MerchantRecord, MerchantStore, MetaStore, Mode, ProtectedCounts, SigningKeyRecord, SigningKeyStore } from '../store.js';
import { copy, modeKey, type Tables } from './tables.js';

export class MemoryMetaStore implements MetaStore {
  constructor(private readonly t: Tables) {}

  async get(name: string): Promise<string | null> {
    return this.t.meta.get(name) ?? null;
  }

  async putIfAbsent(name: string, value: string): Promise<string> {
    if (!this.t.meta.has(name)) this.t.meta.set(name, value);
    return this.t.meta.get(name)!;
  }

  async takeLease(name: string, holder: string, now: number, until: number): Promise<boolean> {
    const l = this.t.leases.get(name);
    if (l && l.until > now && l.holder !== holder) return false;
    this.t.leases.set(name, { holder, until });
    return true;
  }

  async replace(name: string, expected: string, value: string): Promise<boolean> {
    if (this.t.meta.get(name) !== expected) return false;
    this.t.meta.set(name, value);
    return true;
  }

  async list(prefix: string): Promise<Array<{ name: string; value: string }>> {
    return [...this.t.meta]
      .filter(([name]) => name.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => ({ name, value }));
  }

  async protectedCounts(): Promise<ProtectedCounts> {
    const t = this.t;
    return {
      cards: t.cards.size,
      cvcSessions: t.cvc.size,
      signingKeys: t.signingKeys.size,
      webhookEndpoints: t.endpoints.size,
      processorSettings: [...t.settings.values()].filter((s) => typeof (s.processor as { sealed?: unknown }).sealed === 'string').length,
      idempotencyRecords: t.idempotency.size,
      replayRecords: [...t.sessions.values()].filter((s) => s.replay !== null).length,
      cavvs: [...t.tds.values()].filter((x) => x.result?.cavvSealed).length,
      apiKeys: t.apiKeys.size,
      cvvStatuses: t.cvvStatus.size,
    };
  }
}

export class MemoryMerchantStore implements MerchantStore {
  constructor(private readonly t: Tables) {}

  async insert(m: MerchantRecord): Promise<void> {
    const { id, name, createdAt, mode: _mode, ...settings } = copy(m);
    this.t.tx(() => {
      this.t.insert(this.t.merchants, id, { id, name, createdAt }, `merchant ${id}`);
      this.t.settings.set(modeKey(id, 'test'), copy(settings));
      this.t.settings.set(modeKey(id, 'live'), copy(settings));
    });
  }

  async get(id: string, mode: Mode): Promise<MerchantRecord | null> {
    return this.#get(id, mode);
  }

  #get(id: string, mode: Mode): MerchantRecord | null {
    const m = this.t.merchants.get(id);
    const s = this.t.settings.get(modeKey(id, mode));
    if (!m || !s) return null;
    return copy({ id, name: m.name, mode, ...s, createdAt: m.createdAt });
  }

  async update(id: string, mode: Mode, patch: Parameters<MerchantStore['update']>[2], now: number): Promise<MerchantRecord | null> {
    const s = this.t.settings.get(modeKey(id, mode));
    if (s) {
      const set = Object.fromEntries(Object.entries(copy(patch)).filter(([, v]) => v !== undefined));
      this.t.settings.set(modeKey(id, mode), { ...s, ...set, updatedAt: now });
    }
    return this.#get(id, mode);
  }

  async listAllAllowedOrigins(): Promise<string[]> {
    const all = new Set<string>();
    for (const s of this.t.settings.values()) for (const o of s.allowedOrigins) all.add(o);
    return [...all];
  }

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    if (!this.t.merchants.has(k.merchantId)) throw new Error(`no merchant ${k.merchantId}`);
    if ([...this.t.apiKeys.values()].some((x) => x.hash === k.hash)) throw new Error('duplicate key: api key hash');
    this.t.insert(this.t.apiKeys, k.id, copy(k), `api key ${k.id}`);
  }

  async listAll(): Promise<Array<{ id: string; name: string; createdAt: number }>> {
    return [...this.t.merchants.values()].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((m) => copy(m));
  }

  async listApiKeys(merchantId: string): Promise<ApiKeyRecord[]> {
    return [...this.t.apiKeys.values()]
      .filter((k) => k.merchantId === merchantId)
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((k) => copy(k));
  }

  async revokeApiKey(merchantId: string, id: string, at: number): Promise<boolean> {
    const k = this.t.apiKeys.get(id);
    if (!k || k.merchantId !== merchantId) return false;
    if (k.revokedAt === null || k.revokedAt > at) this.t.apiKeys.set(id, { ...k, revokedAt: at });
    return true;
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRecord | null> {
    for (const k of this.t.apiKeys.values()) if (k.hash === hash) return copy(k);
    return null;
  }
}

export class MemorySigningKeyStore implements SigningKeyStore {
  constructor(private readonly t: Tables) {}

  async insert(k: SigningKeyRecord): Promise<void> {
    this.t.insert(this.t.signingKeys, k.kid, copy(k), `signing key ${k.kid}`);
  }

  async list(): Promise<SigningKeyRecord[]> {
    return [...this.t.signingKeys.values()]
      .sort((a, b) => b.activatedAt - a.activatedAt || b.createdAt - a.createdAt || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0))
      .map((k) => copy(k));
  }

  async retireAllExcept(kid: string, now: number): Promise<void> {
    for (const k of this.t.signingKeys.values()) if (k.kid !== kid && k.retiredAt === null) this.t.signingKeys.set(k.kid, { ...k, retiredAt: now });
  }

  async deleteRetiredBefore(t: number): Promise<number> {
    let n = 0;
    for (const k of [...this.t.signingKeys.values()]) {
      if (k.retiredAt !== null && k.retiredAt < t) {
        this.t.signingKeys.delete(k.kid);
        n++;
      }
    }
    return n;
  }
}
