import type { CustomFormRecord, FormStore, IdempotencyRecord, IdempotencyStore, Mode } from '../store.js';
import { copy, type Tables } from './tables.js';

export class MemoryFormStore implements FormStore {
  constructor(private readonly t: Tables) {}

  async insert(f: CustomFormRecord): Promise<void> {
    this.t.insert(this.t.forms, f.id, copy(f), `custom form ${f.id}`);
  }

  async get(id: string): Promise<CustomFormRecord | null> {
    return copy(this.t.forms.get(id) ?? null);
  }

  async list(merchantId: string, mode: Mode): Promise<CustomFormRecord[]> {
    return [...this.t.forms.values()]
      .filter((f) => f.merchantId === merchantId && f.mode === mode)
      .sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((f) => copy(f));
  }

  async update(merchantId: string, mode: Mode, id: string, p: { name: string; html: string; css: string; now: number }): Promise<boolean> {
    const f = this.t.forms.get(id);
    if (!f || f.merchantId !== merchantId || f.mode !== mode) return false;
    this.t.forms.set(id, { ...f, name: p.name, html: p.html, css: p.css, updatedAt: p.now });
    return true;
  }

  async delete(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const f = this.t.forms.get(id);
    if (!f || f.merchantId !== merchantId || f.mode !== mode) return false;
    this.t.forms.delete(id);
    return true;
  }
}

export class MemoryIdempotencyStore implements IdempotencyStore {
  constructor(private readonly t: Tables) {}

  async reserve(p: Parameters<IdempotencyStore['reserve']>[0]): Promise<IdempotencyRecord | null> {
    const key = `${p.merchantId}|${p.endpoint}|${p.key}`;
    const held = this.t.idempotency.get(key);
    if (held && held.expiresAt > p.now) return { requestHash: held.requestHash, status: held.status, responseSealed: copy(held.responseSealed) };
    this.t.idempotency.set(key, { requestHash: p.requestHash, status: null, responseSealed: null, createdAt: p.now, expiresAt: p.expiresAt });
    return null;
  }

  async complete(p: Parameters<IdempotencyStore['complete']>[0]): Promise<void> {
    const key = `${p.merchantId}|${p.endpoint}|${p.key}`;
    const held = this.t.idempotency.get(key);
    if (held) this.t.idempotency.set(key, { ...held, status: p.status, responseSealed: copy(p.responseSealed) });
  }

  async release(p: Parameters<IdempotencyStore['release']>[0]): Promise<void> {
    const key = `${p.merchantId}|${p.endpoint}|${p.key}`;
    if (this.t.idempotency.get(key)?.status === null) this.t.idempotency.delete(key);
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    const old = [...this.t.idempotency].filter(([, r]) => r.expiresAt <= now).slice(0, limit);
    for (const [k] of old) this.t.idempotency.delete(k);
    return old.length;
  }
}
