import { assertReachableTarget, outbound, OutboundError, type OutboundResponse } from '../connectors/outbound.js';
import { fill, jsonEscape, type Placeholder } from '../connectors/processors/http.js';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CardRecord } from '../store/store.js';
import type { Store } from '../store/store.js';
import type { CardService } from './cards.js';
import type { Clock } from './clock.js';
import type { MerchantContext } from './merchants.js';
import { targetAllowed } from './targets.js';
import type { Vault } from './vault.js';

/** Headers never forwarded: hop-by-hop (RFC 9110 7.6.1), our own credentials and control headers. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const NOT_FORWARDED = new Set([
  ...HOP_BY_HOP,
  'host',
  'authorization',
  'content-length',
  'cookie',
  'x-card-token',
  'x-cvc-session-id',
  'x-request-id',
  'origin',
  'referer',
  'accept-encoding',
  'expect',
]);

export interface ProxyRequest {
  target: string | undefined;
  cardToken: string | undefined;
  cvcSessionId: string | undefined;
  contentType: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * POST /proxy: the merchant's request forwarded to an allowed target with
 * `${…}` placeholders filled on the server (the CVV from a CVC session,
 * consumed per its retention). `X-Proxy-Authorization` is forwarded as the
 * provider's `Authorization` (ours is the merchant's API key and never leaves).
 */
export class ProxyService {
  constructor(
    private readonly store: Pick<Store, 'cards' | 'cvc'>,
    private readonly cards: CardService,
    private readonly vault: Vault,
    private readonly clock: Clock,
    private readonly opts: { allowPrivateTargets: boolean; log?: Logger },
  ) {}

  async forward(m: MerchantContext, req: ProxyRequest): Promise<OutboundResponse> {
    if (!req.target) throw new AppError('invalid_request', 'X-Proxy-Target is required.');
    let url: URL;
    try {
      url = new URL(req.target);
    } catch {
      throw new AppError('invalid_request', 'X-Proxy-Target must be a URL.');
    }
    const privateOk = this.opts.allowPrivateTargets && m.mode === 'test';
    if ((url.protocol !== 'https:' && !(privateOk && url.protocol === 'http:')) || !targetAllowed(url.href, m.merchant.allowedProxyTargets)) {
      throw new AppError('target_not_allowed');
    }
    const uses = (name: Placeholder) => req.body.includes(`\${${name}}`);
    const needsCvv = uses('cvv');
    const needsCard = (['cardNumber', 'expMonth', 'expYear', 'holderName'] as const).some(uses);
    if (needsCvv && !req.cvcSessionId) throw new AppError('cvc_session_missing', 'The body uses ${cvv}: X-Cvc-Session-Id is required.');
    const now = this.clock.now();
    const cvc = req.cvcSessionId ? await this.store.cvc.getLive(m.merchant.id, m.mode, req.cvcSessionId, now) : null;
    if (req.cvcSessionId && !cvc) throw new AppError('cvc_session_not_found');
    let card: CardRecord | null = null;
    const token = req.cardToken ?? cvc?.cardToken;
    if (token) card = await this.store.cards.get(m.merchant.id, m.mode, token);
    if (req.cardToken && !card) throw new AppError('invalid_card', 'No such card.');
    if (cvc && card && cvc.cardToken !== card.token) throw new AppError('cvc_session_not_found');
    if (needsCard && !card) throw new AppError('invalid_card', 'The body uses card placeholders: X-Card-Token is required.');

    const values: Partial<Record<Placeholder, string>> = {};
    if (card) {
      const open = this.cards.open(card);
      Object.assign(values, {
        cardNumber: open.number.expose(),
        holderName: open.holderName?.expose() ?? '',
        expMonth: String(card.expMonth).padStart(2, '0'),
        expYear: String(card.expYear).padStart(4, '0'),
      });
    }
    try {
      await assertReachableTarget(url, privateOk);
    } catch {
      throw new AppError('target_not_allowed', 'The target resolves to an address that is not allowed.');
    }
    if (needsCvv && cvc) values.cvv = (await this.vault.useCvv(cvc, 'proxy')).expose();
    const escape = /json/i.test(req.contentType) ? jsonEscape : /x-www-form-urlencoded/i.test(req.contentType) ? encodeURIComponent : (v: string) => v;
    const body = fill(req.body, values, escape);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      const key = k.toLowerCase();
      if (key === 'x-proxy-authorization') headers.authorization = v;
      else if (!NOT_FORWARDED.has(key) && !key.startsWith('x-proxy-')) headers[key] = v;
    }
    try {
      const res = await outbound({ method: 'POST', url: url.href, headers, body, timeoutMs: 15_000, allowPrivate: privateOk });
      this.opts.log?.info(
        {
          audit: true,
          event: 'proxy.forwarded',
          merchantId: m.merchant.id,
          target: url.origin,
          status: res.status,
          cvcSession: needsCvv ? cvc?.id : undefined,
        },
        'proxy request forwarded',
      );
      return {
        ...res,
        headers: Object.fromEntries(Object.entries(res.headers).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase()) && k.toLowerCase() !== 'content-length')),
      };
    } catch (e) {
      if (e instanceof OutboundError && e.kind === 'refused')
        throw new AppError('target_not_allowed', 'The target resolves to an address that is not allowed.');
      throw new AppError('processor_error', 'The target could not be reached.', { cause: e });
    }
  }
}
