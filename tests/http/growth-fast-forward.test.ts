import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { ManualClock } from '../../server/domain/clock.js';
import { Sweeper } from '../../server/domain/sweeper.js';
import type { KyselyStore } from '../../server/store/kysely-store.js';
import { auth, collect, type Harness, makeCard, makeHarness, makeMerchant, type TestMerchant } from '../helpers/harness.js';

const DAY = 24 * 3600 * 1000;
const DAYS = 120;
const RETENTION_DAYS = 90;
const FLOWS_A_DAY = 12;

/**
 * The database stops growing: 120 simulated days of steady traffic (each day
 * the same number of full flows, their webhooks delivered, then the clock
 * moved a day and the sweeper run), fast-forwarded with an injected clock. Once
 * the first retention period is over, every day deletes as much as it adds,
 * and SQLite reuses the freed pages: the file at day 120 is the size it had at
 * day 90, within 20 % (without the retention sweep it would hold a third more).
 */
describe('the database stops growing (120 days fast-forwarded, SQLite)', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
  let h: Harness;
  let m: TestMerchant;
  let receiver: http.Server;
  let cards: string[];

  before(async () => {
    h = await makeHarness({ clock, env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    receiver = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200).end());
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    const w = await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url, events: ['cvv.collected', 'charge.succeeded', 'session.completed', 'session.expired'] });
    assert.equal(w.status, 201);
    cards = [];
    for (let i = 0; i < 4; i++) cards.push(await makeCard(h, m.testKey, { number: '4000000000001018' }));
  });
  after(async () => {
    receiver.close();
    await h.close();
  });

  /** The database file's size, its WAL checkpointed into it first (the file never shrinks: it stops growing when freed pages are reused). */
  const fileSize = (): number => {
    (h.deps.store as KyselyStore).checkpointNow();
    return statSync(join(h.dir, 'cvvops.db')).size;
  };

  it('day 120 is within 20 % of day 90', { timeout: 120_000 }, async () => {
    const sizes: number[] = [];
    for (let day = 1; day <= DAYS; day++) {
      for (let i = 0; i < FLOWS_A_DAY; i++) {
        const s = await request(h.app)
          .post('/CvvOperations')
          .set(auth(m.testKey))
          .send({ card: cards[i % cards.length], operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 1999, currency: 'EUR' } });
        assert.equal(s.status, 201);
        if (i % 4 === 3) continue; // some sessions are left to expire
        let token = (await collect(h, s.body.token)).body.token as string;
        token = (await request(h.app).post('/CvvOperations/threeDS').set(auth(token)).send({})).body.token;
        const c = await request(h.app).post('/CvvOperations/charge').set(auth(token)).send({});
        assert.equal(c.body.result?.status, 'approved', JSON.stringify(c.body));
      }
      while ((await h.deps.webhooks.tick(50, 10)) > 0);
      clock.advance(DAY);
      await new Sweeper(h.deps.store, h.deps.tokens, h.clock, h.deps.log, h.deps.webhooks, h.deps.charges, {
        retentionDays: RETENTION_DAYS,
        holder: 'ff',
      }).tick();
      while ((await h.deps.webhooks.tick(50, 10)) > 0); // the expiry events
      sizes[day] = fileSize();
    }
    const at90 = sizes[RETENTION_DAYS]!;
    const at120 = sizes[DAYS]!;
    const at30 = sizes[30]!;
    console.log(
      `database file, bytes: day 30 ${at30}, day 60 ${sizes[60]}, day 90 ${at90}, day 105 ${sizes[105]}, day 120 ${at120} (${FLOWS_A_DAY} sessions a day)`,
    );
    assert.ok(at90 > at30 * 1.5, `the traffic filled the database (day 30 ${at30}, day 90 ${at90} bytes)`);
    assert.ok(at120 <= at90 * 1.2, `day 120 (${at120} bytes) within 20 % of day 90 (${at90})`);
  });
});
