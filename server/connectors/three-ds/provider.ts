import type { Secret } from '../../secret.js';

/** EMV 3DS transaction status: authenticated, attempted, not authenticated, unavailable, rejected, challenge required. */
export type ThreeDSStatus = 'Y' | 'A' | 'N' | 'U' | 'R' | 'C';

/** A final 3DS outcome. The CAVV is a `Secret`: it leaves the server only in the operation's own result. */
export interface ThreeDSResult {
  status: Exclude<ThreeDSStatus, 'C'>;
  eci: string | null;
  authenticationValue: Secret<string> | null;
  dsTransactionId: string;
  version: string;
}

export interface ThreeDSRequest {
  transactionId: string;
  mode: 'test' | 'live';
  card: { number: Secret<string>; brand: string; expMonth: number; expYear: number };
  amount: { value: number; currency: string } | null;
  browser: Record<string, unknown>;
}

export type AuthenticateOutcome = { kind: 'frictionless'; result: ThreeDSResult } | { kind: 'challenge'; dsTransactionId: string; version: string };

/**
 * A 3-D Secure provider (a 3DS server / directory server connection).
 * Failures to reach it throw; an authentication that fails is a result (`N`, `R`, `U`).
 */
export interface ThreeDSProvider {
  readonly name: string;
  authenticate(req: ThreeDSRequest, signal: AbortSignal): Promise<AuthenticateOutcome>;
  /** The cardholder answered the challenge with `code`. */
  completeChallenge(req: ThreeDSRequest & { dsTransactionId: string; code: string }, signal: AbortSignal): Promise<ThreeDSResult>;
}
