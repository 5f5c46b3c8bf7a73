/**
 * Loaded into a server process with `node --import` (tests/e2e/event-crash.test.ts):
 * kills the process with SIGKILL inside the transaction unit that writes a
 * given webhook event, with no change to the server. CRASH_IN_UNIT is
 * `<when>:<event type>`:
 * - `before-event`: as the unit is about to write the event's outbox row
 *   (the state change before it is written, uncommitted);
 * - `after-commit`: just after that unit's COMMIT returned (nothing delivered yet).
 * It wraps better-sqlite3's Statement.run, which runs every write and the
 * transaction's BEGIN and COMMIT.
 */
import { createRequire } from 'node:module';

const spec = process.env.CRASH_IN_UNIT;
if (spec) {
  const [when, type] = spec.split(':');
  if ((when !== 'before-event' && when !== 'after-commit') || !type) throw new Error(`CRASH_IN_UNIT: ${spec}`);
  const Database = createRequire(import.meta.url)('better-sqlite3');
  const probe = new Database(':memory:');
  const Statement = Object.getPrototypeOf(probe.prepare('SELECT 1'));
  probe.close();
  const run = Statement.run;
  let armed = false;
  Statement.run = function (...args) {
    if (this.source.startsWith('insert into "webhook_outbox"') && args.flat().some((a) => typeof a === 'string' && a.includes(`"type":"${type}"`))) {
      if (when === 'before-event') process.kill(process.pid, 'SIGKILL');
      armed = true;
    }
    const out = run.apply(this, args);
    if (armed && this.source === 'COMMIT') process.kill(process.pid, 'SIGKILL');
    return out;
  };
}
