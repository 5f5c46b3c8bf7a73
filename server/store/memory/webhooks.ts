import type { EventRecord, EventWrite, Mode, OutboxRecord, WebhookEndpointRecord, WebhookStore } from '../store.js';
import { copy, page, type Tables } from './tables.js';

export class MemoryWebhookStore implements WebhookStore {
  constructor(private readonly t: Tables) {}

  async insertEndpoint(e: WebhookEndpointRecord): Promise<void> {
    this.t.insert(this.t.endpoints, e.id, copy(e), `webhook endpoint ${e.id}`);
  }

  async listEndpoints(merchantId: string, mode: Mode): Promise<WebhookEndpointRecord[]> {
    return [...this.t.endpoints.values()]
      .filter((e) => e.merchantId === merchantId && e.mode === mode)
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((e) => copy(e));
  }

  async getEndpoint(id: string): Promise<WebhookEndpointRecord | null> {
    return copy(this.t.endpoints.get(id) ?? null);
  }

  async deleteEndpoint(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const e = this.t.endpoints.get(id);
    if (!e || e.merchantId !== merchantId || e.mode !== mode) return false;
    this.t.endpoints.delete(id);
    return true;
  }

  async enqueue(rows: EventWrite[]): Promise<void> {
    this.t.tx(() => this.t.writeEvents(rows));
  }

  async listEvents(merchantId: string, mode: Mode, q: { limit: number; after?: string; type?: string }): Promise<EventRecord[]> {
    const own = [...this.t.events.values()].filter((e) => e.merchantId === merchantId && e.mode === mode);
    const cursor = q.after === undefined ? undefined : (own.find((e) => e.id === q.after) ?? null);
    return page(
      own.filter((e) => q.type === undefined || e.type === q.type),
      q.limit,
      cursor,
    ).map((e) => copy(e));
  }

  async getEvent(merchantId: string, mode: Mode, id: string): Promise<EventRecord | null> {
    const e = this.t.events.get(id);
    return e && e.merchantId === merchantId && e.mode === mode ? copy(e) : null;
  }

  async deleteOldEvents(before: number, limit: number): Promise<number> {
    const old = [...this.t.events.values()].filter((e) => e.createdAt < before).slice(0, limit);
    for (const e of old) this.t.events.delete(e.id);
    return old.length;
  }

  async listDeliveries(endpointId: string, q: { limit: number; after?: string }): Promise<OutboxRecord[]> {
    const own = [...this.t.outbox.values()].filter((o) => o.endpointId === endpointId);
    const cursor = q.after === undefined ? undefined : (own.find((o) => o.id === q.after) ?? null);
    return page(own, q.limit, cursor).map((o) => copy(o));
  }

  async claimDue(now: number, lockMs: number, limit: number): Promise<OutboxRecord[]> {
    const due = [...this.t.outbox.values()]
      .filter((o) => o.status === 'pending' && o.nextAttemptAt <= now && o.lockedUntil <= now)
      .sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .slice(0, limit)
      .map((o) => ({ ...o, lockedUntil: now + lockMs }));
    for (const o of due) this.t.outbox.set(o.id, o);
    return due.map((o) => copy(o));
  }

  async settle(id: string, p: Parameters<WebhookStore['settle']>[1]): Promise<void> {
    const o = this.t.outbox.get(id);
    if (!o) return;
    this.t.outbox.set(id, {
      ...o,
      status: p.status,
      attempts: p.attempts,
      nextAttemptAt: p.nextAttemptAt,
      lastStatus: p.lastStatus,
      lockedUntil: 0,
      ...(p.status === 'delivered' ? { deliveredAt: p.now } : {}),
    });
  }

  async listOutbox(merchantId: string): Promise<OutboxRecord[]> {
    return [...this.t.outbox.values()]
      .filter((o) => o.merchantId === merchantId)
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((o) => copy(o));
  }

  async deleteOldOutbox(deliveredBefore: number, failedBefore: number, limit: number): Promise<number> {
    const rows = [...this.t.outbox.values()];
    const delivered = rows.filter((o) => o.status === 'delivered' && o.deliveredAt !== null && o.deliveredAt < deliveredBefore).slice(0, limit);
    // A failed row's next_attempt_at is its last try (WebhookService: nothing is scheduled after giving up).
    const failed = rows.filter((o) => o.status === 'failed' && o.nextAttemptAt < failedBefore).slice(0, limit);
    for (const o of [...delivered, ...failed]) this.t.outbox.delete(o.id);
    return delivered.length + failed.length;
  }
}
