import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ManualClock } from '../../server/domain/clock.js';
import { type Harness, makeHarness, makeMerchant, type TestMerchant } from '../helpers/harness.js';

/**
 * The per-instance caches (a merchant's settings in the store, a merchant's
 * webhook endpoints) expire by the server's clock, not by the wall clock: a
 * change made by another instance is seen once the injected clock has moved
 * a second (the wall clock moves a few milliseconds during the test: with
 * caches on Date.now the change stays unseen and the test fails).
 */
describe('caches expire by the injected clock', () => {
  let a: Harness;
  let b: Harness;
  let m: TestMerchant;
  const clock = new ManualClock(Date.now());

  before(async () => {
    a = await makeHarness({ clock });
    b = await makeHarness({ shareWith: a }); // another instance on the same database, with its own clock
    m = await makeMerchant(a);
  });
  after(async () => {
    await b.close();
    await a.close();
  });

  it("a merchant's settings changed by another instance: cached for one second of the server's clock", async () => {
    const before = await a.deps.store.merchants.get(m.id, 'test');
    assert.ok(before);
    await b.deps.store.merchants.update(m.id, 'test', { cvvBlockThreshold: before.cvvBlockThreshold + 1 }, b.clock.now());
    assert.equal((await a.deps.store.merchants.get(m.id, 'test'))?.cvvBlockThreshold, before.cvvBlockThreshold, 'still the cached settings');
    clock.advance(1001);
    assert.equal((await a.deps.store.merchants.get(m.id, 'test'))?.cvvBlockThreshold, before.cvvBlockThreshold + 1, 'read again');
  });

  it("webhook endpoints created by another instance: cached for one second of the server's clock", async () => {
    const event = [{ type: 'charge.succeeded' as const, data: { session: 'cvo_x' } }];
    // The deliveries among what prepare() gives (the event's own record comes first, whatever listens).
    const deliveries = async () => (await a.deps.webhooks.prepare(m.id, 'test', event)).filter((w) => !('kind' in w)).length;
    assert.equal(await deliveries(), 0, 'no endpoint yet (now cached)');
    await b.deps.webhooks.createEndpoint(m.id, 'test', 'https://hooks.example/cvvops', ['charge.succeeded']);
    assert.equal(await deliveries(), 0, 'still the cached list');
    clock.advance(1001);
    assert.equal(await deliveries(), 1, 'read again');
  });
});
