import type { Request } from 'express';
import { epochSeconds } from '../../domain/clock.js';
import type { Deps } from '../../deps.js';
import { Secret } from '../../secret.js';
import type { Api } from '../api.js';
import { IdempotencyService } from '../../domain/idempotency.js';
import { ChargeBody, CollectCvvBody, EmptyBody, OperationResponse, ThreeDSBody } from '../schemas.js';

const origin = (req: Request) => req.headers.origin;

/** Section 4: operations, for the browser, with the current session token. */
export function operationRoutes(api: Api, d: Deps): void {
  api.add({
    method: 'post', path: '/CvvOperations/collectCvv', tag: 'Operations', auth: 'session',
    summary: 'Collect the CVV into the vault', body: CollectCvvBody, fieldCodes: { cvv: 'invalid_cvv' },
    responses: { 200: { description: 'The CVC session, and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      const cvvInput = new Secret(body.cvv);
      let cvv: Secret<string> | undefined;
      const out = await d.sessions.runOperation({
        op: 'collectCvv', token: token.token, claims: token.claims, origin: origin(req),
        // The replay fingerprint must not hold the CVV itself: a keyed hash of it stands in.
        body: { cvv: d.keyring.mac('fingerprint', `replay-cvv|${body.cvv}`) },
        prepare: async ({ card, merchant }) => {
          cvv = d.vault.checkCvv(cvvInput, card.brand);
          await d.vault.assertNotBlocked(merchant.id, card.fingerprint);
        },
        work: async ({ session, card, merchant }) => {
          // Nothing to replace before the session's first collection (attempts count every collection).
          const cvcSession = await d.vault.storeCvv({ merchant, card, sessionId: session.id, cvv: cvv!, retention: session.cvvRetention, firstInSession: session.attempts.collectCvv === 0 });
          await d.webhooks.emit(merchant.id, session.mode, 'cvv.collected', { session: session.id, card: card.token, cvcSession: cvcSession.id, expiresAt: cvcSession.expiresAt });
          return { result: { status: 'succeeded', cvcSession }, claim: { status: 'succeeded', at: epochSeconds(d.clock.now()) } };
        },
      });
      res.json(out);
    },
  });

  api.add({
    method: 'post', path: '/CvvOperations/threeDS', tag: 'Operations', auth: 'session',
    summary: 'Run 3-D Secure (frictionless, or a challenge to open)', body: ThreeDSBody,
    responses: { 200: { description: 'The 3DS result (status C with challengeUrl when a challenge is needed), and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      res.json(await d.sessions.runOperation({
        op: 'threeDS', token: token.token, claims: token.claims, origin: origin(req), body,
        work: ({ session, card }) => d.threeDS.authenticate(session, card, body.browser ?? {}),
      }));
    },
  });

  api.add({
    method: 'post', path: '/CvvOperations/threeDS/result', tag: 'Operations', auth: 'session',
    summary: "The final 3DS result of the session's latest transaction (409 while its challenge is open)", body: EmptyBody,
    responses: { 200: { description: 'The final 3DS result, and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      let final: Awaited<ReturnType<typeof d.threeDS.latestFinal>>;
      res.json(await d.sessions.runOperation({
        op: 'threeDS', countAttempt: false, token: token.token, claims: token.claims, origin: origin(req), body: { result: body },
        prepare: async ({ session }) => {
          final = await d.threeDS.latestFinal(session.id);
        },
        work: async () => d.threeDS.resultWork(final),
      }));
    },
  });

  api.add({
    method: 'post', path: '/CvvOperations/charge', tag: 'Operations', auth: 'session',
    summary: 'Authorize on the processor with the vaulted CVV', body: ChargeBody, fieldCodes: { amount: 'invalid_amount' },
    responses: { 200: { description: 'The charge result (approved, declined or error), and the next token.', schema: OperationResponse } },
    handler: async (req, res, { body, token }) => {
      const key = req.get('idempotency-key');
      if (key !== undefined) IdempotencyService.checkKey(key);
      const { response, replayed } = await d.charges.charge({ token: token.token, claims: token.claims, body, origin: origin(req), idempotencyKey: key });
      if (replayed) res.setHeader('Idempotent-Replayed', 'true');
      res.json(response);
    },
  });
}
