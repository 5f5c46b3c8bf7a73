import { type ChargeRequest, type ChargeResult, type Processor, ProcessorError } from '../../server/connectors/processors/processor.js';
import { SimulatorProcessor } from '../../server/connectors/processors/simulator.js';

/**
 * A processor that decides like the simulator (the test cards' outcomes, recorded in its ledger at once, as a
 * provider commits an authorization) and then holds its answer until the test releases it: a slow provider
 * without sleeps. `hang` makes it never answer (a server that died while waiting).
 */
export class GatedProcessor implements Processor {
  readonly name = 'simulator';
  readonly inner = new SimulatorProcessor();
  /** Every charge the "provider" received, in order. */
  readonly calls: ChargeRequest[] = [];
  /** How many of those it approved. */
  approvals = 0;
  hold = true;
  hang = false;
  #gates: Array<() => void> = [];
  #hung: Array<(e: Error) => void> = [];
  #watchers: Array<{ n: number; resolve: () => void }> = [];

  async charge(req: ChargeRequest): Promise<ChargeResult> {
    const { hang, hold } = this;
    this.calls.push(req);
    this.#notify();
    const result = await this.inner.charge(req);
    if (result.status === 'approved') this.approvals++;
    if (hang) await new Promise<never>((_resolve, reject) => this.#hung.push(reject));
    if (hold && this.hold) {
      await new Promise<void>((resolve) => this.#gates.push(resolve));
    }
    return result;
  }

  lookup(idempotencyKey: string, mode: 'test' | 'live'): Promise<ChargeResult | null> {
    return this.inner.lookup(idempotencyKey, mode);
  }

  /** Resolves once `n` charges have reached the provider in all. */
  reached(n = 1): Promise<void> {
    if (this.calls.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#watchers.push({ n, resolve }));
  }

  /** The connections of the hung charges finally break (the caller sees a transport error). */
  abandon(): void {
    for (const r of this.#hung.splice(0)) r(new ProcessorError('connection reset'));
  }

  /** Lets every held answer go, and answers later charges at once (set `hold` again to hold them). */
  release(): void {
    this.hold = false;
    for (const g of this.#gates.splice(0)) g();
  }

  #notify(): void {
    this.#watchers = this.#watchers.filter((w) => {
      if (this.calls.length < w.n) return true;
      w.resolve();
      return false;
    });
  }
}
