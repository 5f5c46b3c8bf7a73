import { type HttpClient, type RequestOptions, seg } from '../http.js';
import { PagePromise } from '../pagination.js';
import type { CreatedWebhookEndpoint, CreateWebhookEndpointParams, Merchant, Page, UpdateMerchantParams, WebhookEndpoint } from '../types.js';

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
}
