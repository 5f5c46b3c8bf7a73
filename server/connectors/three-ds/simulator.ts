import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { findTestCard } from '../../test-cards.js';
import { Secret } from '../../secret.js';
import type { AuthenticateOutcome, ThreeDSProvider, ThreeDSRequest, ThreeDSResult } from './provider.js';

const VERSION = '2.2.0';

/** A CAVV-shaped value: 20 random bytes, base64 (what an ACS would return). */
const cavv = () => new Secret(randomBytes(20).toString('base64'));

/**
 * The built-in ACS simulator: deterministic from the test-card table of
 * API.md section 11. Cards it does not know are `U` (unavailable): it never
 * pretends to authenticate a real card.
 */
export class SimulatorThreeDS implements ThreeDSProvider {
  readonly name = 'simulator';

  async authenticate(req: ThreeDSRequest): Promise<AuthenticateOutcome> {
    const card = findTestCard(req.card.number.expose());
    const dsTransactionId = randomUUID();
    if (!card) return { kind: 'frictionless', result: { status: 'U', eci: null, authenticationValue: null, dsTransactionId, version: VERSION } };
    const b = card.threeDS;
    if (b.kind === 'challenge') return { kind: 'challenge', dsTransactionId, version: VERSION };
    const authenticated = b.status === 'Y' || b.status === 'A';
    return {
      kind: 'frictionless',
      result: { status: b.status, eci: b.eci, authenticationValue: authenticated ? cavv() : null, dsTransactionId, version: VERSION },
    };
  }

  async completeChallenge(req: ThreeDSRequest & { dsTransactionId: string; code: string }): Promise<ThreeDSResult> {
    const card = findTestCard(req.card.number.expose());
    const expected = card?.threeDS.kind === 'challenge' ? card.threeDS.code : null;
    const given = Buffer.from(req.code.trim());
    const ok = expected !== null && given.length === expected.length && timingSafeEqual(given, Buffer.from(expected));
    const eci = req.card.brand === 'mastercard' ? '02' : '05';
    return ok
      ? { status: 'Y', eci, authenticationValue: cavv(), dsTransactionId: req.dsTransactionId, version: VERSION }
      : { status: 'N', eci: null, authenticationValue: null, dsTransactionId: req.dsTransactionId, version: VERSION };
  }
}
