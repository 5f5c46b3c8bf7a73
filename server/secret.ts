import { inspect } from 'node:util';

/**
 * A value that must never reach a log, an error, a response or a crash report
 * by accident: a CVV, a card number, a CAVV, an API key, a session token.
 * It prints as "[REDACTED]" through JSON.stringify, util.inspect, template
 * strings and String(); `.expose()` is the one explicit way to read it.
 *
 * @example
 *   const cvv = new Secret('123');
 *   JSON.stringify({ cvv }); // '{"cvv":"[REDACTED]"}'
 *   cvv.expose();            // '123'
 */
export class Secret<T = string> {
  readonly #value: T;
  constructor(value: T) {
    this.#value = value;
  }
  expose(): T {
    return this.#value;
  }
  toJSON(): string {
    return '[REDACTED]';
  }
  toString(): string {
    return '[REDACTED]';
  }
  [inspect.custom](): string {
    return 'Secret([REDACTED])';
  }
}
