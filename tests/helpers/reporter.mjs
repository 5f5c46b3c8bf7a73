/**
 * The test reporter `npm test` uses (node --test-reporter): one line per test
 * file's top-level suite, what the tests print (reports such as the round-trip
 * counts), then every skipped test with its reason and every failure with its
 * error, and the totals. The default TAP output ran to thousands of lines with
 * the skip reasons buried in it.
 */
import { relative } from 'node:path';
import { inspect } from 'node:util';

const where = (data) => (data.file ? `${relative(process.cwd(), data.file)}${data.line ? `:${data.line}` : ''}` : '');
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** @param {AsyncIterable<{ type: string; data: any }>} source */
export default async function* report(source) {
  const skipped = [];
  const failed = [];
  let suiteFailures = 0;
  const todo = [];
  const totals = {};
  /** The names of the tests being run, by nesting level (for a failure's full name). */
  const path = [];
  let tests = 0;
  for await (const { type, data } of source) {
    if (type === 'test:start') {
      path[data.nesting] = data.name;
      path.length = data.nesting + 1;
    } else if (type === 'test:stdout' || type === 'test:stderr') {
      yield `${data.message
        .replace(/\n$/, '')
        .split('\n')
        .map((l) => `  │ ${l}`)
        .join('\n')}\n`;
    } else if (type === 'test:pass' || type === 'test:fail') {
      const isSuite = data.details?.type === 'suite';
      const name = [...path.slice(0, data.nesting), data.name].join(' › ');
      if (!isSuite) tests++;
      if (data.skip !== undefined) skipped.push({ name, where: where(data), reason: data.skip === true ? '(no reason given)' : data.skip });
      else if (data.todo !== undefined) todo.push({ name, where: where(data), reason: data.todo === true ? '' : data.todo });
      else if (type === 'test:fail' && !isSuite) failed.push({ name, where: where(data), error: data.details?.error });
      // A suite that failed by itself (a hook: e.g. the response check in the harness's close()), not only through its tests.
      else if (type === 'test:fail' && data.details?.error?.failureType !== 'subtestsFailed') {
        suiteFailures++;
        failed.push({ name: `${name} (the suite itself: ${data.details?.error?.failureType ?? 'failed'})`, where: where(data), error: data.details?.error });
      }
      if (data.nesting === 0) {
        const mark = type === 'test:fail' ? '✖' : data.skip !== undefined ? '-' : '✔';
        yield `${mark} ${data.name} (${seconds(data.details?.duration_ms ?? 0)})\n`;
      }
    } else if (type === 'test:diagnostic' && data.nesting === 0) {
      const m = /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) (\S+)$/.exec(data.message);
      if (m) totals[m[1]] = m[2];
      else yield `  ${data.message}\n`;
    }
  }
  if (skipped.length) {
    yield `\nSkipped (${skipped.length}):\n`;
    for (const s of skipped) yield `  - ${s.name} (${s.where}): ${s.reason}\n`;
  }
  if (todo.length) {
    yield `\nTo do (${todo.length}):\n`;
    for (const t of todo) yield `  - ${t.name} (${t.where}) ${t.reason}\n`;
  }
  if (failed.length) {
    yield `\nFailed (${failed.length}):\n`;
    for (const f of failed) {
      // A subtest failing only because it was cancelled with its parent says so; its cause is the parent's failure.
      const err = f.error?.cause ?? f.error;
      const text = err instanceof Error ? (err.stack ?? err.message) : inspect(err, { depth: 4 });
      yield `\n✖ ${f.name}\n  at ${f.where}\n${String(text).replace(/^/gm, '    ')}\n`;
    }
  }
  yield (
    `\n${tests} tests: ${totals.pass ?? '?'} passed, ${totals.fail ?? '?'} failed, ${totals.cancelled ?? '?'} cancelled, ${totals.skipped ?? '?'} skipped, ${totals.todo ?? '?'} to do` +
    (suiteFailures ? `; ${suiteFailures} suite${suiteFailures > 1 ? 's' : ''} failed in a hook` : '') +
    ` (${seconds(Number(totals.duration_ms ?? 0))})\n`
  );
}
