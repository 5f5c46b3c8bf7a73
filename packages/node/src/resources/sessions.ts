import { type HttpClient, type RequestOptions, seg } from '../http.js';
import { PagePromise, pageQuery } from '../pagination.js';
import type {
  CreatedSession,
  CreateSessionParams,
  HistoryEntry,
  ListSessionsParams,
  ReissuedToken,
  Session,
  SessionHistory,
  SessionPage,
  ValidateTokenResult,
} from '../types.js';

/** A time filter as the server takes it: ISO 8601 or Unix seconds. */
const timeParam = (t: Date | string | number): string => (t instanceof Date ? t.toISOString() : String(t));

const path = (id: string, rest = '') => `/CvvOperations/${seg('id', id)}${rest}`;

/** Operations sessions, for the merchant's server (API.md section 3). */
export class Sessions {
  constructor(private readonly http: HttpClient) {}

  /** POST /CvvOperations: a session and its first token. Idempotent: retried safely. */
  async create(params: CreateSessionParams, options?: RequestOptions): Promise<CreatedSession> {
    return this.http.request({ method: 'POST', path: '/CvvOperations', body: params, retry: 'repeatable', options });
  }

  /**
   * GET /CvvOperations: the sessions of the key's merchant and mode, newest first. `await` it for
   * the first page (`{ data, hasMore }`), or `for await` over every session (the next page is
   * asked for only when needed, after the last session of the one before).
   */
  list(params: ListSessionsParams = {}, options?: RequestOptions): PagePromise<Session, SessionPage> {
    const filters = {
      status: params.status,
      card: params.card,
      'created[gte]': params.created?.gte !== undefined ? timeParam(params.created.gte) : undefined,
      'created[lt]': params.created?.lt !== undefined ? timeParam(params.created.lt) : undefined,
    };
    return new PagePromise<Session, SessionPage>((previous) =>
      this.http.request<SessionPage>({ method: 'GET', path: `/CvvOperations${pageQuery(previous, params, filters)}`, retry: 'repeatable', options }),
    );
  }

  /**
   * GET /CvvOperations/{id}/history: the session's trail, oldest first (created, each operation
   * and its outcome, each refused call with its error code and request id, reissue, cancel,
   * expiry). `await` it for the first page, or `for await` over every entry.
   */
  history(id: string, params: { limit?: number; startingAfter?: string } = {}, options?: RequestOptions): PagePromise<HistoryEntry, SessionHistory> {
    return new PagePromise<HistoryEntry, SessionHistory>((previous) =>
      this.http.request<SessionHistory>({ method: 'GET', path: `${path(id, '/history')}${pageQuery(previous, params)}`, retry: 'repeatable', options }),
    );
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
