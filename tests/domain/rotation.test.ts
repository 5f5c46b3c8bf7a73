import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { codeOf, world, type World } from './world.js';

/**
 * The rotation engine without HTTP or a database (MemoryStore): each call
 * spends its token and returns the next; an exact repeat within the replay
 * window gets the same response; anything else with a spent token is refused;
 * reissue and cancel end every earlier token.
 */
describe('domain: token rotation', () => {
  let w: World;
  before(async () => {
    w = await world();
  });
  after(() => w.close());

  it('each operation spends its token and hands back the next, one sequence number on', async () => {
    const s = await w.session();
    const c0 = await w.claims(s.token);
    const r1 = await w.collect(s.token);
    const c1 = await w.claims(r1.token);
    assert.notEqual(r1.token, s.token);
    assert.equal(c1.sub, s.id);
    assert.equal(c1.seq, c0.seq + 1);
    assert.notEqual(c1.jti, c0.jti);
    const r2 = await w.threeDS(r1.token);
    assert.equal((await w.claims(r2.token)).seq, c0.seq + 2);
    const stored = await w.store.sessions.getById(s.id);
    assert.equal(stored?.jti, (await w.claims(r2.token)).jti, 'only the newest token is current');
  });

  it('an exact repeat with the spent token gets the first response; a different call with it is refused', async () => {
    const s = await w.session();
    const first = await w.collect(s.token, '123');
    const again = await w.collect(s.token, '123');
    assert.deepEqual(again, first, 'the same call, retried: the same response and next token');
    await assert.rejects(w.collect(s.token, '999'), (e) => codeOf(e) === 'token_superseded');
    await assert.rejects(w.threeDS(s.token), (e) => codeOf(e) === 'token_superseded');
    // The window is 60 s: after it, even the exact repeat is refused.
    w.clock.advance(61_000);
    await assert.rejects(w.collect(s.token, '123'), (e) => codeOf(e) === 'token_superseded');
    // The token it handed back still works.
    const next = await w.threeDS(first.token);
    assert.equal(next.session.status, 'active');
  });

  it('two calls racing with one token: one wins, the other gets its replay or a refusal, never a second rotation', async () => {
    const s = await w.session();
    const out = await Promise.allSettled([w.collect(s.token, '123'), w.collect(s.token, '321')]);
    const won = out.filter((o) => o.status === 'fulfilled');
    assert.equal(won.length, 1, 'exactly one call rotated the token');
    const lost = out.find((o) => o.status === 'rejected');
    assert.equal(codeOf(lost?.reason), 'token_superseded');
    const stored = await w.store.sessions.getById(s.id);
    assert.equal(stored?.seq, 1);
    assert.equal(stored?.attempts.collectCvv, 1);
  });

  it('reissue ends every earlier token and its replay; the new token works', async () => {
    const s = await w.session();
    const r1 = await w.collect(s.token);
    const { token } = await w.deps.sessions.reissue(w.m, s.id);
    await assert.rejects(w.threeDS(r1.token), (e) => codeOf(e) === 'token_superseded');
    await assert.rejects(w.collect(s.token), (e) => codeOf(e) === 'token_superseded', 'the replay went with the reissue');
    assert.equal((await w.threeDS(token)).session.status, 'active');
  });

  it('attempts are counted per operation up to maxAttempts', async () => {
    const s = await w.session({ maxAttempts: 2 });
    const r1 = await w.collect(s.token);
    const r2 = await w.collect(r1.token);
    await assert.rejects(w.collect(r2.token), (e) => codeOf(e) === 'attempts_exhausted');
    assert.equal((await w.threeDS(r2.token)).session.status, 'active', 'another operation still has its own attempts');
  });

  it('a canceled session refuses its current token; validateToken reports it', async () => {
    const s = await w.session();
    const r1 = await w.collect(s.token);
    await w.deps.sessions.cancel(w.m, s.id);
    await assert.rejects(w.threeDS(r1.token), (e) => codeOf(e) === 'session_canceled');
    const v = await w.deps.sessions.validateToken(w.m, r1.token);
    assert.equal(v.valid, true);
    assert.equal(v.valid && v.session.status, 'canceled');
  });

  it('past its lifetime a session refuses operations and the sweeper expires it, once', async () => {
    const s = await w.session({ ttlSeconds: 60 });
    const r1 = await w.collect(s.token);
    w.clock.advance(61_000);
    const v = await w.deps.tokens.verify(r1.token);
    assert.equal(v.ok ? 'ok' : v.reason, 'expired', "the token's expiry is the session's: refused before any operation runs");
    assert.deepEqual(await w.deps.sessions.validateToken(w.m, r1.token), { valid: false, reason: 'expired' });
    await w.sweeper.tick();
    const stored = await w.store.sessions.getById(s.id);
    assert.equal(stored?.status, 'expired');
    assert.equal(await w.store.cvc.findUsable(stored.merchantId, stored.cardToken, s.id, w.clock.now()), null, "the session's CVV went with it");
  });
});
