import type { Deps } from '../../deps.js';
import type { Api } from '../api.js';
import {
  CreateSessionBody, CreatedSession, Session, TokenResponse, ValidateTokenBody, ValidateTokenResponse,
} from '../schemas.js';

/** Section 3: operations sessions, for the merchant's server. */
export function sessionRoutes(api: Api, d: Deps): void {
  api.add({
    method: 'post', path: '/CvvOperations', tag: 'Sessions', auth: 'merchant', summary: 'Start an operations session',
    body: CreateSessionBody, idempotent: true, fieldCodes: { amount: 'invalid_amount', card: 'invalid_card' },
    responses: { 201: { description: 'The session and its first token.', schema: CreatedSession } },
    handler: async (_req, res, { body, merchant }) => {
      res.status(201).json(await d.sessions.create(merchant, body));
    },
  });

  api.add({
    method: 'post', path: '/CvvOperations/validateToken', tag: 'Sessions', auth: 'merchant',
    summary: 'Verify a token the browser sent back (RFC 7662 style)', body: ValidateTokenBody,
    responses: { 200: { description: 'Whether the token is valid, and what happened.', schema: ValidateTokenResponse } },
    handler: async (_req, res, { body, merchant }) => {
      res.json(await d.sessions.validateToken(merchant, body.token));
    },
  });

  api.add({
    method: 'get', path: '/CvvOperations/{id}', tag: 'Sessions', auth: 'merchant', summary: 'The session as the server knows it',
    responses: { 200: { description: 'The session.', schema: Session } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.sessions.view(await d.sessions.get(merchant, params.id!)));
    },
  });

  api.add({
    method: 'post', path: '/CvvOperations/{id}/token', tag: 'Sessions', auth: 'merchant',
    summary: 'Reissue: a new current token; every earlier one stops working',
    responses: { 200: { description: 'The new token.', schema: TokenResponse } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.sessions.reissue(merchant, params.id!));
    },
  });

  api.add({
    method: 'post', path: '/CvvOperations/{id}/cancel', tag: 'Sessions', auth: 'merchant',
    summary: 'Cancel the session and delete its CVV at once',
    responses: { 200: { description: 'The canceled session.', schema: Session } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(await d.sessions.view(await d.sessions.cancel(merchant, params.id!)));
    },
  });

  api.add({
    method: 'delete', path: '/CvvOperations/{id}/cvv', tag: 'Sessions', auth: 'merchant',
    summary: "Delete the session's CVC session now",
    responses: { 204: { description: 'The CVV is gone from storage.' } },
    handler: async (_req, res, { merchant, params }) => {
      await d.sessions.deleteCvv(merchant, params.id!);
      res.status(204).end();
    },
  });
}
