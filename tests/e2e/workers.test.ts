import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../server/config.js';
import { createDeps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import { KyselyStore } from '../../server/store/kysely-store.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

const post = async (base: string, path: string, bearer: string, body: unknown = {}) => {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as any };
};

/** CVVOPS_WORKERS=2 on SQLite: two processes share the port and the database file; background work runs once. */
describe('node:cluster workers on SQLite', () => {
  let server: ServerProcess;
  let dir: string;
  let key: string;
  const received: string[] = [];
  let receiver: http.Server;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cvvops-workers-'));
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push(JSON.parse(body).id);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
    const env = {
      DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`,
      CVVOPS_MASTER_KEY: randomBytes(32).toString('base64'),
      CVVOPS_DEMO: 'off',
      CVVOPS_RATE_LIMIT: 'on',
      CVVOPS_RATE_LIMIT_SESSION: '1000',
      CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
      CVVOPS_WORKERS: '2',
    };
    const deps = await createDeps(loadConfig(env), createLogger('silent'));
    const created = await deps.merchants.create({ name: 'Workers', origins: ['https://shop.example'] });
    key = created.testKey.expose();
    await deps.webhooks.createEndpoint(created.merchant.id, 'test', `http://127.0.0.1:${(receiver.address() as { port: number }).port}/h`, [
      'cvv.collected',
      'charge.succeeded',
    ]);
    await deps.close();
    server = await startServerProcess(env);
  });

  after(async () => {
    await server?.stop();
    receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('two workers serve; 50 races of one token with different bodies: exactly one winner each, one charge each; webhooks once', async () => {
    // Both workers announce themselves (the primary forks two).
    for (let i = 0; i < 50 && server.stdout().split('cvvops listening').length - 1 < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(server.stdout().split('cvvops listening').length - 1, 2, 'two workers listening');
    const sessions: string[] = [];
    for (let i = 0; i < 50; i++) {
      const card = await post(server.base, '/Cards', key, { number: '4000000000001018', expMonth: 12, expYear: 2030 });
      const s = await post(server.base, '/CvvOperations', key, {
        card: card.body.token,
        operations: ['collectCvv', 'charge'],
        amount: { value: 900, currency: 'EUR' },
        maxAttempts: 10,
      });
      sessions.push(s.body.id);
      const c = await Promise.all([0, 1].map(() => post(server.base, '/CvvOperations/collectCvv', s.body.token, { cvv: '123' })));
      const ok = c.filter((r) => r.status === 200);
      assert.ok(ok.length >= 1);
      assert.equal(new Set(ok.map((r) => r.body.token)).size, 1, 'never two different new tokens');
      const p = await Promise.all(
        [0, 1].map((j) => post(server.base, '/CvvOperations/charge', ok[0]!.body.token, { amount: { value: 900 - j, currency: 'EUR' } })),
      );
      assert.deepEqual(p.map((r) => r.status).sort(), [200, 409], `race ${i}`);
    }
    const store = await KyselyStore.open(`sqlite:${join(dir, 'db.sqlite')}`);
    try {
      const charges = await store.db.selectFrom('charges').select('session_id').where('session_id', 'in', sessions).execute();
      assert.equal(charges.length, 50);
      const deadline = Date.now() + 20_000;
      for (;;) {
        const pending = await store.db.selectFrom('webhook_outbox').select('id').where('status', '!=', 'delivered').execute();
        if (pending.length === 0) break;
        if (Date.now() > deadline) assert.fail(`${pending.length} deliveries pending`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(received.length, 100, 'cvv.collected and charge.succeeded per session');
      assert.equal(new Set(received).size, received.length, 'each event delivered once');
    } finally {
      await store.close();
    }
  });
});
