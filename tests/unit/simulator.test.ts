import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { SimulatorProcessor } from '../../server/connectors/processors/simulator.js';
import { Secret } from '../../server/secret.js';

const request = (key: string) => ({
  chargeId: `ch_${key}`,
  idempotencyKey: key,
  mode: 'test' as const,
  amount: { value: 1999, currency: 'EUR' },
  card: { number: new Secret('4000000000001018'), brand: 'visa', expMonth: 12, expYear: 2030, holderName: null },
  cvv: new Secret('123'),
  threeDS: null,
  reference: null,
});

describe('SimulatorProcessor', () => {
  it('answers a repeated idempotency key with its first answer, and remembers only its last LEDGER_SIZE answers (bounded memory)', async () => {
    const sim = new SimulatorProcessor();
    const first = await sim.charge(request('k0'));
    assert.equal(first.status, 'approved');
    assert.deepEqual(await sim.charge(request('k0')), first, 'same key, same answer');
    assert.deepEqual(await sim.lookup('k0'), first);
    for (let i = 1; i <= SimulatorProcessor.LEDGER_SIZE; i++) await sim.charge(request(`k${i}`));
    assert.equal(await sim.lookup('k0'), null, 'the oldest answer is forgotten');
    assert.equal((await sim.lookup('k1'))?.status, 'approved', 'the next one is kept');
    assert.equal((await sim.lookup(`k${SimulatorProcessor.LEDGER_SIZE}`))?.status, 'approved');
  });
});
