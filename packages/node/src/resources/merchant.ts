import { type HttpClient, type RequestOptions, seg } from '../http.js';
import { PagePromise, pageQuery } from '../pagination.js';
import type {
  ApiEvent,
  CreatedWebhookEndpoint,
  CreateWebhookEndpointParams,
  Delivery,
  DeliveryPage,
  EventPage,
  Merchant,
  Page,
  ResentEvent,
  UpdateMerchantParams,
  WebhookEndpoint,
} from '../types.js';

/** The calling merchant's settings, of the API key's mode (API.md section 8). */
export class MerchantResource {
  constructor(private readonly http: HttpClient) {}

  /** GET /Merchant. */
  async retrieve(options?: RequestOptions): Promise<Merchant> {
    return this.http.request({ method: 'GET', path: '/Merchant', retry: 'repeatable', options });
  }

  /** PATCH /Merchant: sets the given fields (a repeat sets them again: retried safely). */
  async update(params: UpdateMerchantParams, options?: RequestOptions): Promise<Merchant> {
    return this.http.request({ method: 'PATCH', path: '/Merchant', body: params, retry: 'repeatable', options });
  }
}

/** Webhook endpoints (API.md section 8). */
export class WebhookEndpoints {
  constructor(private readonly http: HttpClient) {}

  /**
   * POST /WebhookEndpoints: the endpoint and its signing secret (shown only now). Not retried
   * once the request may have reached the server: a repeat would add a second endpoint (the
   * server keeps no Idempotency-Key here). After a `connection_error` or `timeout`, `list()`
   * shows whether it was created.
   */
  async create(params: CreateWebhookEndpointParams, options?: RequestOptions): Promise<CreatedWebhookEndpoint> {
    return this.http.request({ method: 'POST', path: '/WebhookEndpoints', body: params, retry: 'once', options });
  }

  /** GET /WebhookEndpoints (without secrets). `await` it for `{ data }`, or `for await` over the endpoints. */
  list(options?: RequestOptions): PagePromise<WebhookEndpoint> {
    return new PagePromise<WebhookEndpoint>(() =>
      this.http.request<Page<WebhookEndpoint>>({ method: 'GET', path: '/WebhookEndpoints', retry: 'repeatable', options }),
    );
  }

  /** DELETE /WebhookEndpoints/{id}. */
  async del(id: string, options?: RequestOptions): Promise<void> {
    return this.http.request({ method: 'DELETE', path: `/WebhookEndpoints/${seg('id', id)}`, retry: 'repeatable', goneIsSuccess: true, options });
  }

  /**
   * GET /WebhookEndpoints/{id}/deliveries: the endpoint's deliveries, newest first (`await` for the
   * first page, `for await` for all).
   */
  deliveries(id: string, params: { limit?: number; startingAfter?: string } = {}, options?: RequestOptions): PagePromise<Delivery, DeliveryPage> {
    return new PagePromise<Delivery, DeliveryPage>((previous) =>
      this.http.request<DeliveryPage>({
        method: 'GET',
        path: `/WebhookEndpoints/${seg('id', id)}/deliveries${pageQuery(previous, params)}`,
        retry: 'repeatable',
        options,
      }),
    );
  }
}

/** Events, kept 30 days: the payloads webhooks carry (API.md section 8). */
export class Events {
  constructor(private readonly http: HttpClient) {}

  /** GET /Events: newest first (`await` for the first page, `for await` for all); `type` filters. */
  list(params: { limit?: number; startingAfter?: string; type?: string } = {}, options?: RequestOptions): PagePromise<ApiEvent, EventPage> {
    return new PagePromise<ApiEvent, EventPage>((previous) =>
      this.http.request<EventPage>({ method: 'GET', path: `/Events${pageQuery(previous, params, { type: params.type })}`, retry: 'repeatable', options }),
    );
  }

  /** GET /Events/{id}. */
  async retrieve(id: string, options?: RequestOptions): Promise<ApiEvent> {
    return this.http.request({ method: 'GET', path: `/Events/${seg('id', id)}`, retry: 'repeatable', options });
  }

  /**
   * POST /Events/{id}/resend: a new delivery, to `endpoint` or to every endpoint listening to the
   * event's type. Not retried once the request may have arrived (a repeat queues another delivery).
   */
  async resend(id: string, params: { endpoint?: string } = {}, options?: RequestOptions): Promise<ResentEvent> {
    return this.http.request({ method: 'POST', path: `/Events/${seg('id', id)}/resend`, body: params, retry: 'once', options });
  }
}
