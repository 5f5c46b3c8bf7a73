import { isoTime } from '../../domain/clock.js';
import type { Deps } from '../../deps.js';
import type { MerchantRecord } from '../../store/store.js';
import type { Api } from '../api.js';
import { Merchant, PatchMerchantBody } from '../schemas.js';

function merchantView(m: MerchantRecord) {
  return {
    id: m.id, name: m.name, allowedOrigins: m.allowedOrigins, allowedProxyTargets: m.allowedProxyTargets,
    processor: { type: (m.processor as { type?: string }).type ?? 'simulator' },
    cvvBlockThreshold: m.cvvBlockThreshold, cvcSessionTtlSeconds: m.cvcSessionTtlSeconds,
    createdAt: isoTime(m.createdAt), updatedAt: isoTime(m.updatedAt),
  };
}

/** Section 8: the merchant's own settings. */
export function merchantRoutes(api: Api, d: Deps): void {
  api.add({
    method: 'get', path: '/Merchant', tag: 'Merchant', auth: 'merchant', summary: "The calling merchant's settings",
    responses: { 200: { description: 'The merchant.', schema: Merchant } },
    handler: async (_req, res, { merchant }) => {
      res.json(merchantView(merchant.merchant));
    },
  });
  api.add({
    method: 'patch', path: '/Merchant', tag: 'Merchant', auth: 'merchant', summary: 'Change allowed origins, proxy targets and CVV settings',
    body: PatchMerchantBody,
    responses: { 200: { description: 'The merchant as it is now.', schema: Merchant } },
    handler: async (_req, res, { merchant, body }) => {
      const next = await d.merchants.updateSettings(merchant, body);
      await d.origins.refresh();
      res.json(merchantView(next));
    },
  });
}
