import { randomInt, randomUUID } from 'node:crypto';
import { expectedTestCvv, findTestCard } from '../../test-cards.js';
import { type ChargeRequest, type ChargeResult, type Processor, ProcessorError } from './processor.js';

/**
 * A deterministic test processor (like ActiveMerchant's bogus gateway),
 * following API.md section 11: the test cards' outcomes, `incorrect_cvc` for
 * any CVV but 123 (1234 for amex). It remembers its answers by idempotency
 * key, like a provider would: the last LEDGER_SIZE of them, for as long as
 * the process lives (a bounded memory, whatever the traffic).
 */
export class SimulatorProcessor implements Processor {
  static readonly LEDGER_SIZE = 10_000;
  readonly name = 'simulator';
  readonly #ledger = new Map<string, ChargeResult>();

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    const seen = this.#ledger.get(req.idempotencyKey);
    if (seen) return seen;
    const card = findTestCard(req.card.number.expose());
    if (!card) throw new ProcessorError('the simulator only knows the test cards', false);
    if (card.charge.kind === 'error') throw new ProcessorError('simulated processor failure');
    const cvv = req.cvv?.expose() ?? null;
    let result: ChargeResult;
    if (cvv !== null && cvv !== expectedTestCvv(card.brand)) {
      result = { status: 'declined', authorizationCode: null, declineCode: 'incorrect_cvc', cvvResult: 'N', avsResult: 'U', networkTransactionId: null };
    } else if (card.charge.kind === 'declined') {
      result = {
        status: 'declined',
        authorizationCode: null,
        declineCode: card.charge.declineCode,
        cvvResult: cvv ? 'M' : 'P',
        avsResult: 'U',
        networkTransactionId: null,
      };
    } else {
      result = {
        status: 'approved',
        authorizationCode: String(randomInt(100000, 999999)),
        declineCode: null,
        cvvResult: cvv ? 'M' : 'P',
        avsResult: 'U',
        networkTransactionId: randomUUID().replace(/-/g, '').slice(0, 15),
      };
    }
    this.#ledger.set(req.idempotencyKey, result);
    // A Map iterates in insertion order: the first key is the oldest answer.
    if (this.#ledger.size > SimulatorProcessor.LEDGER_SIZE) this.#ledger.delete(this.#ledger.keys().next().value!);
    return result;
  }

  async lookup(idempotencyKey: string, _mode?: 'test' | 'live'): Promise<ChargeResult | null> {
    return this.#ledger.get(idempotencyKey) ?? null;
  }
}
