import { type HttpClient, type RequestOptions, seg } from '../http.js';
import type { Card, CreateCardParams, CreatedCard, CvvStatus } from '../types.js';

const path = (token: string, rest = '') => `/Cards/${seg('token', token)}${rest}`;

/** Card tokens and their CVVs (API.md section 5). */
export class Cards {
  constructor(private readonly http: HttpClient) {}

  /** POST /Cards: tokenize a card (with its CVV, a CVC session at once). Idempotent: retried safely. */
  async create(params: CreateCardParams, options?: RequestOptions): Promise<CreatedCard> {
    return this.http.request({ method: 'POST', path: '/Cards', body: params, retry: 'repeatable', options });
  }

  /** GET /Cards/{token}: masked details. */
  async retrieve(token: string, options?: RequestOptions): Promise<Card> {
    return this.http.request({ method: 'GET', path: path(token), retry: 'repeatable', options });
  }

  /** DELETE /Cards/{token}: the card and every CVC session of it. */
  async del(token: string, options?: RequestOptions): Promise<void> {
    return this.http.request({ method: 'DELETE', path: path(token), retry: 'repeatable', goneIsSuccess: true, options });
  }

  /** GET /Cards/{token}/cvv/status: blocked or not, failed attempts, the CVC session (never the CVV). */
  async cvvStatus(token: string, options?: RequestOptions): Promise<CvvStatus> {
    return this.http.request({ method: 'GET', path: path(token, '/cvv/status'), retry: 'repeatable', options });
  }

  /** POST /Cards/{token}/cvv/unblock: unblock the CVV and reset the count (a repeat changes nothing more). */
  async unblockCvv(token: string, options?: RequestOptions): Promise<void> {
    return this.http.request({ method: 'POST', path: path(token, '/cvv/unblock'), retry: 'repeatable', options });
  }
}

/** CVC sessions by id (API.md section 5). */
export class CvcSessions {
  constructor(private readonly http: HttpClient) {}

  /** DELETE /CvcSessions/{id}: the CVV is gone from storage when this resolves. */
  async del(id: string, options?: RequestOptions): Promise<void> {
    return this.http.request({ method: 'DELETE', path: `/CvcSessions/${seg('id', id)}`, retry: 'repeatable', goneIsSuccess: true, options });
  }
}
