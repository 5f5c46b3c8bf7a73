import { Command, InvalidArgumentError } from 'commander';
import { PatchMerchantBody } from './http/schemas.js';
import { ConfigError, keyProviderConfig, loadConfig, loadEnvFile } from './config.js';
import { createDeps } from './deps.js';
import { isoTime } from './domain/clock.js';
import { CURRENT_VERSION, KEY_PURPOSES, type KeyPurpose, ROTATABLE_PURPOSES, type RotatablePurpose } from './domain/keyring.js';
import { DATA_KEY_ACTIVATION_MS, DATA_KEY_RELOAD_MS, listDataKeys, rewrapDataKeys, rotateDataKey } from './domain/data-keys.js';
import { KeyProviderError } from './domain/key-provider.js';
import { PROVIDER_RECORD, type ProviderRecord, replaceRoot } from './domain/key-setup.js';
import type { ProtectedCounts } from './store/store.js';
import { createLogger } from './log.js';
import { Secret } from './secret.js';
import { KyselyStore } from './store/kysely-store.js';
import { pino } from 'pino';
import { VERSION } from './version.js';

/** The `cvvops` command. Logs go to stderr so stdout carries only what a command prints. */
async function withDeps<T>(fn: (d: Awaited<ReturnType<typeof createDeps>>) => Promise<T>): Promise<T> {
  let config;
  try {
    loadEnvFile();
    config = loadConfig(process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(78);
    }
    throw e;
  }
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn', pino.destination(2));
  const d = await createDeps(config, log);
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

const program = new Command('cvvops').version(VERSION).description('cvvops server administration');

const merchant = program.command('merchant').description('merchants and their API keys');
merchant
  .command('create')
  .description('create a merchant with its test and live API keys (shown once); its allowed origins are set in both modes')
  .requiredOption('--name <name>', "the merchant's name")
  .option(
    '--origin <origin>',
    'an allowed origin of both modes, exactly scheme://host[:port] (repeatable)',
    (v: string, acc: string[]) => [...acc, v],
    [] as string[],
  )
  .option('--json', 'print exactly one JSON object {"merchantId","testKey","liveKey"} and nothing else')
  .action(async (opts: { name: string; origin: string[]; json?: boolean }) => {
    await withDeps(async (d) => {
      const { merchant: m, testKey, liveKey } = await d.merchants.create({ name: opts.name, origins: opts.origin });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ merchantId: m.id, testKey: testKey.expose(), liveKey: liveKey.expose() })}\n`);
      } else {
        // Settings are per mode (test and live); a new merchant starts with these origins in both.
        process.stdout.write(
          `merchant ${m.id} (${m.name})\nallowed origins, test and live modes: ${m.allowedOrigins.join(', ') || '(none)'}\n` +
            `test key: ${testKey.expose()}\nlive key: ${liveKey.expose()}\nThe keys are shown only now; store them safely.\n`,
        );
      }
    });
  });

/** Prints `value` as one JSON line (`--json`), or `text` for a person. */
function print(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : text());
}

/** A mode option's value, or a usage error. */
function modeOf(v: string): 'test' | 'live' {
  if (v !== 'test' && v !== 'live') throw new InvalidArgumentError('test or live');
  return v;
}

/** A duration: seconds, or a number with s, m, h or d. */
function durationMs(v: string): number {
  const m = /^(\d{1,6})(s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('a duration such as 0, 90s, 30m, 24h or 7d');
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
}

const repeat = (v: string, acc: string[]) => [...acc, v];

merchant
  .command('list')
  .description('every merchant: id, creation time, name')
  .option('--json', 'print one JSON array')
  .action(async (opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      const all = (await d.merchants.list()).map((m) => ({ id: m.id, name: m.name, createdAt: new Date(m.createdAt).toISOString().replace(/\.\d{3}Z$/, 'Z') }));
      print(opts.json, all, () => (all.length ? all.map((m) => `${m.id}  ${m.createdAt}  ${m.name}\n`).join('') : 'no merchants\n'));
    });
  });

merchant
  .command('show')
  .description("a merchant's settings in each mode and its API keys (by their last four characters; never the keys)")
  .argument('<merchant>', 'the merchant id (mer_…)')
  .option('--json', 'print one JSON object')
  .action(async (id: string, opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      const m = await d.merchants.describe(id);
      const mode = (name: string, x: typeof m.test) =>
        `${name} mode\n  allowed origins: ${x.allowedOrigins.join(', ') || '(none)'}\n  proxy targets: ${x.allowedProxyTargets.join(', ') || '(none)'}\n` +
        `  processor: ${x.processor.type}${'url' in x.processor ? ` ${String(x.processor.url)}` : ''}\n  CVV block threshold: ${x.cvvBlockThreshold}\n  live CVV lifetime: ${x.cvcSessionTtlSeconds} s\n`;
      print(opts.json, m, () =>
        [
          `merchant ${m.id} (${m.name}), created ${m.createdAt}\n`,
          mode('test', m.test),
          mode('live', m.live),
          'API keys\n',
          ...m.keys.map(
            (k) =>
              `  ${k.id}  ${k.mode}  …${k.suffix}  created ${k.createdAt}  ${k.active ? (k.endsAt ? `ends ${k.endsAt}` : 'active') : `ended ${k.endsAt}`}\n`,
          ),
        ].join(''),
      );
    });
  });

merchant
  .command('update')
  .description("change one mode's settings (the others stay as they are)")
  .argument('<merchant>', 'the merchant id (mer_…)')
  .requiredOption('--mode <mode>', 'test or live', modeOf)
  .option('--origin <origin>', 'an allowed origin, scheme://host[:port]; repeat it for each (replaces the list)', repeat, [] as string[])
  .option('--no-origins', 'allow no origin at all')
  .option('--proxy-target <url>', 'an allowed proxy target URL prefix; repeat it for each (replaces the list)', repeat, [] as string[])
  .option('--threshold <n>', 'incorrect-CVC declines that block a card number (1-20)', (v) => Number(v))
  .option('--cvc-ttl <seconds>', 'how long a live CVV lives, in seconds (30-3600)', (v) => Number(v))
  .option('--json', "print the mode's settings as one JSON object")
  .action(
    async (
      id: string,
      opts: { mode: 'test' | 'live'; origin: string[]; origins: boolean; proxyTarget: string[]; threshold?: number; cvcTtl?: number; json?: boolean },
    ) => {
      await withDeps(async (d) => {
        const current = await d.merchants.settings(id, opts.mode);
        if (!current) throw new Error(`no merchant ${id}`);
        // The same rules as PATCH /Merchant.
        const parsed = PatchMerchantBody.safeParse({
          ...(opts.origin.length || !opts.origins ? { allowedOrigins: opts.origins ? opts.origin : [] } : {}),
          ...(opts.proxyTarget.length ? { allowedProxyTargets: opts.proxyTarget } : {}),
          ...(opts.threshold !== undefined ? { cvvBlockThreshold: opts.threshold } : {}),
          ...(opts.cvcTtl !== undefined ? { cvcSessionTtlSeconds: opts.cvcTtl } : {}),
        });
        if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.') || 'settings'}: ${i.message}`).join('; '));
        const patch = parsed.data;
        if (Object.keys(patch).length === 0) throw new Error('nothing to change: give --origin, --no-origins, --proxy-target, --threshold or --cvc-ttl');
        const next = await d.merchants.updateSettings({ merchant: current, mode: opts.mode, keyId: 'cli' }, patch);
        const view = {
          id: next.id,
          mode: next.mode,
          allowedOrigins: next.allowedOrigins,
          allowedProxyTargets: next.allowedProxyTargets,
          cvvBlockThreshold: next.cvvBlockThreshold,
          cvcSessionTtlSeconds: next.cvcSessionTtlSeconds,
        };
        await d.origins.refresh();
        print(opts.json, view, () => `${next.id} ${next.mode} mode updated: ${Object.keys(patch).join(', ')}\n`);
      });
    },
  );

const keys = program.command('keys').description('API keys (roll, revoke) and token signing keys (rotate)');
keys
  .command('roll')
  .description("a new API key for one mode; the mode's keys still working keep working for the grace period, then stop")
  .argument('<merchant>', 'the merchant id (mer_…)')
  .requiredOption('--mode <mode>', 'test or live', modeOf)
  .option('--grace <duration>', 'how long the old keys keep working: 0, 90s, 30m, 24h, 7d', durationMs, 24 * 3_600_000)
  .option('--json', 'print one JSON object {"key","mode","ending":[…]} (the key is shown only now)')
  .action(async (id: string, opts: { mode: 'test' | 'live'; grace: number; json?: boolean }) => {
    await withDeps(async (d) => {
      const r = await d.merchants.rollKey(id, opts.mode, opts.grace);
      print(opts.json, { key: r.key.expose(), mode: opts.mode, ending: r.ending }, () =>
        [
          `new ${opts.mode} key: ${r.key.expose()}\nIt is shown only now; store it safely.\n`,
          ...r.ending.map((k) => `the key ending …${k.suffix} (${k.id}) stops at ${k.endsAt}\n`),
        ].join(''),
      );
    });
  });

keys
  .command('revoke')
  .description('stop an API key now')
  .argument('<merchant>', 'the merchant id (mer_…)')
  .argument('<key>', "the key's id (key_…) or its last four characters (after --, when they start with -: revoke -- mer_… -a1b)")
  .option('--json', 'print one JSON object')
  .action(async (id: string, which: string, opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      const k = await d.merchants.revokeKey(id, which);
      print(opts.json, { revoked: k.id, suffix: k.suffix, mode: k.mode }, () => `revoked the ${k.mode} key …${k.suffix} (${k.id})\n`);
    });
  });

keys
  .command('rotate')
  .description('make a new token signing key active; old keys stay in the JWKS until their tokens have expired')
  .option('--json', 'print one JSON object {"kid"}')
  .action(async (opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      const kid = await d.tokens.rotate('cli');
      print(opts.json, { kid }, () => `active signing key: ${kid}\n`);
    });
  });

/** After how long the active token signing key is reported as due for rotation. */
const SIGNING_KEY_ROTATION_DAYS = 90;
/** What each key purpose protects, and which count says how much of it is stored. */
const PROTECTS: Record<KeyPurpose, [string, keyof ProtectedCounts | null]> = {
  card: ['card numbers and holder names', 'cards'],
  cvv: ['CVVs (with a key share per CVC session)', 'cvcSessions'],
  'signing-key': ["token signing keys' private halves (and webhook secrets made before webhook-secret)", 'signingKeys'],
  'webhook-secret': ['webhook endpoint secrets', 'webhookEndpoints'],
  settings: ['http processor settings (templates, credentials)', 'processorSettings'],
  idempotency: ['stored idempotent responses', 'idempotencyRecords'],
  replay: ['replayable operation responses', 'replayRecords'],
  cavv: ['3-D Secure authentication values', 'cavvs'],
  'api-key': ['API key digests (an HMAC key)', 'apiKeys'],
  fingerprint: ['card-number fingerprints of CVV statuses (an HMAC key)', 'cvvStatuses'],
  demo: ["the demo merchant's test key", null],
  'key-check': ['the start-up key check', null],
};

keys
  .command('status')
  .description("the keys: the master key's source and check, each purpose's key versions and what it protects (counts), the signing keys, and what is due")
  .option('--json', 'print one JSON object')
  .addHelpText('after', '\nExamples:\n  cvvops keys status\n  cvvops keys status --json')
  .action(async (opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      const counts = await d.store.meta.protectedCounts();
      const now = d.clock.now();
      const keys = (await d.store.signingKeys.list()).sort((a, b) => b.activatedAt - a.activatedAt);
      const signing = keys.map((k) => ({
        kid: k.kid,
        alg: k.alg,
        state: k.retiredAt === null ? 'active' : 'retired',
        activatedAt: isoTime(k.activatedAt),
        retiredAt: k.retiredAt === null ? null : isoTime(k.retiredAt),
      }));
      const active = keys.find((k) => k.retiredAt === null);
      const due: string[] = [];
      if (active && now - active.activatedAt > SIGNING_KEY_ROTATION_DAYS * 86_400_000)
        due.push(
          `the active token signing key is ${Math.floor((now - active.activatedAt) / 86_400_000)} days old (over ${SIGNING_KEY_ROTATION_DAYS}): cvvops keys rotate`,
        );
      const recorded = await d.store.meta.get(PROVIDER_RECORD);
      const sealedCounts = await d.store.sealed.versionCounts();
      const stored = await listDataKeys(d.store.meta);
      const keks = d.keyProvider.versions().map((v) => v.version);
      const newestKek = Math.max(...keks);
      const underOld = stored.filter((e) => !e.retiredAt && e.kekVersion !== newestKek).length;
      if (underOld > 0) due.push(`${underOld} data keys are under an older KEK: the running server re-wraps them (or cvvops keys rotate-master --rewrap-now)`);
      const status = {
        master: {
          provider: d.keyProvider.name,
          source:
            d.keyProvider.name === 'pkcs11'
              ? 'the HSM (CVVOPS_PKCS11_*)'
              : d.config.masterKey
                ? process.env.CVVOPS_MASTER_KEY_FILE
                  ? `CVVOPS_MASTER_KEY_FILE (${process.env.CVVOPS_MASTER_KEY_FILE})`
                  : 'CVVOPS_MASTER_KEY'
                : `${d.config.dataDir}/master.key (development key)`,
          check: 'ok',
          record: recorded ? (JSON.parse(recorded) as ProviderRecord) : null,
          keks: keks.map((v) => ({
            version: v,
            state: v === newestKek ? 'wraps' : 'unwraps only',
            dataKeys: stored.filter((e) => !e.retiredAt && e.kekVersion === v).length,
          })),
        },
        purposes: KEY_PURPOSES.map((p) => {
          const [protects, count] = PROTECTS[p];
          const writing = d.keyring.writeVersion(p);
          const versions = d.keyring.versions(p).map((v) => ({
            version: v.version,
            key: d.keyring.derived(p) && v.version === CURRENT_VERSION ? 'HKDF-SHA256 from the master key' : `random, wrapped by the ${d.keyProvider.name} KEK`,
            state: v.version === writing ? 'writes' : v.activeFrom !== null && v.activeFrom > now ? `staged until ${isoTime(v.activeFrom)}` : 'reads only',
            sealed: sealedCounts.find((c) => c.purpose === p && c.version === v.version)?.count ?? 0,
          }));
          const retired = stored.filter((e) => e.purpose === p && e.retiredAt).map((e) => e.version);
          return { purpose: p, versions, retired, protects, stored: count ? counts[count] : null };
        }),
        signingKeys: signing,
        due,
      };
      print(opts.json, status, () =>
        [
          `root: ${status.master.source} (provider ${status.master.provider}), check ${status.master.check}`,
          `KEKs: ${status.master.keks.map((k) => `v${k.version} (${k.state}, ${k.dataKeys} data keys)`).join(', ')}`,
          'purposes (versions):',
          ...status.purposes.map(
            (p) =>
              `  ${p.purpose.padEnd(15)} ${p.versions.map((v) => `v${v.version} (${v.state}${(ROTATABLE_PURPOSES as readonly string[]).includes(p.purpose) ? `, ${v.sealed} sealed` : ''})`).join(', ')}${p.retired.length ? `, retired ${p.retired.map((v) => `v${v}`).join(' ')}` : ''}  ${p.protects}${p.stored === null ? '' : `: ${p.stored} stored`}`,
          ),
          'token signing keys:',
          ...status.signingKeys.map((k) => `  ${k.kid}  ${k.alg}  ${k.state}  since ${k.activatedAt}${k.retiredAt ? `, retired ${k.retiredAt}` : ''}`),
          due.length ? `due:\n${due.map((x) => `  ${x}`).join('\n')}` : 'due: nothing',
          '',
        ].join('\n'),
      );
    });
  });

keys
  .command('rotate-data')
  .description(
    'a new data key for one purpose, wrapped by the key provider: new writes use it after --activate-in (every running instance loads it within 10 s), every older version still opens what it sealed',
  )
  .requiredOption('--purpose <purpose>', `one of ${ROTATABLE_PURPOSES.join(', ')}`, (v: string) => {
    if (!(ROTATABLE_PURPOSES as readonly string[]).includes(v)) throw new InvalidArgumentError(`one of ${ROTATABLE_PURPOSES.join(', ')}`);
    return v as RotatablePurpose;
  })
  .option('--activate-in <duration>', 'how long before new writes use it (default 60s; at least 20s)', durationMs, DATA_KEY_ACTIVATION_MS)
  .option('--json', 'print one JSON object')
  .addHelpText('after', '\nExamples:\n  cvvops keys rotate-data --purpose card\n  cvvops keys rotate-data --purpose cvv --activate-in 5m --json')
  .action(async (opts: { purpose: RotatablePurpose; activateIn: number; json?: boolean }) => {
    if (opts.activateIn < 2 * DATA_KEY_RELOAD_MS) throw new InvalidArgumentError(`--activate-in must be at least ${(2 * DATA_KEY_RELOAD_MS) / 1000}s`);
    await withDeps(async (d) => {
      const e = await rotateDataKey(d.store.meta, d.keyProvider, opts.purpose, d.clock.now(), opts.activateIn);
      // At warn: an audit record the CLI keeps at its default level.
      d.log.warn(
        {
          audit: true,
          event: 'key.created',
          purpose: e.purpose,
          version: e.version,
          provider: d.keyProvider.name,
          kekVersion: e.kekVersion,
          activeFrom: isoTime(e.activeFrom),
        },
        'data key created',
      );
      const out = { purpose: e.purpose, version: e.version, activeFrom: isoTime(e.activeFrom) };
      print(opts.json, out, () => `${out.purpose} data key v${out.version}: new writes use it from ${out.activeFrom}\n`);
    });
  });

keys
  .command('rotate-master')
  .description(
    "a new key-encryption key (KEK) inside the key provider (local: a random key kept wrapped under CVVOPS_MASTER_KEY; pkcs11: a new key object in the HSM): data keys are re-wrapped under it by the running server's background work, and the old KEK is retired once no data key is under it. No environment change, no restart",
  )
  .option('--rewrap-now', 're-wrap every data key now, in this command, instead of leaving it to the server')
  .option('--json', 'print one JSON object')
  .addHelpText('after', '\nExamples:\n  cvvops keys rotate-master\n  cvvops keys rotate-master --rewrap-now --json')
  .action(async (opts: { rewrapNow?: boolean; json?: boolean }) => {
    await withDeps(async (d) => {
      const kekVersion = await d.keyProvider.rotate(d.clock.now());
      d.log.warn({ audit: true, event: 'key.created', kind: 'kek', provider: d.keyProvider.name, kekVersion }, 'key-encryption key created');
      let rewrapped = 0;
      if (opts.rewrapNow) {
        rewrapped = await rewrapDataKeys(d.store.meta, d.keyProvider, Number.MAX_SAFE_INTEGER);
        if (rewrapped > 0)
          d.log.warn(
            { audit: true, event: 'key.rewrapped', provider: d.keyProvider.name, kekVersion, dataKeys: rewrapped },
            'data keys re-wrapped under the newest KEK',
          );
      }
      const left = (await listDataKeys(d.store.meta)).filter((e) => !e.retiredAt && e.kekVersion !== kekVersion).length;
      const out = { provider: d.keyProvider.name, kekVersion, rewrapped, left };
      print(
        opts.json,
        out,
        () =>
          `${out.provider} KEK v${kekVersion} created; new data keys are wrapped under it. ` +
          (left === 0
            ? 'Every data key is under it.\n'
            : `${left} data keys are re-wrapped by the running server within a few minutes (cvvops keys status).\n`),
      );
    });
  });

keys
  .command('replace-root')
  .description(
    'moves every key of this database under another root: a new CVVOPS_MASTER_KEY, or an HSM (CVVOPS_KEY_PROVIDER=pkcs11). The root in use now comes from CVVOPS_OLD_MASTER_KEY (or CVVOPS_OLD_KEY_PROVIDER=pkcs11 and CVVOPS_OLD_PKCS11_*); the new one from the usual settings. Then restart every instance with the new settings',
  )
  .option('--json', 'print one JSON object')
  .addHelpText(
    'after',
    '\nExamples:\n  CVVOPS_OLD_MASTER_KEY=<old> CVVOPS_MASTER_KEY=<new> cvvops keys replace-root\n' +
      '  CVVOPS_OLD_MASTER_KEY=<old> CVVOPS_KEY_PROVIDER=pkcs11 CVVOPS_PKCS11_LIBRARY=/usr/lib/softhsm/libsofthsm2.so CVVOPS_PKCS11_TOKEN_LABEL=cvvops CVVOPS_PKCS11_PIN_FILE=/run/secrets/pin cvvops keys replace-root',
  )
  .action(async (opts: { json?: boolean }) => {
    let config;
    const problems: string[] = [];
    try {
      loadEnvFile();
      config = loadConfig(process.env);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      problems.push(...e.problems);
    }
    const env = process.env;
    const fromCfg = keyProviderConfig(env, problems, 'CVVOPS_OLD_');
    const oldKey = (env.CVVOPS_OLD_MASTER_KEY ?? '').trim();
    const oldMaster = Buffer.from(oldKey, 'base64');
    if (fromCfg.name === 'local' && oldMaster.length !== 32)
      problems.push('CVVOPS_OLD_MASTER_KEY (32 bytes, base64) names the master key the database is under now');
    if (config?.keyProvider.name === 'local' && !config.masterKey) problems.push('CVVOPS_MASTER_KEY names the new master key');
    if (problems.length || !config) {
      process.stderr.write(`Invalid configuration:\n  - ${problems.join('\n  - ')}\n`);
      process.exit(78);
    }
    const log = createLogger(process.env.LOG_LEVEL ?? 'warn', pino.destination(2));
    const store = await KyselyStore.open(config.databaseUrl);
    try {
      await store.migrate();
      const r = await replaceRoot(
        store,
        { cfg: fromCfg, master: fromCfg.name === 'local' ? new Secret(oldMaster) : null },
        { cfg: config.keyProvider, master: config.masterKey },
        Date.now,
        log,
      );
      const out = { provider: r.provider, dataKeysMoved: r.dataKeys, firstVersionsStored: r.firstVersions };
      print(
        opts.json,
        out,
        () =>
          `Every key is now under the ${r.provider.name} provider (${r.dataKeys} data keys re-wrapped, ${r.firstVersions.length} first versions stored). ` +
          'Restart every instance with the new settings; the old root opens nothing new from now on.\n',
      );
    } finally {
      await store.close();
    }
  });

program
  .command('webhooks')
  .description('webhook endpoints')
  .command('test')
  .description('post one signed webhook.test event to an endpoint now (not stored, not retried) and show what it answered')
  .argument('<merchant>', 'the merchant id (mer_…)')
  .argument('<endpoint>', 'the endpoint id (whe_…)')
  .option('--json', 'print one JSON object')
  .action(async (id: string, endpoint: string, opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      const r = await d.webhooks.sendTest(id, endpoint);
      print(opts.json, r, () => `${r.event} to ${r.url}: ${r.status === null ? 'no answer' : `HTTP ${r.status}`}${r.delivered ? ' (delivered)' : ''}\n`);
      if (!r.delivered) process.exitCode = 1;
    });
  });

program
  .command('migrate')
  .description('apply storage migrations')
  .option('--json', 'print one JSON object')
  .action(async (opts: { json?: boolean }) => {
    await withDeps(async (d) => {
      print(opts.json, { migrated: true, engine: d.store.engine }, () => `migrations applied (${d.store.engine})\n`);
    });
  });

program.addHelpText(
  'after',
  `
It reads the same configuration as the server (environment, or .env): DATABASE_URL and CVVOPS_MASTER_KEY.

Examples:
  $ cvvops merchant create --name "My shop" --origin https://shop.example --json
  $ cvvops merchant list
  $ cvvops merchant show mer_…
  $ cvvops merchant update mer_… --mode live --origin https://shop.example --origin https://www.shop.example
  $ cvvops merchant update mer_… --mode test --threshold 5
  $ cvvops keys roll mer_… --mode live --grace 24h     # a new live key; the old one works 24 more hours
  $ cvvops keys revoke mer_… a1b2                      # stop the key ending in a1b2 now
  $ cvvops keys rotate                                  # a new token signing key
  $ cvvops webhooks test mer_… whe_…
  $ cvvops migrate`,
);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`cvvops: ${err instanceof Error ? err.message : String(err)}\n`);
  // A wrong master key or a missing HSM object is a configuration fault (78, EX_CONFIG), as for the server.
  process.exit(err instanceof KeyProviderError ? 78 : 1);
});
