import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Express } from 'express';
import request from 'supertest';
import { buildApp } from '../../server/app.js';
import { loadConfig, type Config } from '../../server/config.js';
import { ManualClock, type Timer } from '../../server/domain/clock.js';
import { createDeps, type Deps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import type { Processor } from '../../server/connectors/processors/processor.js';
import { processorAad } from '../../server/domain/merchants.js';
import { Secret } from '../../server/secret.js';
import { violations, withResponseCheck } from './openapi-check.js';

export const TEST_CARD = '4000000000001018';
export const AMEX_CARD = '378282246310005';

/** Everything a test needs: deps over a fresh SQLite file, the app, a manual clock and the captured log lines. */
export interface Harness {
  deps: Deps;
  app: Express;
  clock: ManualClock;
  config: Config;
  dir: string;
  dbPath: string;
  logs: string[];
  masterKey: Buffer;
  close(): Promise<void>;
}

export async function makeHarness(
  opts: {
    env?: Record<string, string>;
    clock?: ManualClock;
    /** The monotonic timer of the caches that space their store reads (default: the real one). */
    timer?: Timer;
    databaseUrl?: string;
    /** The test-mode processor (default: the simulator). */
    simulator?: Processor;
    /** Another harness's data folder and master key: a second instance (or a restarted one) on the same database. */
    shareWith?: Harness;
  } = {},
): Promise<Harness> {
  const dir = opts.shareWith?.dir ?? mkdtempSync(join(tmpdir(), 'cvvops-test-'));
  const dbPath = join(dir, 'cvvops.db');
  const masterKey = opts.shareWith?.masterKey ?? randomBytes(32);
  const config = loadConfig({
    DATABASE_URL: opts.databaseUrl ?? opts.shareWith?.config.databaseUrl ?? `sqlite:${dbPath}`,
    PUBLIC_BASE_URL: 'http://cvv.test',
    CVVOPS_MASTER_KEY: masterKey.toString('base64'),
    LOG_LEVEL: 'info',
    // Limits are tested on their own (rate-limits.test.ts); elsewhere they would only make tests order-dependent.
    CVVOPS_RATE_LIMIT: 'off',
    ...opts.env,
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const log = createLogger('info', sink);
  const clock = opts.clock ?? new ManualClock(Date.now());
  const deps = await createDeps(config, log, {
    clock,
    masterKey: new Secret(masterKey),
    ...(opts.simulator ? { simulator: opts.simulator } : {}),
    ...(opts.timer ? { timer: opts.timer } : {}),
  });
  const app = withResponseCheck(buildApp(deps));
  return {
    deps,
    app,
    clock,
    config,
    dir,
    dbPath,
    logs,
    masterKey,
    async close() {
      await deps.close();
      const found = violations.splice(0);
      if (found.length) throw new Error(`responses that do not match openapi.json:\n${[...new Set(found)].join('\n')}`);
      if (!opts.shareWith) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestMerchant {
  id: string;
  testKey: string;
  liveKey: string;
}

export async function makeMerchant(h: Harness, origins: string[] = ['https://shop.example']): Promise<TestMerchant> {
  const { merchant, testKey, liveKey } = await h.deps.merchants.create({ name: 'Shop', origins });
  await h.deps.origins.refresh();
  return { id: merchant.id, testKey: testKey.expose(), liveKey: liveKey.expose() };
}

export const auth = (key: string) => ({ Authorization: `Bearer ${key}` });

export async function makeCard(h: Harness, key: string, body: Record<string, unknown> = {}): Promise<string> {
  const res = await request(h.app)
    .post('/Cards')
    .set(auth(key))
    .send({ number: TEST_CARD, expMonth: 12, expYear: 2030, ...body });
  if (res.status !== 201) throw new Error(`card: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token;
}

export async function makeSession(
  h: Harness,
  key: string,
  body: Record<string, unknown> = {},
): Promise<{ id: string; token: string; body: Record<string, any> }> {
  const card = (body.card as string | undefined) ?? (await makeCard(h, key));
  const res = await request(h.app)
    .post('/CvvOperations')
    .set(auth(key))
    .send({
      card,
      operations: ['collectCvv', 'threeDS', 'charge'],
      amount: { value: 1999, currency: 'EUR' },
      ...body,
    });
  if (res.status !== 201) throw new Error(`session: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, token: res.body.token, body: res.body };
}

export function collect(h: Harness, token: string, cvv = '123', headers: Record<string, string> = {}) {
  return request(h.app)
    .post('/CvvOperations/collectCvv')
    .set({ ...auth(token), ...headers })
    .send({ cvv });
}

/** Decodes a compact JWS's header and payload (no verification: for assertions only). */
export function decodeJws(token: string): { header: Record<string, any>; payload: Record<string, any> } {
  const [h, p] = token.split('.');
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) };
}

/**
 * Settings written straight to the store, past PATCH /Merchant's checks: what a target saved while its name
 * resolved to a public address looks like once it resolves to a private one (DNS rebinding). The connect-time
 * guard is what must hold then.
 */
export async function forceSettings(
  h: Harness,
  merchantId: string,
  mode: 'test' | 'live',
  p: { allowedProxyTargets?: string[]; processor?: Record<string, unknown> },
): Promise<void> {
  const processor = p.processor
    ? {
        type: 'http',
        url: (p.processor.request as { url: string }).url,
        scope: 'mode',
        ...(() => {
          const sealed = h.deps.keyring.seal('settings', JSON.stringify(p.processor), processorAad(merchantId, mode, 'mode'));
          return { sealed: sealed.blob.toString('base64'), keyVersion: sealed.keyVersion };
        })(),
      }
    : undefined;
  await h.deps.store.merchants.update(
    merchantId,
    mode,
    { ...(p.allowedProxyTargets ? { allowedProxyTargets: p.allowedProxyTargets } : {}), ...(processor ? { processor } : {}) },
    h.clock.now(),
  );
}
