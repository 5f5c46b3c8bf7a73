import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../server/config.js';
import { createDeps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import { KyselyStore } from '../../server/store/kysely-store.js';
import { freshPgSchema, PG_BASE } from '../helpers/pg.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

const post = async (base: string, path: string, bearer: string, body: unknown = {}) => {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as any };
};

if (!PG_BASE) {
  describe('several instances on one PostgreSQL database', () => {
    it('runs two server processes on PostgreSQL', { skip: 'TEST_DATABASE_URL not set' }, () => {});
  });
} else {
  describe('several instances on one PostgreSQL database', () => {
    let a: ServerProcess;
    let b: ServerProcess;
    let url: string;
    let drop: () => Promise<void>;
    let key: string;
    let merchantId: string;
    const received: Array<{ id: string; type: string }> = [];
    let receiver: http.Server;
    const masterKey = randomBytes(32).toString('base64');

    before(async () => {
      ({ url, drop } = await freshPgSchema());
      receiver = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          received.push(JSON.parse(body));
          res.writeHead(200).end();
        });
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', () => r()));
      const env = {
        DATABASE_URL: url,
        CVVOPS_MASTER_KEY: masterKey,
        CVVOPS_DEMO: 'off',
        CVVOPS_RATE_LIMIT: 'off',
        CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
        LOG_LEVEL: 'info',
        PUBLIC_BASE_URL: 'http://cvv.multi.test',
      };
      a = await startServerProcess(env);
      b = await startServerProcess(env);
      // The merchant, created through the same storage the servers share.
      const config = loadConfig(env);
      const deps = await createDeps(config, createLogger('silent'));
      const created = await deps.merchants.create({ name: 'Multi', origins: ['https://shop.example'] });
      merchantId = created.merchant.id;
      key = created.testKey.expose();
      await deps.webhooks.createEndpoint(merchantId, 'test', `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`, [
        'cvv.collected',
        'charge.succeeded',
        'session.completed',
      ]);
      await deps.close();
    });

    after(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      receiver?.close();
      await drop?.();
    });

    async function newSession(): Promise<{ id: string; token: string }> {
      const card = await post(a.base, '/Cards', key, { number: '4000000000001018', expMonth: 12, expYear: 2030 });
      const s = await post(b.base, '/CvvOperations', key, {
        card: card.body.token,
        operations: ['collectCvv', 'charge'],
        amount: { value: 500, currency: 'EUR' },
        maxAttempts: 10,
      });
      assert.equal(s.status, 201);
      return { id: s.body.id, token: s.body.token };
    }

    it('each instance was started with PUBLIC_BASE_URL, so neither warned; one started without it warns at start', async () => {
      for (const s of [a, b]) assert.doesNotMatch(s.stdout(), /PostgreSQL without PUBLIC_BASE_URL/);
      const c = await startServerProcess({ DATABASE_URL: url, CVVOPS_MASTER_KEY: masterKey, CVVOPS_DEMO: 'off', PUBLIC_BASE_URL: '' });
      try {
        assert.match(c.stdout(), /"level":"warn".*PostgreSQL without PUBLIC_BASE_URL: set the same PUBLIC_BASE_URL on every instance/);
      } finally {
        await c.stop();
      }
    });

    it('a full flow whose calls alternate between the instances', async () => {
      const s = await newSession();
      const c = await post(a.base, '/CvvOperations/collectCvv', s.token, { cvv: '123' });
      assert.equal(c.status, 200);
      const p = await post(b.base, '/CvvOperations/charge', c.body.token);
      assert.equal(p.body.result.status, 'approved');
      const v = await post(a.base, '/CvvOperations/validateToken', key, { token: p.body.token });
      assert.equal(v.body.valid, true);
      assert.equal(v.body.current, true);
      assert.equal(v.body.session.status, 'completed');
    });

    it('200 races of one token sent to both instances at once: exactly one winner each time, never two charges', async () => {
      let winsA = 0;
      let winsB = 0;
      const charged: string[] = [];
      for (let i = 0; i < 100; i++) {
        const s = await newSession();
        // Identical bodies: the loser gets 409, or (arriving after the winner finished) the winner's response replayed.
        const collect = await Promise.all([a, b].map((x) => post(x.base, '/CvvOperations/collectCvv', s.token, { cvv: '123' })));
        const ok = collect.filter((r) => r.status === 200);
        assert.ok(ok.length >= 1, `collect race ${i}: ${collect.map((r) => r.status).join(', ')}`);
        assert.equal(new Set(ok.map((r) => r.body.token)).size, 1, `collect race ${i}: two different tokens were produced`);
        if (ok.length === 1) assert.equal(collect.filter((r) => r.status === 409).length, 1);
        else assert.deepEqual(ok[0]!.body, ok[1]!.body);
        // Different bodies, so the replay rule cannot answer the loser: exactly one may charge.
        const charge = await Promise.all(
          [a, b].map((x, j) => post(x.base, '/CvvOperations/charge', ok[0]!.body.token, { amount: { value: 500 - j, currency: 'EUR' } })),
        );
        assert.equal(charge.filter((r) => r.status === 409).length, 1, `charge race ${i}: ${charge.map((r) => r.status).join(', ')}`);
        const won = charge.filter((r) => r.status === 200);
        assert.equal(won.length, 1, `charge race ${i}: ${charge.map((r) => r.status).join(', ')}`);
        if (charge[0]!.status === 200) winsA++;
        else winsB++;
        charged.push(s.id);
      }
      const store = await KyselyStore.open(url);
      try {
        const rows = await store.db.selectFrom('charges').select(['session_id']).where('session_id', 'in', charged).execute();
        assert.equal(rows.length, 100, 'exactly one charge per session');
      } finally {
        await store.close();
      }
      assert.ok(winsA + winsB === 100);
    });

    it('every webhook event is delivered exactly once although both instances run the outbox', async () => {
      const store = await KyselyStore.open(url);
      try {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const pending = await store.db.selectFrom('webhook_outbox').select('id').where('status', '!=', 'delivered').execute();
          if (pending.length === 0) break;
          if (Date.now() > deadline) assert.fail(`${pending.length} deliveries still pending`);
          await new Promise((r) => setTimeout(r, 250));
        }
        const total = await store.db.selectFrom('webhook_outbox').select('event_id').execute();
        const ids = received.map((e) => e.id);
        assert.equal(ids.length, total.length, 'one delivery per outbox row');
        assert.equal(new Set(ids).size, ids.length, 'no event delivered twice');
        // Per session: cvv.collected, charge.succeeded, session.completed.
        assert.equal(ids.length, 101 * 3);
      } finally {
        await store.close();
      }
    });
  });
}
