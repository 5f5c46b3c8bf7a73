import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Field names that must never be logged in clear. Secrets travel as `Secret`
 * (which prints "[REDACTED]"); this list is the second net.
 */
const REDACT = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  '*.authorization',
  'cvv',
  '*.cvv',
  '*.*.cvv',
  'number',
  '*.number',
  '*.*.number',
  'cardNumber',
  '*.cardNumber',
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'key',
  '*.secret',
  'secret',
  'authenticationValue',
  '*.authenticationValue',
  '*.*.authenticationValue',
  'cavv',
  '*.cavv',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '[REDACTED]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
