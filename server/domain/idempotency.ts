import { AppError } from '../errors.js';
import type { IdempotencyRecord, NewIdempotencyRecord, Store } from '../store/store.js';
import type { Clock } from './clock.js';
import type { Keyring } from './keyring.js';

export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;
const KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

export type Reservation = { kind: 'new' } | { kind: 'replay'; status: number; body: unknown };

/**
 * Idempotency-Key: scoped to merchant and endpoint, kept 24 hours. The
 * request is fingerprinted with a keyed hash (bodies may hold card numbers);
 * stored responses are encrypted (they may hold session tokens).
 */
export class IdempotencyService {
  constructor(
    private readonly store: Pick<Store, 'idempotency'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
  ) {}

  static checkKey(key: string): void {
    if (!KEY_SHAPE.test(key)) throw new AppError('invalid_request', 'Idempotency-Key must be 1-255 printable ASCII characters.');
  }

  fingerprint(endpoint: string, body: unknown): string {
    return this.keyring.mac('idempotency', `${endpoint}\n${JSON.stringify(body ?? null)}`);
  }

  async reserve(merchantId: string, endpoint: string, key: string, requestHash: string): Promise<Reservation> {
    for (let waited = 0; ; waited += 50) {
      const now = this.clock.now();
      const found = await this.store.idempotency.reserve({ merchantId, endpoint, key, requestHash, now, expiresAt: now + IDEMPOTENCY_TTL_MS });
      if (!found) return { kind: 'new' };
      const done = this.#answered(found, merchantId, endpoint, key, requestHash);
      if (done) return done;
      // The first request with this key is still running: wait for its outcome a little.
      if (waited >= 5000) throw new AppError('idempotency_key_reused', 'A request with this Idempotency-Key is still in progress.', { retryAfter: 1 });
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The first response kept in `found`, or null while its request is still being handled; 409 for a different request. */
  #answered(found: IdempotencyRecord, merchantId: string, endpoint: string, key: string, requestHash: string): Reservation | null {
    if (found.requestHash !== requestHash) throw new AppError('idempotency_key_reused');
    if (found.status === null || !found.responseSealed) return null;
    const body: unknown = JSON.parse(this.keyring.open('idempotency', found.responseSealed, this.#aad(merchantId, endpoint, key)).toString('utf8'));
    return { kind: 'replay', status: found.status, body };
  }

  /**
   * For a use case that writes its Idempotency-Key record in its own
   * transaction (POST /CvvOperations): the record a key already has, as the
   * replay of its first response (409 for a different request, or while the
   * first is still being handled).
   */
  replay(found: IdempotencyRecord, merchantId: string, endpoint: string, key: string, requestHash: string): { status: number; body: unknown } {
    const done = this.#answered(found, merchantId, endpoint, key, requestHash);
    if (!done || done.kind !== 'replay')
      throw new AppError('idempotency_key_reused', 'A request with this Idempotency-Key is still in progress.', { retryAfter: 1 });
    return { status: done.status, body: done.body };
  }

  /** The completed record of a keyed request's response, for the transaction that writes what it created. */
  record(merchantId: string, endpoint: string, key: string, requestHash: string, status: number, body: unknown): NewIdempotencyRecord {
    const now = this.clock.now();
    return {
      endpoint,
      key,
      requestHash,
      status,
      now,
      expiresAt: now + IDEMPOTENCY_TTL_MS,
      responseSealed: this.keyring.seal('idempotency', JSON.stringify(body), this.#aad(merchantId, endpoint, key)),
    };
  }

  async complete(merchantId: string, endpoint: string, key: string, status: number, body: unknown): Promise<void> {
    const sealed = this.keyring.seal('idempotency', JSON.stringify(body), this.#aad(merchantId, endpoint, key));
    await this.store.idempotency.complete({ merchantId, endpoint, key, status, responseSealed: sealed });
  }

  async release(merchantId: string, endpoint: string, key: string): Promise<void> {
    await this.store.idempotency.release({ merchantId, endpoint, key });
  }

  #aad(merchantId: string, endpoint: string, key: string): string {
    return `idem|${merchantId}|${endpoint}|${key}`;
  }
}
