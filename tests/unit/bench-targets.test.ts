import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { evaluateTargets } from '../../bench/lib/targets.js';
import type { BenchResults } from '../../bench/lib/types.js';

/**
 * The benchmark's verdicts (bench/lib/targets.ts) over the committed results:
 * recomputed from the figures they were drawn from, and moved across each
 * threshold of PERFORMANCE.md, so a verdict cannot say "met" unless the
 * figure is on the right side of its target.
 */
const load = (file: string): BenchResults => JSON.parse(readFileSync(new URL(`../../bench/${file}`, import.meta.url), 'utf8')) as BenchResults;
const status = (r: BenchResults, prefix: string) => {
  const t = evaluateTargets(r).find((x) => x.target.startsWith(prefix));
  assert.ok(t, `a verdict for ${prefix}`);
  return t.status;
};
const scenario = (r: BenchResults, name: string) => r.scenarios.find((s) => s.name === name)!;

describe('benchmark target verdicts', () => {
  it('the committed SQLite run: the verdicts it recorded are the ones its figures give', () => {
    const r = load('results.json');
    assert.deepEqual(
      evaluateTargets(r).map((t) => [t.target, t.status]),
      r.targets.map((t) => [t.target, t.status]),
    );
    for (const t of r.targets) assert.notEqual(t.status, t.target.includes('PostgreSQL') ? 'met' : 'not measured', t.target);
  });

  it('the committed PostgreSQL run: its verdict follows its figures; 60 % of SQLite is met, just under it is not', () => {
    const r = load('results-postgres.json');
    const pg = scenario(r, 'flows-50');
    const sqlite = scenario(r, 'flows-50-sqlite');
    assert.equal(status(r, 'full flows on PostgreSQL'), pg.rate.median >= sqlite.rate.median * 0.6 ? 'met' : 'not met');
    pg.rate.median = sqlite.rate.median * 0.6;
    assert.equal(status(r, 'full flows on PostgreSQL'), 'met');
    pg.rate.median = sqlite.rate.median * 0.59;
    assert.equal(status(r, 'full flows on PostgreSQL'), 'not met');
  });

  it('ratio targets flip exactly at their thresholds (create 60 %, collectCvv 35 %, validateToken 50 %)', () => {
    const r = load('results.json');
    const express = scenario(r, 'baseline-express').rate.median;
    for (const [name, prefix, min] of [
      ['create', 'POST /CvvOperations', 0.6],
      ['collectCvv', 'collectCvv', 0.35],
      ['validateToken', 'validateToken', 0.5],
    ] as const) {
      const s = scenario(r, name);
      s.rate.median = express * min;
      assert.equal(status(r, prefix), 'met', `${name} at the threshold`);
      s.rate.median = express * min * 0.99;
      assert.equal(status(r, prefix), 'not met', `${name} under it`);
    }
  });

  it('flows, growth, memory and background verdicts follow their figures', () => {
    const r = load('results.json');
    const f50 = scenario(r, 'flows-50');
    assert.equal(status(r, 'full flows, 50 shoppers, SQLite'), 'not met');
    f50.rate.median = 500;
    for (const k of Object.keys(f50.steps!)) f50.steps![k]!.p99 = 50;
    assert.equal(status(r, 'full flows, 50 shoppers, SQLite'), 'met');
    f50.steps![Object.keys(f50.steps!)[0]!]!.p99 = 51;
    assert.equal(status(r, 'full flows, 50 shoppers, SQLite'), 'not met', 'one step over 50 ms p99 fails it');

    const growth = scenario(r, 'growth');
    growth.growth!.ratio = 0.89;
    assert.equal(status(r, 'growth'), 'not met');
    growth.growth!.ratio = 0.9;
    assert.equal(status(r, 'growth'), 'met');

    const soak = scenario(r, 'soak');
    const MB = 1e6; // as bench/lib/targets.ts counts
    for (const x of [f50, soak]) x.peakRss.sum = 180 * MB;
    soak.soak!.growth = 0.1;
    assert.equal(status(r, 'memory'), 'met', 'a peak of 180 MB and +10 % over the soak');
    soak.soak!.growth = 0.11;
    assert.equal(status(r, 'memory'), 'not met', 'growth over 10 %');
    soak.soak!.growth = 0.05;
    soak.peakRss.sum = 181 * MB;
    assert.equal(status(r, 'memory'), 'not met', 'no growth, but a peak over 180 MB');

    assert.equal(status(r, 'background'), 'not met');
    r.background!.drained = false;
    assert.equal(status(r, 'background'), 'not met');
  });
});
