import type { Request } from 'express';
import { epochSeconds } from '../../domain/clock.js';
import type { Deps } from '../../deps.js';
import { Secret } from '../../secret.js';
import type { Api } from '../api.js';
import { CollectCvvBody, OperationResponse } from '../schemas.js';

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
          const cvcSession = await d.vault.storeCvv({ merchant, card, sessionId: session.id, cvv: cvv!, retention: session.cvvRetention });
          return { result: { status: 'succeeded', cvcSession }, claim: { status: 'succeeded', at: epochSeconds(d.clock.now()) } };
        },
      });
      res.json(out);
    },
  });
}
