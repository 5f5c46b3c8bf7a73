import { Command } from 'commander';
import { ConfigError, loadConfig, loadEnvFile } from './config.js';
import { createDeps } from './deps.js';
import { createLogger } from './log.js';
import { pino } from 'pino';
import { VERSION } from './version.js';

/** The `cvvops` command. Logs go to stderr so stdout carries only what a command prints. */
async function withDeps<T>(fn: (d: Awaited<ReturnType<typeof createDeps>>) => Promise<T>): Promise<T> {
  let config;
  try {
    loadEnvFile();
    config = loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(78);
    }
    throw e;
  }
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', pino.destination(2));
  const d = await createDeps(config, log);
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

const program = new Command('cvvops').version(VERSION).description('cvvops server administration');

const merchant = program.command('merchant').description('merchants and their API keys');
merchant
  .command('create')
  .description('create a merchant with its test and live API keys (shown once); its allowed origins are set in both modes')
  .requiredOption('--name <name>', "the merchant's name")
  .option(
    '--origin <origin>',
    'an allowed origin of both modes, exactly scheme://host[:port] (repeatable)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option('--json', 'print exactly one JSON object {"merchantId","testKey","liveKey"} and nothing else')
  .action(async (opts: { name: string; origin: string[]; json?: boolean }) => {
    await withDeps(async (d) => {
      const { merchant: m, testKey, liveKey } = await d.merchants.create({ name: opts.name, origins: opts.origin });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ merchantId: m.id, testKey: testKey.expose(), liveKey: liveKey.expose() })}\n`);
      } else {
        // Settings are per mode (test and live); a new merchant starts with these origins in both.
        process.stdout.write(
          `merchant ${m.id} (${m.name})\nallowed origins, test and live modes: ${m.allowedOrigins.join(', ') || '(none)'}\n` +
            `test key: ${testKey.expose()}\nlive key: ${liveKey.expose()}\nThe keys are shown only now; store them safely.\n`,
        );
      }
    });
  });

const keys = program.command('keys').description('token signing keys');
keys
  .command('rotate')
  .description('make a new signing key active; old keys stay in the JWKS until their tokens have expired')
  .action(async () => {
    await withDeps(async (d) => {
      const kid = await d.tokens.rotate('cli');
      process.stdout.write(`active signing key: ${kid}\n`);
    });
  });

program
  .command('migrate')
  .description('apply storage migrations')
  .action(async () => {
    await withDeps(async (d) => {
      process.stdout.write(`migrations applied (${d.store.engine})\n`);
    });
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`cvvops: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
