import cluster from 'node:cluster';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, loadEnvFile } from './config.js';
import { KeyProviderError } from './domain/key-provider.js';
import { Sweeper } from './domain/sweeper.js';
import { createDeps } from './deps.js';
import { createLogger } from './log.js';

/**
 * loadConfig → createDeps → buildApp → listen. With CVVOPS_WORKERS > 1 the
 * primary process prepares storage and keys, runs the background work once,
 * and forks workers that share the port (node:cluster).
 */
async function main(): Promise<void> {
  let config;
  try {
    // Workers inherit the primary's environment, .env included.
    if (!cluster.isWorker) loadEnvFile();
    config = loadConfig(process.env, availableParallelism());
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(78);
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  const isWorker = cluster.isWorker;
  const deps = await createDeps(config, log);
  const serves = config.workers === 1 || isWorker;

  if (!isWorker) {
    // A busy port is reported before anything else is printed (not after a banner pointing at the other process).
    await assertPortFree(config.port, config.host);
    if (deps.store.engine === 'postgres' && !config.publicBaseUrlGiven) {
      // Instances sharing a database must share the tokens' issuer: one derived from each HOST and PORT differs.
      log.warn(
        { publicBaseUrl: config.publicBaseUrl },
        'PostgreSQL without PUBLIC_BASE_URL: set the same PUBLIC_BASE_URL on every instance of this database, or their tokens are refused by one another (wrong_issuer)',
      );
    }
    // Background work runs once per server (in the primary with several workers).
    const sweeper = new Sweeper(deps.store, deps.tokens, deps.clock, log, deps.webhooks, deps.charges, {
      retentionDays: config.retentionDays,
      keys: (limit) => deps.keyMaintenance.slice(limit),
    });
    sweeper.start();
    deps.webhooks.start();
    if (config.demo) {
      const demo = await deps.merchants.ensureDemo([config.publicOrigin]);
      await deps.origins.refresh();
      // API.md section 12: the demo merchant's test key is printed at start (test mode only, never in production).
      process.stdout.write(
        `\n  cvvops demo merchant ${demo.merchantId}\n  test key: ${demo.testKey.expose()}\n  demo checkout: ${config.publicBaseUrl}/demo\n\n`,
      );
    }
    if (config.workers > 1) {
      if (config.rateLimit && deps.store.engine === 'sqlite') {
        // The workers' rate-limit counts live here, in the primary.
        const { RateLimiterClusterMaster } = await import('rate-limiter-flexible');
        new RateLimiterClusterMaster();
      }
      for (let i = 0; i < config.workers; i++) cluster.fork();
      cluster.on('exit', (w, code, signal) => {
        if (!shuttingDown) {
          log.error({ pid: w.process.pid, code, signal }, 'worker died; starting another');
          cluster.fork();
        }
      });
    }
  }
  deps.origins.start();

  let shuttingDown = false;
  let server: import('node:http').Server | null = null;
  if (serves) {
    const app = buildApp(deps);
    server = app.listen(config.port, config.host);
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server!.once('listening', resolve);
      server!.once('error', (err) => reject(listenError(err, config.port, config.host)));
    });
    const addr = server.address();
    log.info(
      { port: typeof addr === 'object' && addr ? addr.port : config.port, host: config.host, pid: process.pid, engine: deps.store.engine },
      'cvvops listening',
    );
  }

  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal }, 'shutting down: no new connections, draining');
    if (cluster.isPrimary && config.workers > 1) for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    if (server) {
      server.close();
      server.closeIdleConnections();
      setTimeout(() => server?.closeAllConnections(), 10_000).unref();
      await new Promise<void>((r) => server.once('close', () => r()));
    }
    await deps.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** What a failed listen means, in words a newcomer can act on. */
function listenError(err: unknown, port: number, host: string): Error {
  const code = (err as { code?: string } | null)?.code;
  if (code === 'EADDRINUSE')
    return new Error(`port ${port} on ${host} is already in use (another server is running there?); set PORT to a free port, e.g. PORT=8081 npm start`);
  if (code === 'EACCES') return new Error(`port ${port} on ${host} needs privileges; set PORT to a port above 1023`);
  if (code === 'EADDRNOTAVAIL') return new Error(`HOST ${host} is not an address of this machine; set HOST (e.g. 127.0.0.1 or 0.0.0.0)`);
  return err instanceof Error ? err : new Error(String(err));
}

/** Binds the port once and lets it go: the primary checks it before printing anything or forking workers. */
async function assertPortFree(port: number, host: string): Promise<void> {
  if (port === 0) return;
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', (err) => reject(listenError(err, port, host)));
    probe.listen(port, host, () => probe.close(() => resolve()));
  });
}

main().catch((err) => {
  process.stderr.write(`cvvops failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  // A wrong master key or a missing HSM object is a configuration fault, like a bad variable (78, EX_CONFIG).
  process.exit(err instanceof KeyProviderError ? 78 : 1);
});
