import type { Deps } from '../../deps.js';
import type { Api } from '../api.js';
import { IdempotencyService } from '../../domain/idempotency.js';
import { requestIdOf } from '../middleware.js';
import {
  CreateSessionBody,
  CreatedSession,
  HistoryQuery,
  ListSessionsQuery,
  SessionHistory,
  Session,
  SessionList,
  TokenResponse,
  ValidateTokenBody,
  ValidateTokenResponse,
  type z,
} from '../schemas.js';

/** Section 3: operations sessions, for the merchant's server. */
export function sessionRoutes(api: Api, d: Pick<Deps, 'sessions'>): void {
  api.add({
    method: 'post',
    path: '/CvvOperations',
    description:
      "From your server, with your API key: starts an operations session for a stored card. The session fixes which operations the browser may run (`collectCvv`, `threeDS`, `charge`), the most it may charge, whether 3-D Secure and a CVV are required, how many attempts each operation has and how long the session lives. The answer carries the first session token and the hosted form's URL; hand the token to the page. Send an `Idempotency-Key` so a retried request returns the same session.",
    errors: ['invalid_card', 'invalid_amount'],
    tag: 'Sessions',
    auth: 'merchant',
    summary: 'Start an operations session',
    // The Idempotency-Key's record is read and written by the use case, in its own read and transaction.
    body: CreateSessionBody,
    idempotent: 'in-use-case',
    fieldCodes: { amount: 'invalid_amount', card: 'invalid_card' },
    responses: { 201: { description: 'The session and its first token.', schema: CreatedSession } },
    handler: async (req, res, { body, merchant }) => {
      const key = req.get('idempotency-key');
      if (key !== undefined) IdempotencyService.checkKey(key);
      const r = await d.sessions.create(merchant, body, { ...(key !== undefined ? { idempotencyKey: key } : {}), requestId: requestIdOf(res) });
      if (r.replayed) res.setHeader('Idempotent-Replayed', 'true');
      res.status(r.status).json(r.body);
    },
  });

  api.add({
    method: 'get',
    path: '/CvvOperations',
    description:
      "The sessions of the calling key's mode, newest first, in pages (`limit`, `starting_after`), optionally filtered by status, card and creation time.",
    tag: 'Sessions',
    auth: 'merchant',
    summary: "The key's sessions in its mode, newest first (Stripe-style pages)",
    query: ListSessionsQuery,
    responses: { 200: { description: 'A page of sessions.', schema: SessionList } },
    handler: async (_req, res, { merchant, query }) => {
      const q = query as z.infer<typeof ListSessionsQuery>;
      res.json(
        await d.sessions.list(merchant, {
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.starting_after !== undefined ? { startingAfter: q.starting_after } : {}),
          ...(q.status !== undefined ? { status: q.status } : {}),
          ...(q.card !== undefined ? { card: q.card } : {}),
          ...(q['created[gte]'] !== undefined ? { createdGte: q['created[gte]'] } : {}),
          ...(q['created[lt]'] !== undefined ? { createdLt: q['created[lt]'] } : {}),
        }),
      );
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/validateToken',
    description:
      "From your server, with your API key: checks a session token the browser sent back (RFC 7662 style). A token that verifies answers `valid: true`, its claims, whether it is still the session's current token and the session as the server knows it; a token that does not verify answers `valid: false` and why (never an error status). Trust the outcome of a payment only from this answer or from an offline verification with the JWKS, never from the page.",
    tag: 'Sessions',
    auth: 'merchant',
    summary: 'Verify a token the browser sent back (RFC 7662 style)',
    body: ValidateTokenBody,
    responses: { 200: { description: 'Whether the token is valid, and what happened.', schema: ValidateTokenResponse } },
    handler: async (_req, res, { body, merchant }) => {
      res.json(await d.sessions.validateToken(merchant, body.token));
    },
  });

  api.add({
    method: 'get',
    path: '/CvvOperations/{id}',
    description: "The session as the server knows it: status, each operation's result, attempts used and left, whether a CVV is held and until when.",
    tag: 'Sessions',
    auth: 'merchant',
    summary: 'The session as the server knows it',
    responses: { 200: { description: 'The session.', schema: Session } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.sessions.view(await d.sessions.get(merchant, params.id!)));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/{id}/token',
    description:
      'Issues a new current token for the session; every earlier token stops working at once. For a page that lost its token (a reload); the session, its results and its attempts are unchanged.',
    errors: ['session_completed', 'session_canceled', 'session_expired', 'token_superseded', 'precondition_failed'],
    tag: 'Sessions',
    auth: 'merchant',
    summary: 'Reissue: a new current token; every earlier one stops working',
    responses: { 200: { description: 'The new token.', schema: TokenResponse } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.sessions.reissue(merchant, params.id!, requestIdOf(res)));
    },
  });

  api.add({
    method: 'post',
    path: '/CvvOperations/{id}/cancel',
    description:
      'Cancels the session: its tokens stop working and its CVV is destroyed at once. A session that already ended answers with the status it ended in.',
    errors: ['session_completed', 'session_canceled', 'session_expired', 'precondition_failed'],
    tag: 'Sessions',
    auth: 'merchant',
    summary: 'Cancel the session and delete its CVV at once',
    responses: { 200: { description: 'The canceled session.', schema: Session } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.sessions.view(await d.sessions.cancel(merchant, params.id!, requestIdOf(res))));
    },
  });

  api.add({
    method: 'get',
    path: '/CvvOperations/{id}/history',
    description:
      "The session's trail, oldest first: its creation, each operation with its outcome, each refused call with its error code, each reissue, the cancel or the expiry, and a charge settled by recovery. Each entry names the request that made it (its X-Request-Id). Never a CVV, a card number or a token.",
    tag: 'Sessions',
    auth: 'merchant',
    summary: "The session's trail, oldest first: created, each operation and its outcome, each refused call, reissue, cancel, expiry",
    query: HistoryQuery,
    responses: { 200: { description: 'A page of the trail.', schema: SessionHistory } },
    handler: async (_req, res, { merchant, params, query }) => {
      const q = query as z.infer<typeof HistoryQuery>;
      res.json(
        await d.sessions.history(merchant, params.id!, {
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.starting_after !== undefined ? { startingAfter: q.starting_after } : {}),
        }),
      );
    },
  });

  api.add({
    method: 'delete',
    path: '/CvvOperations/{id}/cvv',
    description: "Destroys the session's CVC session (its encrypted CVV) now, before its lifetime ends.",
    errors: ['cvc_session_not_found', 'precondition_failed'],
    tag: 'Sessions',
    auth: 'merchant',
    summary: "Delete the session's CVC session now",
    responses: { 204: { description: 'The CVV is gone from storage.' } },
    handler: async (_req, res, { merchant, params }) => {
      await d.sessions.deleteCvv(merchant, params.id!);
      res.status(204).end();
    },
  });
}
