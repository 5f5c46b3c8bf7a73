import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { createDeps, type Deps } from '../../server/deps.js';
import { ManualTimer } from '../../server/domain/clock.js';
import { MISS_REFRESH_INTERVAL_MS, OriginRegistry } from '../../server/domain/origins.js';
import { createLogger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { auth, type Harness, makeHarness, makeSession } from '../helpers/harness.js';

/**
 * Security review, point 9: a merchant created with the CLI while the server
 * runs (another process, writing to the same database) can be used at once:
 * its origins' CORS preflights are answered without waiting for the
 * registry's periodic refresh. A preflight from an origin the registry does
 * not know makes it read the store again, coalesced and rate-limited, so a
 * flood of unknown origins cannot hammer the database.
 */
/** Polls a condition (the server answers over real sockets); fails after about a second. */
const until = async (cond: () => boolean, what = 'the condition') => {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), `timed out waiting for ${what}`);
};

describe('the origin registry learns a new merchant at once', () => {
  let h: Harness;
  /** The registry's monotonic timer, moved by the tests: no test waits for its miss interval to pass. */
  const timer = new ManualTimer();
  /** The last miss-driven read is older than the interval: the next miss reads at once. */
  const intervalPassed = () => timer.advance(MISS_REFRESH_INTERVAL_MS);
  /** Another process's view of the same database: what `cvvops merchant create` uses. */
  let cli: Deps;
  let reads = 0;

  before(async () => {
    h = await makeHarness({ timer });
    cli = await createDeps(h.config, createLogger('silent'), { clock: h.clock, masterKey: new Secret(h.masterKey) });
    const merchants = h.deps.store.merchants;
    const list = merchants.listAllAllowedOrigins.bind(merchants);
    merchants.listAllAllowedOrigins = async () => {
      reads++;
      return list();
    };
  });
  after(async () => {
    await cli?.close();
    await h?.close();
  });

  const preflight = (origin: string, path = '/CvvOperations/collectCvv') =>
    request(h.app)
      .options(path)
      .set('Origin', origin)
      .set('Access-Control-Request-Method', 'POST')
      .set('Access-Control-Request-Headers', 'authorization, content-type');

  it('a preflight from the origin of a merchant created by another process is answered at once (204)', async () => {
    const origin = `https://new-${randomBytes(4).toString('hex')}.example`;
    intervalPassed();
    assert.equal((await preflight(origin)).status, 403, 'control: unknown before it exists');
    intervalPassed();
    const created = await cli.merchants.create({ name: 'New shop', origins: [origin] });
    // No refresh of this process's registry: the next preflight must find it by itself.
    const res = await preflight(origin);
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], origin);
    // And the real call from that origin is readable cross-origin (Access-Control-Allow-Origin on it too).
    const s = await makeSession(h, created.testKey.expose());
    const call = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', origin).send({ cvv: '123' });
    assert.equal(call.status, 200);
    assert.equal(call.headers['access-control-allow-origin'], origin);
  });

  it('the real call from a new origin, arriving where no preflight was answered (another instance), carries CORS headers', async () => {
    const origin = `https://other-${randomBytes(4).toString('hex')}.example`;
    intervalPassed();
    const created = await cli.merchants.create({ name: 'Other shop', origins: [origin] });
    const s = await makeSession(h, created.testKey.expose());
    const call = await request(h.app).post('/CvvOperations/collectCvv').set(auth(s.token)).set('Origin', origin).send({ cvv: '123' });
    assert.equal(call.status, 200);
    assert.equal(call.headers['access-control-allow-origin'], origin);
  });

  it('an origin no merchant allows is still refused after the refresh, without CORS headers', async () => {
    intervalPassed();
    const res = await preflight('https://evil.example');
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'origin_not_allowed');
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });

  it('a known origin costs no store read', async () => {
    const origin = `https://known-${randomBytes(4).toString('hex')}.example`;
    await cli.merchants.create({ name: 'Known', origins: [origin] });
    await h.deps.origins.refresh();
    const n = reads;
    for (let i = 0; i < 20; i++) assert.equal((await preflight(origin)).status, 204);
    assert.equal(reads, n);
  });

  it('a flood of preflights from random unknown origins within one interval costs one read; the rest share the next', async () => {
    intervalPassed();
    const n = reads;
    const registry = h.deps.origins;
    const allows = registry.allows.bind(registry);
    let asked = 0;
    registry.allows = (origin) => {
      asked++;
      return allows(origin);
    };
    try {
      // 400 preflights at once, each from a fresh origin no merchant allows; the timer does not move.
      const all = Array.from({ length: 400 }, () => preflight(`https://flood-${randomBytes(6).toString('hex')}.example`).then((r) => r.status));
      await until(() => asked === 400 && timer.sleeping === 1, 'every preflight to reach the registry and the next read to wait');
      assert.equal(reads - n, 1, 'one read for the misses of this interval, never one per request');
      // The interval passes: one more read answers every miss that queued behind the first.
      timer.advance(MISS_REFRESH_INTERVAL_MS);
      const statuses = await Promise.all(all);
      assert.ok(
        statuses.every((s) => s === 403),
        'all refused',
      );
      assert.equal(reads - n, 2, 'two reads for 400 preflights');
    } finally {
      registry.allows = allows;
    }
  });

  it('simultaneous misses share one read', async () => {
    intervalPassed();
    const n = reads;
    const answers = await Promise.all(Array.from({ length: 30 }, () => h.deps.origins.allows(`https://burst-${randomBytes(6).toString('hex')}.example`)));
    assert.ok(answers.every((a) => a === false));
    assert.equal(reads - n, 1, 'one read for 30 simultaneous misses');
  });
});

describe('OriginRegistry: miss-driven reads', () => {
  /** A store whose reads finish when the test says so, and which counts them. */
  function slowStore() {
    let origins: string[] = [];
    const pending: Array<() => void> = [];
    const store = {
      reads: 0,
      set(o: string[]) {
        origins = o;
      },
      release() {
        for (const f of pending.splice(0)) f();
      },
      async listAllAllowedOrigins(): Promise<string[]> {
        store.reads++;
        const snapshot = [...origins];
        await new Promise<void>((r) => pending.push(r));
        return snapshot;
      },
    };
    return store;
  }
  it('a miss that arrives while a read is in flight waits for a read that starts after it (the one in flight may predate the merchant)', async () => {
    const store = slowStore();
    const reg = new OriginRegistry({ merchants: store }, 'https://cvv.test', { missIntervalMs: 20 });
    const first = reg.allows('https://a.example');
    await until(() => store.reads === 1);
    // The merchant is created now, after the first read took its snapshot.
    store.set(['https://a.example']);
    const second = reg.allows('https://a.example');
    const third = reg.allows('https://a.example');
    store.release();
    assert.equal(await first, false, 'the first read saw the store before the merchant existed');
    await until(() => store.reads === 2);
    store.release();
    assert.equal(await second, true);
    assert.equal(await third, true);
    assert.equal(store.reads, 2, 'the two later misses shared one read');
  });

  it('miss-driven reads are spaced and one at a time', async () => {
    const timer = new ManualTimer();
    const store = {
      reads: 0,
      at: [] as number[],
      async listAllAllowedOrigins() {
        store.reads++;
        store.at.push(timer.now());
        return [];
      },
    };
    const reg = new OriginRegistry({ merchants: store }, 'https://cvv.test', { missIntervalMs: 100, timer });
    // A miss every 10 ms for 450 ms.
    const all: Promise<boolean>[] = [];
    for (let t = 0; t < 450; t += 10) {
      all.push(reg.allows(`https://x${t}.example`));
      await new Promise((r) => setImmediate(r));
      timer.advance(10);
    }
    // The misses after 400 ms wait for the read due at 500.
    assert.equal(timer.sleeping, 1);
    timer.advance(500 - timer.now());
    assert.deepEqual(
      await Promise.all(all),
      all.map(() => false),
    );
    assert.deepEqual(store.at, [0, 100, 200, 300, 400, 500], `reads at ${store.at.join(', ')} ms for ${all.length} misses`);
  });

  it('a failing store makes the miss a refusal, not an error', async () => {
    const reg = new OriginRegistry(
      {
        merchants: {
          async listAllAllowedOrigins() {
            throw new Error('down');
          },
        },
      },
      'https://cvv.test',
      { missIntervalMs: 1 },
    );
    assert.equal(await reg.allows('https://a.example'), false);
    assert.equal(await reg.allows('https://cvv.test'), true, 'its own origin needs no store');
  });
});
