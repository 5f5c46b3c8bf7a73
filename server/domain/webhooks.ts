import { createHmac, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { EventWrite, Mode, OutboxRecord, Store, WebhookEndpointRecord } from '../store/store.js';
import { assertReachableTarget, outbound } from '../connectors/outbound.js';
import { type Clock, epochSeconds, isoTime } from './clock.js';
import { newId } from './ids.js';
import type { Keyring } from './keyring.js';

export const WEBHOOK_EVENTS = [
  'cvv.collected',
  'threeds.completed',
  'charge.succeeded',
  'charge.failed',
  'session.completed',
  'session.canceled',
  'session.expired',
  'cvv.blocked',
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Deliveries are retried for this long after the event, then given up. */
export const RETRY_HORIZON_MS = 24 * 3600 * 1000;
const LOCK_MS = 30_000;

/** Exponential backoff: 10 s, 20 s, 40 s … capped at one hour. */
export function backoffMs(attempts: number): number {
  return Math.min(3600_000, 10_000 * 2 ** Math.max(0, attempts - 1));
}

/** `Cvvops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. */
export function signWebhook(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** A new delivery (outbox row) of an event's payload to one endpoint, due now. */
const newDelivery = (id: string, eventId: string, endpointId: string, merchantId: string, body: string, now: number): OutboxRecord => ({
  id,
  eventId,
  endpointId,
  merchantId,
  body,
  status: 'pending',
  attempts: 0,
  nextAttemptAt: now,
  lockedUntil: 0,
  lastStatus: null,
  createdAt: now,
  deliveredAt: null,
});

/** Deliveries started in one turn of the event loop (see tick). */
const STARTS_PER_TURN = 4;

/**
 * Webhooks from a durable outbox: an event is written to the outbox (one row
 * per endpoint) in the store, and a worker delivers due rows, at least once,
 * with exponential backoff for 24 hours. Rows are claimed with a lock in the
 * store, so several workers or instances never deliver one row at once.
 */
export class WebhookService {
  #timer: NodeJS.Timeout | null = null;
  #running = false;
  constructor(
    private readonly store: Pick<Store, 'webhooks'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly opts: { allowPrivate: boolean; log?: Logger },
  ) {}

  async createEndpoint(merchantId: string, mode: Mode, url: string, events: string[]): Promise<{ endpoint: WebhookEndpointRecord; secret: string }> {
    const u = new URL(url);
    const privateOk = this.opts.allowPrivate && mode === 'test';
    if (u.protocol !== 'https:' && !(privateOk && u.protocol === 'http:')) throw new AppError('invalid_request', 'url must be https.');
    // Refused now rather than only at delivery, where the merchant would never hear why events are lost.
    // Delivery checks again when it connects (a name may resolve elsewhere later); a name that does not
    // resolve now is accepted, as DNS may simply not be there yet.
    try {
      await assertReachableTarget(u, privateOk);
    } catch {
      throw new AppError(
        'invalid_request',
        'url is, or resolves to, a private, loopback or link-local address: webhooks can only be sent to public addresses.',
      );
    }
    const id = newId('whe');
    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    const endpoint: WebhookEndpointRecord = {
      id,
      merchantId,
      mode,
      url,
      events: [...new Set(events)],
      secretSealed: this.keyring.seal('webhook-secret', secret, `webhook|${merchantId}|${id}`),
      createdAt: this.clock.now(),
    };
    await this.store.webhooks.insertEndpoint(endpoint);
    this.forget(merchantId, mode);
    this.opts.log?.info({ audit: true, event: 'webhook_endpoint.created', merchantId, endpoint: id }, 'webhook endpoint created');
    return { endpoint, secret };
  }

  /**
   * GET /Events: the merchant's events in this mode, newest first, in pages
   * (`limit`, `startingAfter`), each as its webhook's payload. Kept 30 days.
   */
  async listEvents(merchantId: string, mode: Mode, q: { limit?: number; startingAfter?: string; type?: string }) {
    const limit = q.limit ?? 10;
    const rows = await this.store.webhooks.listEvents(merchantId, mode, {
      limit: limit + 1,
      ...(q.startingAfter !== undefined ? { after: q.startingAfter } : {}),
      ...(q.type !== undefined ? { type: q.type } : {}),
    });
    return { object: 'list' as const, data: rows.slice(0, limit).map((e) => JSON.parse(e.body) as Record<string, unknown>), hasMore: rows.length > limit };
  }

  /** GET /Events/{id}: the event's webhook payload, or 404 (another merchant's or mode's answers like an unknown one). */
  async getEvent(merchantId: string, mode: Mode, id: string): Promise<Record<string, unknown>> {
    const e = await this.store.webhooks.getEvent(merchantId, mode, id);
    if (!e) throw new AppError('not_found', 'No such event.');
    return JSON.parse(e.body) as Record<string, unknown>;
  }

  /** An endpoint of this merchant and mode, or 404 (another's answers like an unknown one). */
  async #ownEndpoint(merchantId: string, mode: Mode, id: string): Promise<WebhookEndpointRecord> {
    const e = await this.store.webhooks.getEndpoint(id);
    if (!e || e.merchantId !== merchantId || e.mode !== mode) throw new AppError('not_found', 'No such webhook endpoint.');
    return e;
  }

  /** A delivery as GET /WebhookEndpoints/{id}/deliveries shows it: its event, attempts, last status code and next try. */
  deliveryView(o: OutboxRecord) {
    return {
      id: o.id,
      event: o.eventId,
      type: (JSON.parse(o.body) as { type?: string }).type ?? null,
      status: o.status,
      attempts: o.attempts,
      lastStatus: o.lastStatus,
      nextAttemptAt: o.status === 'pending' ? isoTime(o.nextAttemptAt) : null,
      createdAt: isoTime(o.createdAt),
      deliveredAt: o.deliveredAt === null ? null : isoTime(o.deliveredAt),
    };
  }

  /** GET /WebhookEndpoints/{id}/deliveries: newest first, in pages. */
  async listDeliveries(merchantId: string, mode: Mode, endpointId: string, q: { limit?: number; startingAfter?: string }) {
    await this.#ownEndpoint(merchantId, mode, endpointId);
    const limit = q.limit ?? 10;
    const rows = await this.store.webhooks.listDeliveries(endpointId, {
      limit: limit + 1,
      ...(q.startingAfter !== undefined ? { after: q.startingAfter } : {}),
    });
    return { object: 'list' as const, data: rows.slice(0, limit).map((o) => this.deliveryView(o)), hasMore: rows.length > limit };
  }

  /**
   * POST /Events/{id}/resend: a new delivery of the event, same payload, to
   * the given endpoint or to every endpoint of the mode that listens to its
   * type now; delivered (and retried) like any other.
   */
  async resend(merchantId: string, mode: Mode, eventId: string, endpointId?: string) {
    const event = await this.store.webhooks.getEvent(merchantId, mode, eventId);
    if (!event) throw new AppError('not_found', 'No such event.');
    const targets =
      endpointId !== undefined
        ? [await this.#ownEndpoint(merchantId, mode, endpointId)]
        : (await this.store.webhooks.listEndpoints(merchantId, mode)).filter((e) => e.events.includes(event.type));
    const now = this.clock.now();
    const rows = targets.map((e) => newDelivery(`${event.id}.${e.id}.r${randomBytes(9).toString('base64url')}`, event.id, e.id, merchantId, event.body, now));
    await this.store.webhooks.enqueue(rows);
    this.opts.log?.info({ audit: true, event: 'webhook.resent', merchantId, eventId: event.id, endpoints: targets.map((e) => e.id) }, 'event resent');
    return { deliveries: rows.map((o) => this.deliveryView(o)) };
  }

  /** The merchant's endpoints in this mode. */
  listEndpoints(merchantId: string, mode: Mode): Promise<WebhookEndpointRecord[]> {
    return this.store.webhooks.listEndpoints(merchantId, mode);
  }

  /** Removes an endpoint of this merchant and mode (false: there is none); this instance stops using it at once. */
  async deleteEndpoint(merchantId: string, mode: Mode, id: string): Promise<boolean> {
    const gone = await this.store.webhooks.deleteEndpoint(merchantId, mode, id);
    this.forget(merchantId, mode);
    if (gone) this.opts.log?.info({ audit: true, event: 'webhook_endpoint.deleted', merchantId, endpoint: id }, 'webhook endpoint deleted');
    return gone;
  }

  view(e: WebhookEndpointRecord) {
    return { id: e.id, url: e.url, events: e.events, mode: e.mode, createdAt: isoTime(e.createdAt) };
  }

  /**
   * Endpoints are read on every operation and change rarely: kept for a
   * second per merchant and mode (a change made here is seen at once; one made
   * on another instance within a second).
   */
  readonly #endpoints = new Map<string, { at: number; list: WebhookEndpointRecord[] }>();
  async #endpointsOf(merchantId: string, mode: Mode): Promise<WebhookEndpointRecord[]> {
    const key = `${merchantId}|${mode}`;
    const hit = this.#endpoints.get(key);
    const now = this.clock.now();
    if (hit && now - hit.at < 1000) return hit.list;
    const list = await this.store.webhooks.listEndpoints(merchantId, mode);
    if (this.#endpoints.size > 10_000) this.#endpoints.clear();
    this.#endpoints.set(key, { at: now, list });
    return list;
  }

  forget(merchantId: string, mode: Mode): void {
    this.#endpoints.delete(`${merchantId}|${mode}`);
  }

  /** Records an event and writes it to the outbox for every endpoint of the merchant that listens to it; its id. */
  async emit(merchantId: string, mode: Mode, type: WebhookEvent, data: Record<string, unknown>): Promise<string> {
    const rows = await this.prepare(merchantId, mode, [{ type, data }]);
    await this.store.webhooks.enqueue(rows);
    return rows[0]!.id;
  }

  /**
   * These events as written: each event's record (GET /Events), then its
   * outbox rows (one per listening endpoint), for the caller to write in the
   * transaction of the state change that raised them: a crash can then lose
   * neither without the other.
   */
  async prepare(merchantId: string, mode: Mode, events: Array<{ type: WebhookEvent; data: Record<string, unknown> }>): Promise<EventWrite[]> {
    const all = await this.#endpointsOf(merchantId, mode);
    const now = this.clock.now();
    const rows: EventWrite[] = [];
    for (const { type, data } of events) {
      const endpoints = all.filter((e) => e.events.includes(type));
      const id = newId('evt');
      // API.md section 8: createdAt as ISO 8601.
      const body = JSON.stringify({ id, type, createdAt: isoTime(now), mode, data });
      rows.push({ kind: 'event', id, merchantId, mode, type, body, createdAt: now });
      for (const e of endpoints) rows.push(newDelivery(`${id}.${e.id}`, id, e.id, merchantId, body, now));
    }
    return rows;
  }

  start(everyMs = 500): void {
    this.#timer = setInterval(() => void this.tick(), everyMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /**
   * Delivers what is due, `limit` at a time (concurrently); while batches come
   * back full it goes on (up to `maxBatches`), so a backlog drains faster than
   * one batch per tick, with a turn of the event loop between batches.
   */
  async tick(limit = 20, maxBatches = 10): Promise<number> {
    if (this.#running) return 0;
    this.#running = true;
    let total = 0;
    try {
      for (let batch = 0; batch < maxBatches; batch++) {
        const rows = await this.store.webhooks.claimDue(this.clock.now(), LOCK_MS, limit);
        // Each start (the endpoint read, its secret opened, the body signed, the request built) is about a
        // millisecond of synchronous work, run in the microtasks after the call: twenty at once held the event
        // loop ~20 ms, so they start a few at a time, with a turn of the event loop between.
        const started: Array<Promise<void>> = [];
        for (const [i, r] of rows.entries()) {
          const p = this.#deliver(r);
          p.catch(() => undefined); // awaited below with the others; not unhandled meanwhile
          started.push(p);
          if ((i + 1) % STARTS_PER_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        }
        await Promise.all(started);
        total += rows.length;
        if (rows.length < limit) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      return total;
    } catch (err) {
      this.opts.log?.error({ err: err instanceof Error ? err.message : String(err) }, 'webhook tick failed');
      return total;
    } finally {
      this.#running = false;
    }
  }

  /** One signed POST of `body` to the endpoint: the receiver's status code, or null when it could not be reached. */
  async #post(endpoint: WebhookEndpointRecord, body: string, eventId: string): Promise<number | null> {
    try {
      const secret = openWebhookSecret(this.keyring, endpoint);
      const t = epochSeconds(this.clock.now());
      const res = await outbound({
        method: 'POST',
        url: endpoint.url,
        body,
        timeoutMs: 10_000,
        allowPrivate: this.opts.allowPrivate && endpoint.mode === 'test',
        maxResponseBytes: 64 * 1024,
        headers: { 'content-type': 'application/json', 'user-agent': 'cvvops-webhooks/1', 'cvvops-signature': signWebhook(secret, t, body) },
      });
      return res.status;
    } catch (err) {
      this.opts.log?.warn({ endpoint: endpoint.id, event: eventId, err: err instanceof Error ? err.message : String(err) }, 'webhook delivery failed');
      return null;
    }
  }

  /**
   * `cvvops webhooks test`: one signed `webhook.test` event posted to an
   * endpoint at once, outside the outbox (nothing stored, nothing retried), so
   * an operator can check the receiver and its signature check end to end.
   */
  async sendTest(merchantId: string, endpointId: string): Promise<{ event: string; endpoint: string; url: string; status: number | null; delivered: boolean }> {
    const endpoint = await this.store.webhooks.getEndpoint(endpointId);
    if (!endpoint || endpoint.merchantId !== merchantId) throw new AppError('not_found', `No webhook endpoint ${endpointId} of merchant ${merchantId}.`);
    const id = newId('evt');
    const body = JSON.stringify({ id, type: 'webhook.test', createdAt: isoTime(this.clock.now()), mode: endpoint.mode, data: { endpoint: endpoint.id } });
    const status = await this.#post(endpoint, body, id);
    return { event: id, endpoint: endpoint.id, url: endpoint.url, status, delivered: status !== null && status >= 200 && status < 300 };
  }

  async #deliver(row: OutboxRecord): Promise<void> {
    const endpoint = await this.store.webhooks.getEndpoint(row.endpointId);
    const attempts = row.attempts + 1;
    const now = () => this.clock.now();
    if (!endpoint) {
      await this.store.webhooks.settle(row.id, { status: 'failed', attempts, nextAttemptAt: now(), lastStatus: null, now: now() });
      return;
    }
    const status = await this.#post(endpoint, row.body, row.eventId);
    if (status !== null && status >= 200 && status < 300) {
      await this.store.webhooks.settle(row.id, { status: 'delivered', attempts, nextAttemptAt: now(), lastStatus: status, now: now() });
      return;
    }
    const next = now() + backoffMs(attempts);
    const giveUp = next > row.createdAt + RETRY_HORIZON_MS;
    // A failed row keeps the time of its last try (its lifetime counts from it); a pending one, its next.
    await this.store.webhooks.settle(row.id, {
      status: giveUp ? 'failed' : 'pending',
      attempts,
      nextAttemptAt: giveUp ? now() : next,
      lastStatus: status,
      now: now(),
    });
  }
}

/**
 * An endpoint's signing secret. Sealed under its own key (`webhook-secret`); endpoints made before that
 * have theirs under the signing-key purpose's key, which still opens them (the GCM tag tells which key fits,
 * so trying both cannot take one secret for another).
 */
export function openWebhookSecret(keyring: Keyring, e: Pick<WebhookEndpointRecord, 'merchantId' | 'id' | 'secretSealed'>): string {
  const aad = `webhook|${e.merchantId}|${e.id}`;
  try {
    return keyring.open('webhook-secret', e.secretSealed, aad).toString('utf8');
  } catch {
    return keyring.open('signing-key', e.secretSealed, aad).toString('utf8');
  }
}
