import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { codeOf, world, type World } from './world.js';
import { NO_OUTCOME } from '../../server/store/store.js';

/**
 * A charge's states without HTTP or a database (MemoryStore, the test-mode
 * simulator): pending while it owns its session, then approved (the session
 * completes), declined or error (the session stays open for another try);
 * a wrong CVV counts against the card number until it blocks; an Idempotency-Key
 * replays; an interrupted charge is settled by recovery.
 */
describe('domain: charge states', () => {
  let w: World;
  before(async () => {
    w = await world();
  });
  after(() => w.close());

  /** A session through collectCvv and threeDS: the token a charge presents. */
  async function ready(number: string, cvv = '123', input: Parameters<World['session']>[0] = {}) {
    const s = await w.session({ number, ...input });
    const c = await w.collect(s.token, cvv);
    const t = await w.threeDS(c.token);
    return { s, token: t.token };
  }
  const charge = async (id: string) => (await w.store.charges.get(id))!;

  it('approved: the charge record says so, the session completes, its events are written', async () => {
    const { s, token } = await ready('4000000000001018');
    const r = await w.charge(token);
    assert.equal(r.result.status, 'approved');
    assert.equal(r.session.status, 'completed');
    const c = await charge(r.result.chargeId as string);
    assert.equal(c.status, 'approved');
    assert.equal(c.sessionId, s.id);
    assert.deepEqual(c.amount, { value: 1999, currency: 'EUR' });
    const stored = (await w.store.sessions.getById(s.id))!;
    assert.equal(stored.status, 'completed');
    assert.equal(stored.chargeInFlight, null, 'the charge no longer owns the session');
    const types = (await w.store.webhooks.listEvents(w.m.merchant.id, 'test', { limit: 100 })).filter((e) => e.body.includes(s.id)).map((e) => e.type);
    assert.ok(types.includes('charge.succeeded') && types.includes('session.completed'), types.join(', '));
    await assert.rejects(w.charge(r.token), (e) => codeOf(e) === 'session_completed');
  });

  it('declined and error: recorded as such, the session stays open and the next token may try again', async () => {
    for (const [number, status, declineCode] of [
      ['4000000000006066', 'declined', 'insufficient_funds'],
      ['4000000000008088', 'error', null],
    ] as const) {
      const { s, token } = await ready(number);
      const r = await w.charge(token);
      assert.equal(r.result.status, status, number);
      assert.equal(r.result.declineCode, declineCode);
      assert.equal(r.session.status, 'active');
      assert.equal((await charge(r.result.chargeId as string)).status, status);
      const stored = (await w.store.sessions.getById(s.id))!;
      assert.equal(stored.attempts.charge, 1);
      assert.equal(stored.chargeInFlight, null);
      const again = await w.charge(r.token);
      assert.equal(again.result.status, status, 'a second attempt is a new charge');
      assert.notEqual(again.result.chargeId, r.result.chargeId);
    }
  });

  it('a wrong CVV counts against the card number and blocks it at the threshold (3); a charge is then refused before the processor', async () => {
    const card = await w.card('5555555555554402');
    const s = await w.deps.sessions.create(w.m, { card, operations: ['collectCvv', 'charge'], amount: { value: 500, currency: 'EUR' }, maxAttempts: 5 });
    let token = s.body.token as string;
    for (let i = 1; i <= 3; i++) {
      token = (await w.collect(token, '999')).token;
      const r = await w.charge(token);
      assert.equal(r.result.declineCode, 'incorrect_cvc', `attempt ${i}`);
      token = r.token;
      const st = (await w.deps.vault.status(w.m.merchant.id, (await w.store.cards.get(w.m.merchant.id, 'test', card))!)) as {
        status: string;
        failedAttempts: number;
      };
      assert.equal(st.failedAttempts, i);
      assert.equal(st.status, i < 3 ? 'Unblocked' : 'Blocked');
    }
    const before = (await w.store.sessions.getById(s.body.id as string))!.attempts.charge;
    await assert.rejects((async () => w.charge((await w.collect(token, '123')).token))(), (e) => codeOf(e) === 'cvv_blocked');
    assert.equal((await w.store.sessions.getById(s.body.id as string))!.attempts.charge, before, 'the refused charge used no attempt');
  });

  it('the same Idempotency-Key gets the first response; one charge is made', async () => {
    const { s, token } = await ready('4000000000001018');
    const first = await w.charge(token, {}, 'order-42');
    const again = await w.charge(token, {}, 'order-42');
    assert.deepEqual(again, first);
    const charges = [...new Set([first.result.chargeId, again.result.chargeId])];
    assert.equal(charges.length, 1);
    assert.equal((await w.store.sessions.getById(s.id))!.attempts.charge, 1);
  });

  /** A session whose charge was begun (the token won, the intent stored) by a server that stopped before it called the processor. */
  async function leftPending(chargeId: string, newJti: string) {
    const { s, token } = await ready('4000000000001018');
    const claims = await w.claims(token);
    const now = w.clock.now();
    const begun = await w.store.charges.begin({
      claim: { id: s.id, jti: claims.jti, newJti, now },
      charge: {
        id: chargeId,
        merchantId: w.m.merchant.id,
        sessionId: s.id,
        mode: 'test',
        idempotencyKey: null,
        requestHash: 'h',
        providerKey: chargeId,
        processor: 'simulator',
        amount: { value: 1999, currency: 'EUR' },
        ...NO_OUTCOME,
        createdAt: now,
        updatedAt: now,
      },
      cvv: null,
    });
    assert.equal(begun.status, 'ok');
    return { s, token };
  }

  it('a charge left pending by a stopped server owns its session until recovery settles it from the processor (never sent: error)', async () => {
    const chargeId = 'ch_interrupted';
    const { s, token } = await leftPending(chargeId, 'jti_after_crash');
    // The server stops here. The session refuses everything while the charge owns it.
    await assert.rejects(w.charge(token), (e) => codeOf(e) === 'precondition_failed' && (e as { retryAfter?: number }).retryAfter === 1);
    assert.equal(await w.deps.charges.recoverInFlight(), 0, 'too early: the processor may still answer');
    w.clock.advance(60_000);
    assert.equal(await w.deps.charges.recoverInFlight(), 1);
    assert.equal((await charge(chargeId)).status, 'error', 'the processor never saw it: no money moved');
    const stored = (await w.store.sessions.getById(s.id))!;
    assert.equal(stored.chargeInFlight, null);
    assert.equal(stored.status, 'active');
    assert.equal(await w.deps.charges.recoverInFlight(), 0, 'settled once');
    const failed = (await w.store.webhooks.listEvents(w.m.merchant.id, 'test', { limit: 100, type: 'charge.failed' })).filter((e) => e.body.includes(chargeId));
    assert.equal(failed.length, 1, 'one charge.failed event');
  });

  it('a settler that stops after recording the outcome leaves nothing to send again: the next one settles with no second event', async () => {
    const chargeId = 'ch_settler_stopped';
    const { s } = await leftPending(chargeId, 'jti_after_crash_2');
    // The first settler records the outcome, then stops before it frees the session.
    const settleLock = w.store.charges.settleLock.bind(w.store.charges);
    w.store.charges.settleLock = () => Promise.reject(new Error('stopped'));
    w.clock.advance(60_000);
    assert.equal(await w.deps.charges.recoverInFlight(), 0);
    assert.equal((await charge(chargeId)).status, 'error', 'the outcome was recorded');
    w.store.charges.settleLock = settleLock;
    w.clock.advance(60_000);
    assert.equal(await w.deps.charges.recoverInFlight(), 1, 'the next settler frees the session');
    assert.equal((await w.store.sessions.getById(s.id))!.chargeInFlight, null);
    const failed = (await w.store.webhooks.listEvents(w.m.merchant.id, 'test', { limit: 100, type: 'charge.failed' })).filter((e) => e.body.includes(chargeId));
    assert.equal(failed.length, 1, 'one charge.failed event, written with the outcome');
  });
});
