// A consumer in ES modules: resolves @cvvops/node's "import" condition (dist/esm/index.d.ts).
import { CvvOps, CvvOpsError, type CreatedSession, type SessionClaims, type ValidateTokenResult, type WebhookEvent } from '@cvvops/node';

const cvvops = new CvvOps('sk_test_x', { baseUrl: 'https://cvv.example', maxRetries: 1 });

export async function flow(raw: Buffer, header: string): Promise<string> {
  const card = await cvvops.cards.create({ number: '4000000000001018', expMonth: 12, expYear: 2030 }, { idempotencyKey: 'k1' });
  const s: CreatedSession = await cvvops.sessions.create({ card: card.token, operations: ['collectCvv', 'charge'], amount: { value: 1999, currency: 'EUR' } });
  const claims: SessionClaims = await cvvops.verifyToken(s.token, { maxAgeSeconds: 600 });
  const v: ValidateTokenResult = await cvvops.sessions.validateToken(s.token);
  if (v.valid) v.claims.res.charge?.status satisfies string | undefined;
  else v.reason satisfies 'bad_signature' | 'malformed' | 'expired' | 'unknown_key' | 'wrong_merchant' | 'wrong_type' | 'wrong_issuer';
  const event: WebhookEvent = cvvops.webhooks.constructEvent(raw, header, 'whsec_x', { toleranceSeconds: 300 });
  for await (const ep of cvvops.webhookEndpoints.list()) ep.url satisfies string;
  // @ts-expect-error an unknown field is refused (the generated request type)
  await cvvops.cards.create({ number: '4', expMonth: 1, expYear: 2030, bogus: 1 });
  // @ts-expect-error not an operation
  await cvvops.sessions.create({ card: card.token, operations: ['pay'] });
  try {
    await cvvops.merchant.update({ cvvBlockThreshold: 4 });
  } catch (err) {
    if (err instanceof CvvOpsError) return `${err.status} ${err.code} ${err.requestId}`;
  }
  return `${claims.sub} ${event.type}`;
}
