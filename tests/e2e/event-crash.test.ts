import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Recorded, RecordingServer } from '../helpers/recording-server.js';
import { createMerchantWithCli, type ServerProcess, startServerProcess } from '../helpers/server-process.js';

/**
 * An operation's state change and its webhook event are written in one
 * transaction (issue 12): a crash can lose neither one without the other.
 *
 * The real server runs as a child process over a SQLite file, with
 * tests/helpers/crash-in-unit.mjs loaded into it: it SIGKILLs the process
 * inside the collectCvv unit, either as the unit is about to write the
 * `cvv.collected` outbox row (the token rotation and the CVV already written,
 * not committed) or just after that unit's COMMIT (nothing delivered yet).
 * A webhook receiver in this process answers 200 to every delivery.
 */

const CRASH_MODULE = fileURLToPath(new URL('../helpers/crash-in-unit.mjs', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Receiver extends RecordingServer {
  static start(): Promise<Receiver> {
    return RecordingServer.listen((s) => new Receiver(s));
  }
  protected override respond(_rec: Recorded, res: http.ServerResponse): void {
    res.writeHead(200).end();
  }
  /** The deliveries of `type` about session `id` (each attempt counts). */
  deliveries(type: string, id: string): Array<{ type: string; data: { session: string } }> {
    return this.requests.map((r) => JSON.parse(r.body) as { type: string; data: { session: string } }).filter((e) => e.type === type && e.data.session === id);
  }
}

async function call(base: string, method: string, path: string, bearer: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

describe(
  "a crash inside an operation's transaction (real server process, SQLite): the state change and its webhook event stay together",
  { timeout: 120_000 },
  () => {
    let dir: string;
    let env: Record<string, string>;
    let receiver: Receiver;
    let testKey: string;
    let server: ServerProcess | null = null;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'cvvops-event-crash-'));
      receiver = await Receiver.start();
      env = {
        PUBLIC_BASE_URL: '',
        HOST: '127.0.0.1',
        CVVOPS_WORKERS: '1',
        DATABASE_URL: `sqlite:${join(dir, 'cvvops.db')}`,
        CVVOPS_MASTER_KEY: Buffer.alloc(32, 9).toString('base64'),
        CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
        CVVOPS_RATE_LIMIT: 'off',
        CVVOPS_DEMO: 'off',
      };
      testKey = (await createMerchantWithCli(env, 'EventCrash')).testKey;
      server = await startServerProcess(env);
      const hook = await call(server.base, 'POST', '/WebhookEndpoints', testKey, { url: receiver.url('/hooks'), events: ['cvv.collected'] });
      assert.equal(hook.status, 201, JSON.stringify(hook.body));
      await server.stop();
      server = null;
    });

    after(async () => {
      await server?.stop();
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** Starts a server that will die inside the collectCvv unit, creates a session and sends collectCvv: the call gets no answer. */
    async function collectAndCrash(when: 'before-event' | 'after-commit'): Promise<{ id: string; token: string }> {
      const doomed = await startServerProcess({ ...env, CRASH_IN_UNIT: `${when}:cvv.collected` }, ['--import', CRASH_MODULE]);
      const died = new Promise<NodeJS.Signals | null>((r) => doomed.child.once('exit', (_code, signal) => r(signal)));
      try {
        const card = await call(doomed.base, 'POST', '/Cards', testKey, { number: '4000000000001018', expMonth: 12, expYear: 2030 });
        assert.equal(card.status, 201, JSON.stringify(card.body));
        const s = await call(doomed.base, 'POST', '/CvvOperations', testKey, { card: card.body.token, operations: ['collectCvv'] });
        assert.equal(s.status, 201, JSON.stringify(s.body));
        await assert.rejects(call(doomed.base, 'POST', '/CvvOperations/collectCvv', s.body.token, { cvv: '123' }), 'the server died before answering');
        assert.equal(await died, 'SIGKILL');
        return { id: s.body.id, token: s.body.token };
      } finally {
        await doomed.stop();
      }
    }

    async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        if (check()) return true;
        await sleep(100);
      }
      return check();
    }

    it('killed just after the COMMIT: restarted, the CVV is collected and its event is delivered', async () => {
      const s = await collectAndCrash('after-commit');
      assert.equal(receiver.deliveries('cvv.collected', s.id).length, 0, 'nothing was delivered before the crash');
      server = await startServerProcess(env);
      assert.ok(await waitFor(() => receiver.deliveries('cvv.collected', s.id).length > 0, 15_000), 'the restarted server delivers the event the unit wrote');
      const got = await call(server.base, 'GET', `/CvvOperations/${s.id}`, testKey);
      assert.equal(got.status, 200);
      assert.equal(got.body.results.collectCvv?.status, 'succeeded', JSON.stringify(got.body.results));
      // The old token: a different call is refused (the committed unit rotated it); the same call gets the unit's replay record.
      const other = await call(server.base, 'POST', '/CvvOperations/collectCvv', s.token, { cvv: '999' });
      assert.equal(other.status, 409, JSON.stringify(other.body));
      const replay = await call(server.base, 'POST', '/CvvOperations/collectCvv', s.token, { cvv: '123' });
      assert.equal(replay.status, 200);
      assert.equal(replay.body.result.status, 'succeeded');
      assert.equal(receiver.deliveries('cvv.collected', s.id).length, 1, 'a replay raises no second event');
      await server.stop();
      server = null;
    });

    it('killed as the event was about to be written: restarted, neither the CVV nor the event exists, and the same token works once', async () => {
      const s = await collectAndCrash('before-event');
      server = await startServerProcess(env);
      const got = await call(server.base, 'GET', `/CvvOperations/${s.id}`, testKey);
      assert.equal(got.status, 200);
      assert.equal(got.body.results.collectCvv, undefined, `nothing of the unit was kept: ${JSON.stringify(got.body.results)}`);
      const again = await call(server.base, 'POST', '/CvvOperations/collectCvv', s.token, { cvv: '123' });
      assert.equal(again.status, 200, `the token was never rotated: ${JSON.stringify(again.body)}`);
      assert.ok(await waitFor(() => receiver.deliveries('cvv.collected', s.id).length > 0, 15_000), 'the retried operation delivers its event');
      // No event without its state change: one written by the killed unit would be older than the retried one's,
      // so the outbox (oldest first) would have delivered it by now.
      assert.equal(receiver.deliveries('cvv.collected', s.id).length, 1, 'no event without its state change');
      await server.stop();
      server = null;
    });
  },
);
