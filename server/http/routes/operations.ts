import type { Request, Response } from 'express';
import type { Deps } from '../../deps.js';
import type { SessionClaims } from '../../domain/tokens.js';
import { Secret } from '../../secret.js';
import type { Api } from '../api.js';
import { IdempotencyService } from '../../domain/idempotency.js';
import { ChargeBody, CollectCvvBody, EmptyBody, OperationResponse, ThreeDSBody } from '../schemas.js';

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
    tag: 'Operations',
    auth: 'session',
    summary: 'Collect the CVV into the vault',
    body: CollectCvvBody,
    fieldCodes: { cvv: 'invalid_cvv' },
    responses: { 200: { description: 'The CVC session, and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      res.json(await d.operations.collectCvv(call(req, res, token), new Secret(body.cvv)));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/threeDS',
    tag: 'Operations',
    auth: 'session',
    summary: 'Run 3-D Secure (frictionless, or a challenge to open)',
    body: ThreeDSBody,
    responses: {
      200: { description: 'The 3DS result (status C with challengeUrl when a challenge is needed), and the next token.', schema: OperationResponse },
    },
    handler: async (req, res, { body, token }) => {
      res.json(await d.operations.threeDSAuthenticate(call(req, res, token), body));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/threeDS/result',
    tag: 'Operations',
    auth: 'session',
    summary: "The final 3DS result of the session's latest transaction (409 while its challenge is open)",
    body: EmptyBody,
    responses: { 200: { description: 'The final 3DS result, and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      res.json(await d.operations.threeDSResult(call(req, res, token), body));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/charge',
    tag: 'Operations',
    auth: 'session',
    summary: 'Authorize on the processor with the vaulted CVV',
    body: ChargeBody,
    fieldCodes: { amount: 'invalid_amount' },
    responses: { 200: { description: 'The charge result (approved, declined or error), and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      const key = req.get('idempotency-key');
      if (key !== undefined) IdempotencyService.checkKey(key);
      const { response, replayed } = await d.charges.charge({ ...call(req, res, token), body, idempotencyKey: key });
      if (replayed) res.setHeader('Idempotent-Replayed', 'true');
      res.json(response);
    },
  });
}
