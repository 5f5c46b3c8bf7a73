import { isoTime } from '../../domain/clock.js';
import type { Deps } from '../../deps.js';
import type { MerchantRecord } from '../../store/store.js';
import type { Api } from '../api.js';
import { AppError } from '../../errors.js';
import {
  CreateWebhookEndpointBody,
  CreatedWebhookEndpoint,
  DeliveryList,
  Event,
  EventList,
  ListDeliveriesQuery,
  ListEventsQuery,
  Merchant,
  PatchMerchantBody,
  ResendEventBody,
  ResendEventResponse,
  WebhookEndpoint,
  z,
} from '../schemas.js';

function merchantView(m: MerchantRecord) {
  return {
    id: m.id,
    name: m.name,
    mode: m.mode,
    allowedOrigins: m.allowedOrigins,
    allowedProxyTargets: m.allowedProxyTargets,
    // The processor's headers and body may hold the provider's credentials: only its type and URL are shown.
    processor: {
      type: (m.processor as { type?: string }).type ?? 'simulator',
      ...((m.processor as { url?: string }).url ? { url: (m.processor as { url?: string }).url } : {}),
    },
    cvvBlockThreshold: m.cvvBlockThreshold,
    cvcSessionTtlSeconds: m.cvcSessionTtlSeconds,
    createdAt: isoTime(m.createdAt),
    updatedAt: isoTime(m.updatedAt),
  };
}

/** Section 8: the merchant's own settings. */
export function merchantRoutes(api: Api, d: Pick<Deps, 'merchants' | 'origins' | 'webhooks'>): void {
  api.add({
    method: 'get',
    path: '/Merchant',
    description:
      "Your settings in the calling key's mode: allowed origins and proxy targets, the processor, the CVV block threshold and the CVC session lifetime. Test and live settings are kept apart.",
    tag: 'Merchant',
    auth: 'merchant',
    summary: "The calling merchant's settings, of the calling key's mode",
    responses: { 200: { description: 'The merchant.', schema: Merchant } },
    handler: async (_req, res, { merchant }) => {
      res.json(merchantView(merchant.merchant));
    },
  });
  api.add({
    method: 'patch',
    path: '/Merchant',
    description:
      "Changes your settings in the calling key's mode only. Origins must be exact origins, proxy targets https URLs; the processor's URLs must be within the proxy targets and, in live mode, public addresses.",
    errors: ['target_not_allowed'],
    tag: 'Merchant',
    auth: 'merchant',
    summary: "Change allowed origins, proxy targets, the processor and CVV settings, of the calling key's mode only",
    body: PatchMerchantBody,
    responses: { 200: { description: 'The merchant as it is now.', schema: Merchant } },
    handler: async (_req, res, { merchant, body }) => {
      const next = await d.merchants.updateSettings(merchant, body);
      await d.origins.refresh();
      res.json(merchantView(next));
    },
  });

  api.add({
    method: 'post',
    path: '/WebhookEndpoints',
    description:
      "Adds a webhook endpoint in the calling key's mode, for the event types listed. Its signing secret is in this answer only: store it to verify the Cvvops-Signature header of each delivery.",
    tag: 'Webhooks',
    auth: 'merchant',
    summary: 'Add a webhook endpoint (its secret is shown once)',
    body: CreateWebhookEndpointBody,
    responses: { 201: { description: 'The endpoint and its signing secret.', schema: CreatedWebhookEndpoint } },
    handler: async (_req, res, { merchant, body }) => {
      const { endpoint, secret } = await d.webhooks.createEndpoint(merchant.merchant.id, merchant.mode, body.url, body.events);
      res.status(201).json({ ...d.webhooks.view(endpoint), secret });
    },
  });
  api.add({
    method: 'get',
    path: '/WebhookEndpoints',
    description: "The webhook endpoints of the calling key's mode, without their secrets.",
    tag: 'Webhooks',
    auth: 'merchant',
    summary: 'The webhook endpoints (without secrets)',
    responses: { 200: { description: 'The endpoints.', schema: z.object({ data: z.array(WebhookEndpoint) }) } },
    handler: async (_req, res, { merchant }) => {
      res.json({ data: (await d.webhooks.listEndpoints(merchant.merchant.id, merchant.mode)).map((e) => d.webhooks.view(e)) });
    },
  });
  api.add({
    method: 'delete',
    path: '/WebhookEndpoints/{id}',
    description: 'Removes a webhook endpoint: its pending deliveries are dropped.',
    tag: 'Webhooks',
    auth: 'merchant',
    summary: 'Remove a webhook endpoint',
    responses: { 204: { description: 'Removed.' } },
    handler: async (_req, res, { merchant, params }) => {
      if (!(await d.webhooks.deleteEndpoint(merchant.merchant.id, merchant.mode, params.id!))) throw new AppError('not_found', 'No such webhook endpoint.');
      res.status(204).end();
    },
  });

  api.add({
    method: 'get',
    path: '/Events',
    description:
      "The events of the calling key's mode, newest first, in pages (kept 30 days), optionally of one type: what the webhooks delivered, or would have.",
    tag: 'Webhooks',
    auth: 'merchant',
    summary: "The key's events in its mode, newest first (kept 30 days; Stripe-style pages)",
    query: ListEventsQuery,
    responses: { 200: { description: 'A page of events.', schema: EventList } },
    handler: async (_req, res, { merchant, query }) => {
      const q = query as z.infer<typeof ListEventsQuery>;
      res.json(
        await d.webhooks.listEvents(merchant.merchant.id, merchant.mode, {
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.starting_after !== undefined ? { startingAfter: q.starting_after } : {}),
          ...(q.type !== undefined ? { type: q.type } : {}),
        }),
      );
    },
  });
  api.add({
    method: 'get',
    path: '/Events/{id}',
    description: 'One event: the payload its webhook deliveries carry.',
    tag: 'Webhooks',
    auth: 'merchant',
    summary: 'One event: the payload its webhook deliveries carry',
    responses: { 200: { description: 'The event.', schema: Event } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.webhooks.getEvent(merchant.merchant.id, merchant.mode, params.id!));
    },
  });

  api.add({
    method: 'get',
    path: '/WebhookEndpoints/{id}/deliveries',
    description: "An endpoint's deliveries, newest first: each with its event, attempts, the receiver's last status code and the next try while pending.",
    tag: 'Webhooks',
    auth: 'merchant',
    summary: "An endpoint's deliveries, newest first: each with its event, attempts, last status code and next try",
    query: ListDeliveriesQuery,
    responses: { 200: { description: 'A page of deliveries.', schema: DeliveryList } },
    handler: async (_req, res, { merchant, params, query }) => {
      const q = query as z.infer<typeof ListDeliveriesQuery>;
      res.json(
        await d.webhooks.listDeliveries(merchant.merchant.id, merchant.mode, params.id!, {
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.starting_after !== undefined ? { startingAfter: q.starting_after } : {}),
        }),
      );
    },
  });
  api.add({
    method: 'post',
    path: '/Events/{id}/resend',
    description:
      'Queues a new delivery of an event, to one endpoint or to every endpoint of its mode that listens to its type: for a receiver that was down longer than the retries last, or lost what it received.',
    tag: 'Webhooks',
    auth: 'merchant',
    summary: 'Queue a new delivery of an event (to one endpoint, or to every endpoint listening to its type)',
    body: ResendEventBody,
    responses: { 200: { description: 'The new deliveries.', schema: ResendEventResponse } },
    handler: async (_req, res, { merchant, params, body }) => {
      res.json(await d.webhooks.resend(merchant.merchant.id, merchant.mode, params.id!, body.endpoint));
    },
  });
}
