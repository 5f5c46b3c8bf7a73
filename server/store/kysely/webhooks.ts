import type { OutboxRecord, EventRecord, EventWrite, WebhookEndpointRecord, Mode, WebhookStore } from '../store.js';
import { pack, Unit, send, KyselyEngine, pastCursor } from './engine.js';
import { toEvent, eventSteps, toEndpoint, toOutbox } from './rows.js';

export class KyselyWebhookStore implements WebhookStore {
  constructor(private readonly e: KyselyEngine) {}

  async insertEndpoint(e: WebhookEndpointRecord): Promise<void> {
    await this.e.db
      .insertInto('webhook_endpoints')
      .values({
        id: e.id,
        merchant_id: e.merchantId,
        mode: e.mode,
        url: e.url,
        events: JSON.stringify(e.events),
        secret_sealed: pack(e.secretSealed),
        created_at: e.createdAt,
      })
      .execute();
  }

  async listEndpoints(merchantId: string, mode: Mode): Promise<WebhookEndpointRecord[]> {
    const { rows } = await this.e.exec('listWebhookEndpoints', { merchantId, mode }, (a) =>
      this.e.db.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', a.merchantId).where('mode', '=', a.mode).orderBy('created_at'),
    );
    return rows.map(toEndpoint);
  }

  async getEndpoint(id: string): Promise<WebhookEndpointRecord | null> {
    const r = await this.e.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toEndpoint(r) : null;
  }

  async deleteEndpoint(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const r = await this.e.db
      .deleteFrom('webhook_endpoints')
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }

  async enqueue(rows: EventWrite[]): Promise<void> {
    if (rows.length === 0) return;
    const steps = eventSteps(this.e.db, rows);
    await this.e.transaction(function* (): Unit<void> {
      yield* send(steps, { final: true });
    });
  }

  async listEvents(merchantId: string, mode: Mode, q: { limit: number; after?: string; type?: string }): Promise<EventRecord[]> {
    let query = this.e.db.selectFrom('events').selectAll().where('merchant_id', '=', merchantId).where('mode', '=', mode);
    if (q.after !== undefined) {
      const before = await this.e.before('events', merchantId, mode, q.after);
      if (!before) return [];
      query = query.where(before);
    }
    if (q.type !== undefined) query = query.where('type', '=', q.type);
    return (await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute()).map(toEvent);
  }

  async getEvent(merchantId: string, mode: Mode, id: string): Promise<EventRecord | null> {
    const r = await this.e.db
      .selectFrom('events')
      .selectAll()
      .where('id', '=', id)
      .where('merchant_id', '=', merchantId)
      .where('mode', '=', mode)
      .executeTakeFirst();
    return r ? toEvent(r) : null;
  }

  async deleteOldEvents(before: number, limit: number): Promise<number> {
    await this.e.backgroundTurn();
    const r = await this.e.db
      .deleteFrom('events')
      .where('id', 'in', this.e.db.selectFrom('events').select('id').where('created_at', '<', before).limit(limit))
      .executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async listDeliveries(endpointId: string, q: { limit: number; after?: string }): Promise<OutboxRecord[]> {
    let query = this.e.db.selectFrom('webhook_outbox').selectAll().where('endpoint_id', '=', endpointId);
    if (q.after !== undefined) {
      const c = await this.e.db
        .selectFrom('webhook_outbox')
        .select(['created_at', 'id'])
        .where('id', '=', q.after)
        .where('endpoint_id', '=', endpointId)
        .executeTakeFirst();
      if (!c) return [];
      query = query.where(pastCursor(c, 'older'));
    }
    return (await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute()).map(toOutbox);
  }

  async claimDue(now: number, lockMs: number, limit: number): Promise<OutboxRecord[]> {
    await this.e.backgroundTurn();
    // The due rows are picked once, in a MATERIALIZED CTE. As a plain
    // `id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL may plan the
    // sub-select as the inner side of a nested-loop semi join and rescan it
    // for every outer row; each rescan skips the rows this statement has just
    // updated and locks the next ones, so one call claimed (and the worker
    // then delivered at once) every due row, whatever the limit.
    // (SQLite ≥ 3.35 takes the same statement, without the row locks.)
    const rows = await this.e.db
      .with(
        (cte) => cte('due').materialized(),
        (db) => {
          const q = db
            .selectFrom('webhook_outbox')
            .select('id')
            .where('status', '=', 'pending')
            .where('next_attempt_at', '<=', now)
            .where('locked_until', '<=', now)
            .orderBy('next_attempt_at')
            .orderBy('id')
            .limit(limit);
          return this.e.engine === 'postgres' ? q.forUpdate().skipLocked() : q;
        },
      )
      .updateTable('webhook_outbox')
      .set({ locked_until: now + lockMs })
      .where('id', 'in', (eb) => eb.selectFrom('due').select('due.id'))
      .where('locked_until', '<=', now)
      .where('status', '=', 'pending')
      .returningAll()
      .execute();
    return rows.map(toOutbox);
  }

  async settle(id: string, p: Parameters<WebhookStore['settle']>[1]): Promise<void> {
    await this.e.backgroundTurn();
    await this.e.db
      .updateTable('webhook_outbox')
      .set({
        status: p.status,
        attempts: p.attempts,
        next_attempt_at: p.nextAttemptAt,
        last_status: p.lastStatus,
        locked_until: 0,
        ...(p.status === 'delivered' ? { delivered_at: p.now } : {}),
      })
      .where('id', '=', id)
      .execute();
  }

  async listOutbox(merchantId: string): Promise<OutboxRecord[]> {
    const rows = await this.e.db.selectFrom('webhook_outbox').selectAll().where('merchant_id', '=', merchantId).orderBy('created_at').execute();
    return rows.map(toOutbox);
  }

  async deleteOldOutbox(deliveredBefore: number, failedBefore: number, limit: number): Promise<number> {
    await this.e.backgroundTurn();
    const old = (status: 'delivered' | 'failed', column: 'delivered_at' | 'next_attempt_at', before: number) =>
      this.e.db.selectFrom('webhook_outbox').select('id').where('status', '=', status).where(column, '<', before).limit(limit);
    const a = await this.e.db
      .deleteFrom('webhook_outbox')
      .where('id', 'in', old('delivered', 'delivered_at', deliveredBefore))
      .executeTakeFirst();
    // A failed row's next_attempt_at is its last try (WebhookService: nothing is scheduled after giving up).
    const b = await this.e.db
      .deleteFrom('webhook_outbox')
      .where('id', 'in', old('failed', 'next_attempt_at', failedBefore))
      .executeTakeFirst();
    return Number(a.numDeletedRows) + Number(b.numDeletedRows);
  }
}
