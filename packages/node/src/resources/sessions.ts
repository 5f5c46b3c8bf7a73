import { type HttpClient, type RequestOptions, seg } from '../http.js';
import type { CreatedSession, CreateSessionParams, ReissuedToken, Session, ValidateTokenResult } from '../types.js';

const path = (id: string, rest = '') => `/CvvOperations/${seg('id', id)}${rest}`;

/** Operations sessions, for the merchant's server (API.md section 3). */
export class Sessions {
  constructor(private readonly http: HttpClient) {}

  /** POST /CvvOperations: a session and its first token. Idempotent: retried safely. */
  async create(params: CreateSessionParams, options?: RequestOptions): Promise<CreatedSession> {
    return this.http.request({ method: 'POST', path: '/CvvOperations', body: params, retry: 'repeatable', options });
  }

  /** GET /CvvOperations/{id}: the session as the server knows it. */
  async retrieve(id: string, options?: RequestOptions): Promise<Session> {
    return this.http.request({ method: 'GET', path: path(id), retry: 'repeatable', options });
  }

  /** POST /CvvOperations/{id}/cancel: ends the session and deletes its CVV. Canceling twice answers the same. */
  async cancel(id: string, options?: RequestOptions): Promise<Session> {
    return this.http.request({ method: 'POST', path: path(id, '/cancel'), retry: 'repeatable', options });
  }

  /**
   * POST /CvvOperations/{id}/token: a new current token; every earlier one stops working. Not
   * retried once the request may have reached the server (each call rotates again): on a
   * `connection_error` or `timeout`, call it again yourself; the token you get last is the one
   * that works.
   */
  async reissue(id: string, options?: RequestOptions): Promise<ReissuedToken> {
    return this.http.request({ method: 'POST', path: path(id, '/token'), retry: 'once', options });
  }

  /** DELETE /CvvOperations/{id}/cvv: the session's CVV is gone from storage when this resolves. */
  async deleteCvv(id: string, options?: RequestOptions): Promise<void> {
    return this.http.request({ method: 'DELETE', path: path(id, '/cvv'), retry: 'repeatable', goneIsSuccess: true, options });
  }

  /**
   * POST /CvvOperations/validateToken: the server's authoritative answer about a token the
   * browser sent back (valid, current, its claims and the session). Read-only: retried safely.
   */
  async validateToken(token: string, options?: RequestOptions): Promise<ValidateTokenResult> {
    return this.http.request({ method: 'POST', path: '/CvvOperations/validateToken', body: { token }, retry: 'repeatable', options });
  }
}
