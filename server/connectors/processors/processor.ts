import type { Secret } from '../../secret.js';

export interface ChargeRequest {
  chargeId: string;
  /** Sent to the provider so that a resend can never charge twice. */
  idempotencyKey: string;
  mode: 'test' | 'live';
  amount: { value: number; currency: string };
  card: { number: Secret<string>; brand: string; expMonth: number; expYear: number; holderName: Secret<string> | null };
  cvv: Secret<string> | null;
  threeDS: { eci: string | null; authenticationValue: Secret<string> | null; dsTransactionId: string } | null;
  reference: string | null;
}

/** The provider's answer to an authorization. A decline is a value, never an exception. */
export interface ChargeResult {
  status: 'approved' | 'declined';
  authorizationCode: string | null;
  declineCode: string | null;
  /** M match, N no match, P not processed, U unavailable. */
  cvvResult: 'M' | 'N' | 'P' | 'U';
  avsResult: string;
  networkTransactionId: string | null;
}

/** Transport or protocol failure: the outcome at the provider is unknown or there was none. */
export class ProcessorError extends Error {
  constructor(
    message: string,
    readonly retryable = true,
  ) {
    super(message);
    this.name = 'ProcessorError';
  }
}

export interface Processor {
  readonly name: string;
  charge(req: ChargeRequest, signal: AbortSignal): Promise<ChargeResult>;
  /**
   * The outcome of an earlier charge with this idempotency key, if the
   * provider knows it (crash recovery); null when it never saw the charge.
   * Throws when it cannot be asked.
   */
  lookup(idempotencyKey: string, mode: 'test' | 'live', signal: AbortSignal): Promise<ChargeResult | null>;
}
