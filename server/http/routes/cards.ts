import { cardView } from '../../domain/cards.js';
import type { Deps } from '../../deps.js';
import { Secret } from '../../secret.js';
import type { Api } from '../api.js';
import { Card, CreateCardBody, CreatedCard, CvvStatus } from '../schemas.js';

/** Section 5: card tokens and CVC sessions, for the merchant's server. */
export function cardRoutes(api: Api, d: Pick<Deps, 'cards' | 'proxy' | 'vault'>): void {
  api.add({
    method: 'post',
    path: '/Cards',
    description:
      'From your server, with your API key: tokenizes a card number (encrypted at rest; only its brand, BIN and last four are ever shown). With `cvv`, also opens a CVC session for it. Test keys accept only the test cards, live keys refuse them.',
    errors: ['invalid_card', 'invalid_cvv', 'cvv_blocked'],
    tag: 'Cards',
    auth: 'merchant',
    summary: 'Tokenize a card (optionally with its CVV)',
    body: CreateCardBody,
    idempotent: true,
    fieldCodes: { number: 'invalid_card', expMonth: 'invalid_card', expYear: 'invalid_card', cvv: 'invalid_cvv' },
    responses: { 201: { description: 'The card token, masked details and the CVC session if a CVV was given.', schema: CreatedCard } },
    handler: async (_req, res, { body, merchant }) => {
      const out = await d.cards.tokenize(merchant, {
        number: new Secret(body.number),
        expMonth: body.expMonth,
        expYear: body.expYear,
        cvv: body.cvv === undefined ? undefined : new Secret(body.cvv),
        holderName: body.holderName,
      });
      res.status(201).json(out);
    },
  });

  api.add({
    method: 'get',
    path: '/Cards/{token}',
    description: "The card's masked details: brand, BIN, last four digits and expiry.",
    tag: 'Cards',
    auth: 'merchant',
    summary: 'Masked card details',
    responses: { 200: { description: 'The card.', schema: Card } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(cardView(await d.cards.get(merchant, params.token!)));
    },
  });

  api.add({
    method: 'delete',
    path: '/Cards/{token}',
    description: 'Deletes the card and every CVC session of it. Refused with `precondition_failed` while a charge of the card is in flight.',
    errors: ['precondition_failed'],
    tag: 'Cards',
    auth: 'merchant',
    summary: 'Delete the card and every CVC session of it',
    responses: { 204: { description: 'Deleted.' } },
    handler: async (_req, res, { merchant, params }) => {
      await d.cards.delete(merchant, params.token!);
      res.status(204).end();
    },
  });

  api.add({
    method: 'get',
    path: '/Cards/{token}/cvv/status',
    description:
      "Whether the card's CVV is blocked (after too many wrong CVVs at the processor), the count of failed attempts, and whether a CVC session is available and until when.",
    tag: 'Cards',
    auth: 'merchant',
    summary: "The card's CVV status: blocking and CVC session",
    responses: { 200: { description: 'The status; never the CVV.', schema: CvvStatus } },
    handler: async (_req, res, { merchant, params }) => {
      const card = await d.cards.get(merchant, params.token!);
      res.json(await d.vault.status(merchant.merchant.id, card));
    },
  });

  api.add({
    method: 'post',
    path: '/Cards/{token}/cvv/unblock',
    description: "Unblocks the card's CVV and resets its count of failed attempts, after you have checked with the cardholder.",
    tag: 'Cards',
    auth: 'merchant',
    summary: "Unblock the card's CVV and reset the count",
    responses: { 204: { description: 'Unblocked.' } },
    handler: async (_req, res, { merchant, params }) => {
      const card = await d.cards.get(merchant, params.token!);
      await d.vault.unblock(merchant.merchant.id, card);
      res.status(204).end();
    },
  });

  api.add({
    method: 'delete',
    path: '/CvcSessions/{id}',
    description:
      'Destroys one CVC session (an encrypted CVV) now. An unknown, expired, used, deleted or foreign CVC session is the same `cvc_session_not_found`, so the answer reveals nothing.',
    errors: ['precondition_failed'],
    tag: 'Cards',
    auth: 'merchant',
    summary: 'Delete one CVC session by id',
    unknownId: 'cvc_session_not_found',
    responses: { 204: { description: 'The CVV is gone from storage.' } },
    handler: async (_req, res, { merchant, params }) => {
      await d.vault.deleteCvcSession(merchant.merchant.id, merchant.mode, params.id!, 'deleted_by_merchant');
      res.status(204).end();
    },
  });

  api.add({
    method: 'post',
    path: '/proxy',
    description:
      "Forwards your request to one of your allowed proxy targets with `${cvv}` and the card placeholders filled in from the vault, and answers with the target's status, headers and body as they came. Name the target, the card and the CVC session in headers; the body is JSON or form-encoded.",
    errors: ['invalid_card', 'cvc_session_missing', 'cvc_session_not_found', 'target_not_allowed', 'processor_error'],
    headers: {
      'X-Proxy-Target': { required: true, description: 'The URL to call: within your allowedProxyTargets.' },
      'X-Card-Token': { description: 'The card (tok_…) whose placeholders the body uses.' },
      'X-Cvc-Session-Id': { description: 'The CVC session (cvc_…) whose CVV fills ${cvv}.' },
    },
    tag: 'Proxy',
    auth: 'merchant',
    rawBody: true,
    summary: 'Forward a request to an allowed target with ${cvv} and card placeholders filled in',
    responses: { 200: { description: "The provider's status, headers (minus hop-by-hop) and body, as they came." } },
    handler: async (req, res, { merchant }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
      const out = await d.proxy.forward(merchant, {
        target: req.get('x-proxy-target'),
        cardToken: req.get('x-card-token'),
        cvcSessionId: req.get('x-cvc-session-id'),
        contentType: req.get('content-type') ?? '',
        headers,
        body: Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '',
      });
      for (const [k, v] of Object.entries(out.headers)) {
        if (!['content-security-policy', 'x-frame-options', 'cache-control', 'x-request-id'].includes(k.toLowerCase())) res.setHeader(k, v);
      }
      res.status(out.status).send(out.body);
    },
  });
}
