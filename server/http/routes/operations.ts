import type { Request, Response } from 'express';
import type { Deps } from '../../deps.js';
import type { SessionClaims } from '../../domain/tokens.js';
import { Secret } from '../../secret.js';
import type { Api } from '../api.js';
import { IdempotencyService } from '../../domain/idempotency.js';
import { ChargeBody, ChargeResponse, CollectCvvBody, CollectCvvResponse, EmptyBody, ThreeDSBody, ThreeDSResponse, ThreeDSResultResponse } from '../schemas.js';

const origin = (req: Request) => req.headers.origin;
import { requestIdOf } from '../middleware.js';

/** Section 4: operations, for the browser, with the current session token. Each route parses, calls one use case, answers. */
export function operationRoutes(api: Api, d: Pick<Deps, 'charges' | 'operations'>): void {
  const call = (req: Request, res: Response, token: { token: string; claims: SessionClaims }) => ({
    token: token.token,
    claims: token.claims,
    origin: origin(req),
    requestId: requestIdOf(res),
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/collectCvv',
    description:
      'From the browser, with the current session token: stores the CVV, encrypted, in a CVC session bound to the card and the session, and rotates the token. The CVV must be exactly 3 ASCII digits, or 4 for American Express; anything else is `invalid_cvv` and counts no attempt.',
    errors: ['invalid_cvv', 'cvv_blocked', 'precondition_failed'],
    tag: 'Operations',
    auth: 'session',
    summary: 'Collect the CVV into the vault',
    body: CollectCvvBody,
    fieldCodes: { cvv: 'invalid_cvv' },
    responses: { 200: { description: 'The CVC session, and the next token.', schema: CollectCvvResponse } },
    handler: async (req, res, { body, token }) => {
      res.json(await d.operations.collectCvv(call(req, res, token), new Secret(body.cvv)));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/threeDS',
    description:
      "From the browser, with the current session token: runs 3-D Secure for the session's card and amount, and rotates the token. A frictionless outcome comes at once (`Y`, `A`, `N`, `U`, `R`); `C` means a challenge: open `challengeUrl` (the SDK does it in an overlay), then call threeDS/result. The browser fields improve the issuer's risk assessment; all are optional.",
    errors: ['threeds_provider_error', 'precondition_failed'],
    tag: 'Operations',
    auth: 'session',
    summary: 'Run 3-D Secure (frictionless, or a challenge to open)',
    body: ThreeDSBody,
    responses: {
      200: { description: 'The 3DS result (status C with challengeUrl when a challenge is needed), and the next token.', schema: ThreeDSResponse },
    },
    handler: async (req, res, { body, token }) => {
      res.json(await d.operations.threeDSAuthenticate(call(req, res, token), body));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/threeDS/result',
    description:
      "From the browser, with the current session token, after a challenge: the final result of the session's latest 3-D Secure transaction, and the next token. `precondition_failed` while the challenge is still open (wait for the challenge page's message, then call again).",
    errors: ['precondition_failed'],
    tag: 'Operations',
    auth: 'session',
    summary: "The final 3DS result of the session's latest transaction (409 while its challenge is open)",
    body: EmptyBody,
    responses: { 200: { description: 'The final 3DS result, and the next token.', schema: ThreeDSResultResponse } },
    handler: async (req, res, { body, token }) => {
      res.json(await d.operations.threeDSResult(call(req, res, token), body));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/charge',
    description:
      "From the browser, with the current session token: authorizes the charge on the merchant's processor with the vaulted CVV, and rotates the token. The amount defaults to the session's; it may be less, never more, never another currency. A declined or failed charge is still a 200 (its `status` says so) and counts an attempt. Send an `Idempotency-Key`: a retry then gets the first outcome and the card is never charged twice, even across a server crash.",
    errors: ['invalid_amount', 'precondition_failed', 'cvv_blocked', 'cvc_session_not_found', 'processor_error'],
    idempotent: 'in-use-case',
    tag: 'Operations',
    auth: 'session',
    summary: 'Authorize on the processor with the vaulted CVV',
    body: ChargeBody,
    fieldCodes: { amount: 'invalid_amount' },
    responses: { 200: { description: 'The charge result (approved, declined or error), and the next token.', schema: ChargeResponse } },
    handler: async (req, res, { body, token }) => {
      const key = req.get('idempotency-key');
      if (key !== undefined) IdempotencyService.checkKey(key);
      const { response, replayed } = await d.charges.charge({ ...call(req, res, token), body, idempotencyKey: key });
      if (replayed) res.setHeader('Idempotent-Replayed', 'true');
      res.json(response);
    },
  });
}
