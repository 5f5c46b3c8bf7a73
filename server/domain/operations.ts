import { epochSeconds } from './clock.js';
import type { Clock } from './clock.js';
import type { Keyring } from './keyring.js';
import { Secret } from '../secret.js';
import type { OperationResponse, SessionService } from './sessions.js';
import type { SessionClaims } from './tokens.js';
import { ThreeDSService } from './three-ds.js';
import { Vault } from './vault.js';

/** What every operation call brings: the verified bearer token and the calling page's origin. */
export interface OperationCall {
  token: string;
  claims: SessionClaims;
  origin: string | undefined;
  /** The request's id, for the session's history. */
  requestId?: string | undefined;
}

/**
 * The browser's operations of API.md section 4 but the charge
 * (ChargeService.charge): collectCvv, threeDS and threeDS/result. Each is one
 * read and one transaction (SessionService.runOperation): the work writes
 * nothing itself, it hands back the rows and webhook events to commit with
 * the token rotation.
 */
export class OperationService {
  constructor(
    private readonly sessions: SessionService,
    private readonly vault: Vault,
    private readonly threeDS: ThreeDSService,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
  ) {}

  /** POST /CvvOperations/collectCvv: the CVV into the vault, in a CVC session of this session. */
  async collectCvv(call: OperationCall, cvvInput: Secret<string>): Promise<OperationResponse> {
    let cvv: Secret<string>;
    return this.sessions.runOperation({
      op: 'collectCvv',
      ...call,
      // The replay fingerprint must not hold the CVV itself: a keyed hash of it stands in.
      body: { cvv: this.keyring.mac('fingerprint', `replay-cvv|${cvvInput.expose()}`) },
      prepare: async ({ card, cvvStatus }) => {
        cvv = this.vault.checkCvv(cvvInput, card.brand);
        Vault.assertUnblocked(cvvStatus);
      },
      work: async ({ session, card, merchant }) => {
        const sealed = this.vault.sealCvv({
          merchant,
          card,
          sessionId: session.id,
          cvv,
          retention: session.cvvRetention,
          firstInSession: session.attempts.collectCvv === 0,
        });
        return {
          result: { status: 'succeeded', cvcSession: sealed.view },
          claim: { status: 'succeeded', at: epochSeconds(this.clock.now()) },
          writes: [sealed.write],
          events: [{ type: 'cvv.collected', data: { session: session.id, card: card.token, cvcSession: sealed.view.id, expiresAt: sealed.view.expiresAt } }],
          afterCommit: sealed.logStored,
        };
      },
    });
  }

  /** POST /CvvOperations/threeDS: authenticate (frictionless, or a challenge to open). */
  threeDSAuthenticate(call: OperationCall, body: { browser?: Record<string, unknown> }): Promise<OperationResponse> {
    return this.sessions.runOperation({
      op: 'threeDS',
      ...call,
      body,
      work: ({ session, card, latestTds }) => this.threeDS.authenticate(session, card, body.browser ?? {}, latestTds),
    });
  }

  /** POST /CvvOperations/threeDS/result: the final result of the latest transaction (409 while its challenge is open); not an attempt. */
  threeDSResult(call: OperationCall, body: Record<string, never>): Promise<OperationResponse> {
    return this.sessions.runOperation({
      op: 'threeDS',
      countAttempt: false,
      ...call,
      body: { result: body },
      prepare: async ({ latestTds }) => {
        ThreeDSService.latestFinal(latestTds);
      },
      work: async ({ latestTds }) => this.threeDS.resultWork(ThreeDSService.latestFinal(latestTds)),
    });
  }
}
