import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { DATA_KEY_ACTIVATION_MS, listDataKeys, loadDataKeys, rotateDataKey } from '../../server/domain/data-keys.js';
import { KeyProviderError, LocalKeyProvider } from '../../server/domain/key-provider.js';
import { replaceRoot } from '../../server/domain/key-setup.js';
import { Keyring, ROTATABLE_PURPOSES } from '../../server/domain/keyring.js';
import { processorAad } from '../../server/domain/merchants.js';
import { openWebhookSecret } from '../../server/domain/webhooks.js';
import { createLogger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { MemoryStore } from '../../server/store/memory-store.js';
import { freshSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm.js';
import { type World, world } from './world.js';

/** A whole flow, collect to approved charge: the CVV, the card, the CAVV and the replay records are sealed and opened on the way. */
async function flow(w: World, card?: string, as = w.m): Promise<void> {
  const s = card
    ? await w.deps.sessions
        .create(as, { card, operations: ['collectCvv', 'threeDS', 'charge'], amount: { value: 500, currency: 'EUR' } })
        .then((r) => ({ token: r.body.token as string }))
    : await w.session();
  const c = await w.collect(s.token);
  const ch = await w.charge((await w.threeDS(c.token)).token);
  assert.equal(ch.result.status, 'approved');
}

/** Runs the sweeper's key work until it has nothing left. */
async function maintain(w: World): Promise<void> {
  for (let i = 0; i < 20; i++) if ((await w.deps.keyMaintenance.slice(10)) === 0) return;
  assert.fail('the key work never ended');
}

/** A logger whose records the test reads (the audit trail). */
function auditLog() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger(
    'info',
    new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    }),
  );
  return { log, audit: (event: string) => lines.filter((l) => l.audit === true && l.event === event) };
}

function pkcs11Env(t: SoftHsmToken, keyLabel = 'cvvops-kek'): Record<string, string> {
  return {
    CVVOPS_KEY_PROVIDER: 'pkcs11',
    CVVOPS_PKCS11_LIBRARY: t.library,
    CVVOPS_PKCS11_TOKEN_LABEL: t.tokenLabel,
    CVVOPS_PKCS11_PIN: t.pin,
    CVVOPS_PKCS11_KEY_LABEL: keyLabel,
  };
}

describe('domain: key management (rotate-master, re-sealing, retirement, the HSM, replace-root)', () => {
  const open: World[] = [];
  const track = async (p: Promise<World>) => {
    const w = await p;
    open.push(w);
    return w;
  };
  let hsm: SoftHsmToken | null = null;
  after(async () => {
    for (const w of open.reverse()) await w.close();
    hsm?.cleanup();
  });

  it('rotate-master (local) while flows run: no flow fails, data keys are re-wrapped under the new KEK, the old KEK is retired, another instance follows', async () => {
    const { log, audit } = auditLog();
    const w = await track(world({ log }));
    for (const p of ['card', 'cvv'] as const) await rotateDataKey(w.store.meta, w.deps.keyProvider, p, w.clock.now());
    await loadDataKeys(w.store.meta, w.deps.keyring, w.deps.keyProvider);
    w.clock.advance(DATA_KEY_ACTIVATION_MS);
    const card = await w.card();
    // Another instance, started before the rotation.
    const master = (w.deps.config.masterKey as Secret<Buffer>).expose();
    const other = new LocalKeyProvider(new Secret(master), w.store.meta);
    await other.open();
    assert.equal(await w.deps.keyProvider.rotate(w.clock.now()), 2);
    await Promise.all([flow(w), flow(w, card), w.deps.keyMaintenance.slice(10), flow(w)]);
    const keys = await listDataKeys(w.store.meta);
    assert.deepEqual(
      keys.map((e) => e.kekVersion),
      [2, 2],
      'both data keys re-wrapped under KEK v2',
    );
    assert.equal(audit('key.rewrapped').length, 1);
    await maintain(w);
    assert.deepEqual(
      w.deps.keyProvider.versions().map((v) => v.version),
      [2],
      'KEK v1 retired once nothing was under it',
    );
    assert.deepEqual(
      audit('key.retired').map((r) => [r.kind, r.kekVersion]),
      [['kek', 1]],
    );
    await assert.rejects(w.deps.keyProvider.unwrap(1, Buffer.alloc(60), 'x'), KeyProviderError, 'a retired KEK is refused');
    // The other instance never saw v2: it looks again and unwraps what is under it.
    const ring = new Keyring(new Secret(master));
    assert.equal(await loadDataKeys(w.store.meta, ring, other), 2);
    const stored = (await w.store.cards.get(w.m.merchant.id, 'test', card))!;
    assert.equal(stored.numberSealed.keyVersion, 2);
    assert.equal(ring.open('card', stored.numberSealed, `number|${w.m.merchant.id}|${card}`).toString('utf8'), '4000000000001018');
    await flow(w, card);
  });

  it('rotate-data of every purpose: long-lived values re-sealed (signing keys, webhook secrets, old ones under signing-key too, processor settings, cards, live CVVs), unused versions retired, flows go on', async () => {
    const { log, audit } = auditLog();
    const w = await track(world({ log }));
    const k = w.deps.keyring;
    const id = w.m.merchant.id;
    const { endpoint, secret } = await w.deps.webhooks.createEndpoint(id, 'test', 'https://hooks.example/a', ['charge.succeeded']);
    // An endpoint from before webhook secrets had their own key: sealed under signing-key.
    const legacySecret = 'whsec_legacy';
    await w.store.webhooks.insertEndpoint({
      ...endpoint,
      id: 'whe_legacy',
      secretSealed: k.seal('signing-key', legacySecret, `webhook|${id}|whe_legacy`),
    });
    const cfg = JSON.stringify({ type: 'http', request: { url: 'https://psp.example/pay' } });
    await w.store.merchants.update(
      id,
      'live',
      {
        processor: {
          type: 'http',
          url: 'https://psp.example/pay',
          sealed: k.seal('settings', cfg, processorAad(id, 'live', 'mode')).blob.toString('base64'),
          keyVersion: 1,
          scope: 'mode',
        },
      },
      w.clock.now(),
    );
    const card = await w.card();
    await flow(w, card);
    for (const p of ROTATABLE_PURPOSES) await rotateDataKey(w.store.meta, w.deps.keyProvider, p, w.clock.now());
    await loadDataKeys(w.store.meta, k, w.deps.keyProvider);
    w.clock.advance(DATA_KEY_ACTIVATION_MS);
    await flow(w);
    await maintain(w);
    // Not retired yet: the new versions have not been written with for a full minute.
    assert.equal(audit('key.retired').length, 0);
    w.clock.advance(DATA_KEY_ACTIVATION_MS);
    await Promise.all([flow(w, card), maintain(w)]);
    // Replay records age out: the sweeper drops them after their 60 s.
    w.clock.advance(3_600_000);
    await w.sweeper.tick();
    await maintain(w);
    const counts = await w.store.sealed.versionCounts();
    const left = (p: string) => counts.filter((c) => c.purpose === p && c.version === 1).reduce((n, c) => n + c.count, 0);
    for (const p of ['card', 'signing-key', 'webhook-secret', 'settings', 'cvv']) assert.equal(left(p), 0, `nothing of ${p} left on v1`);
    assert.equal(left('replay'), 0, 'replay records age out (60 s)');
    // The reusable CVV (test mode keeps one a year) was sealed anew with its own share, and still opens.
    const cvc = [...(await w.store.sealed.listBelow('cvv', 99, 100))];
    assert.ok(cvc.length > 0 && cvc.every((c) => c.sealed.keyVersion === 2));
    const share = (await w.store.cvc.getKeyShare(cvc[0]!.ref))!;
    assert.equal(k.openWithShare('cvv', share, cvc[0]!.sealed, `cvv|${id}|${cvc[0]!.ref}`).toString('utf8'), '123');
    assert.deepEqual(
      audit('key.reencrypted')
        .map((r) => r.purpose)
        .sort(),
      ['card', 'cvv', 'settings', 'signing-key', 'webhook-secret'],
    );
    // The values are the same, sealed anew.
    assert.equal(openWebhookSecret(k, (await w.store.webhooks.getEndpoint(endpoint.id))!), secret);
    const legacy = (await w.store.webhooks.getEndpoint('whe_legacy'))!;
    assert.equal(k.open('webhook-secret', legacy.secretSealed, `webhook|${id}|whe_legacy`).toString('utf8'), legacySecret, 'moved to its own key');
    const settings = (await w.store.merchants.get(id, 'live'))!.processor as { sealed: string; keyVersion: number };
    assert.equal(settings.keyVersion, 2);
    assert.equal(k.open('settings', { keyVersion: 2, blob: Buffer.from(settings.sealed, 'base64') }, processorAad(id, 'live', 'mode')).toString('utf8'), cfg);
    // Retired: version 1 of what nothing uses any more; kept: replay (still in use), and the digest keys.
    const retired = audit('key.retired').map((r) => `${String(r.purpose)}:${String(r.version)}`);
    for (const p of ['card', 'cvv', 'signing-key', 'webhook-secret', 'settings', 'replay']) assert.ok(retired.includes(`${p}:1`), `${p} v1 retired`);
    for (const p of ['cavv', 'idempotency']) assert.ok(!retired.includes(`${p}:1`), `${p} v1 kept (CAVVs until the retention sweep; the digest key)`);
    assert.deepEqual(
      k.versions('card').map((v) => v.version),
      [2],
    );
    assert.throws(() => k.open('card', { keyVersion: 1, blob: randomBytes(40) }, 'x'), /no card key of version 1/);
    const stored = (await listDataKeys(w.store.meta)).find((e) => e.purpose === 'card' && e.version === 1)!;
    assert.equal(stored.wrapped, '', 'nothing of the retired key is kept');
    // A restart (another instance) honours the retirements; tokens, webhooks and charges go on.
    const again = await track(world({ store: w.store, clock: w.clock, masterKey: (w.deps.config.masterKey as Secret<Buffer>).expose() }));
    assert.deepEqual(
      again.deps.keyring.versions('signing-key').map((v) => v.version),
      [2],
    );
    await flow(again);
    await flow(w, card);
  });

  it('a signing-key rotation alone: webhook secrets from before they had their own key move to it first, then signing-key v1 retires', async () => {
    const { log, audit } = auditLog();
    const w = await track(world({ log }));
    const k = w.deps.keyring;
    const id = w.m.merchant.id;
    const { endpoint } = await w.deps.webhooks.createEndpoint(id, 'test', 'https://hooks.example/c', ['charge.succeeded']);
    await w.store.webhooks.insertEndpoint({ ...endpoint, id: 'whe_old', secretSealed: k.seal('signing-key', 'whsec_old', `webhook|${id}|whe_old`) });
    await rotateDataKey(w.store.meta, w.deps.keyProvider, 'signing-key', w.clock.now());
    await loadDataKeys(w.store.meta, k, w.deps.keyProvider);
    w.clock.advance(2 * DATA_KEY_ACTIVATION_MS);
    await maintain(w);
    const moved = audit('key.reencrypted').find((r) => r.from === 'signing-key');
    assert.equal(moved?.records, 1, 'the old secret moved to the webhook-secret key');
    const old = (await w.store.webhooks.getEndpoint('whe_old'))!;
    assert.equal(k.open('webhook-secret', old.secretSealed, `webhook|${id}|whe_old`).toString('utf8'), 'whsec_old');
    assert.deepEqual(
      audit('key.retired').map((r) => `${String(r.purpose)}:${String(r.version)}`),
      ['signing-key:1'],
    );
    assert.equal(await w.store.meta.get('legacy_webhook_secrets_moved'), String(w.clock.now()), 'not scanned again');
    await flow(w);
  });

  it('the pkcs11 provider (SoftHSM2): a database started on the HSM has no key derived from a master key; flows, rotate-master inside the token, the old KEK destroyed; a missing key object stops the start', async () => {
    hsm = freshSoftHsmToken();
    const { log, audit } = auditLog();
    const w = await track(world({ masterKey: null, env: pkcs11Env(hsm), log }));
    assert.equal(w.deps.keyProvider.name, 'pkcs11');
    assert.equal(w.deps.config.masterKey, null);
    assert.ok(!w.deps.keyring.derived('card') && !w.deps.keyring.derived('api-key'), 'every first version is a stored, wrapped key');
    const card = await w.card();
    await flow(w, card);
    await rotateDataKey(w.store.meta, w.deps.keyProvider, 'card', w.clock.now());
    assert.equal(await w.deps.keyProvider.rotate(w.clock.now()), 2);
    await Promise.all([flow(w), flow(w, card), maintain(w)]);
    assert.ok((await listDataKeys(w.store.meta)).every((e) => e.kekVersion === 2));
    assert.deepEqual(
      w.deps.keyProvider.versions().map((v) => v.version),
      [2],
      'KEK v1 destroyed in the token',
    );
    assert.deepEqual(
      audit('key.retired').map((r) => [r.kind, r.provider, r.kekVersion]),
      [['kek', 'pkcs11', 1]],
    );
    await flow(w, card);
    // A restart on the same token (another instance) opens everything.
    const again = await track(world({ store: w.store, clock: w.clock, masterKey: null, env: pkcs11Env(hsm) }));
    await flow(again, card, w.m);
    // The token's key objects under another label (or deleted): the start stops with one message.
    const lost = auditLog();
    await assert.rejects(
      world({ store: w.store, clock: w.clock, masterKey: null, env: pkcs11Env(hsm, 'another-label'), log: lost.log }),
      (e: Error) => e instanceof KeyProviderError && /holds no key labelled another-label-v/.test(e.message),
    );
    assert.equal(lost.audit('key.unwrap_failed').length, 1);
    // Started with the local provider instead: refused, naming the fix.
    await assert.rejects(world({ store: w.store, clock: w.clock }), /under the pkcs11 key provider.*keys replace-root/);
  });

  it('replace-root: local to pkcs11 (the stored card charges, no master key needed after), and local to a new master key (the old one refused)', async () => {
    hsm ??= freshSoftHsmToken();
    const { log, audit } = auditLog();
    const oldMaster = randomBytes(32);
    const w = await track(world({ masterKey: oldMaster }));
    const card = await w.card();
    await rotateDataKey(w.store.meta, w.deps.keyProvider, 'card', w.clock.now());
    await w.deps.keyProvider.rotate(w.clock.now());
    const { endpoint, secret } = await w.deps.webhooks.createEndpoint(w.m.merchant.id, 'test', 'https://hooks.example/b', ['charge.succeeded']);
    const cfg = { name: 'pkcs11' as const, library: hsm.library, tokenLabel: hsm.tokenLabel, pin: new Secret(hsm.pin), keyLabel: 'moved-kek' };
    const r = await replaceRoot(w.store, { cfg: { name: 'local' }, master: new Secret(oldMaster) }, { cfg, master: null }, () => w.clock.now(), log);
    assert.equal(r.dataKeys, 1, 'the card key v2 re-wrapped');
    assert.ok(r.firstVersions.includes('card') && r.firstVersions.includes('api-key'), 'the derived first versions stored');
    assert.equal(audit('key.root_replaced').length, 1);
    // Again: nothing left to move.
    assert.equal((await replaceRoot(w.store, { cfg, master: null }, { cfg, master: null }, () => w.clock.now())).dataKeys, 0);
    const onHsm = await track(world({ store: w.store, clock: w.clock, masterKey: null, env: pkcs11Env(hsm, 'moved-kek') }));
    assert.ok(await onHsm.deps.merchants.authenticate(await w.deps.merchants.createKey(w.m.merchant.id, 'test')));
    await flow(onHsm, card, w.m);
    assert.equal(openWebhookSecret(onHsm.deps.keyring, (await w.store.webhooks.getEndpoint(endpoint.id))!), secret);
    await assert.rejects(world({ store: w.store, clock: w.clock, masterKey: oldMaster }), /under the pkcs11 key provider/);
    // From this HSM key to another (here another key label on the same token): the same command.
    const third = { ...cfg, keyLabel: 'third-kek' };
    const moving = (await listDataKeys(w.store.meta)).filter((e) => !e.retiredAt).length;
    assert.ok(moving >= 13, 'every purpose v1, and the card key v2');
    assert.equal((await replaceRoot(w.store, { cfg, master: null }, { cfg: third, master: null }, () => w.clock.now(), log)).dataKeys, moving);
    const onThird = await track(world({ store: w.store, clock: w.clock, masterKey: null, env: pkcs11Env(hsm, 'third-kek') }));
    await flow(onThird, card, w.m);
    assert.deepEqual(
      audit('key.created').map((r) => [r.kind, r.provider]),
      [
        ['kek', 'pkcs11'],
        ['kek', 'pkcs11'],
      ],
      'each new root made its KEK, audited',
    );

    // Local to local: a new master key.
    const store = new MemoryStore();
    const first = randomBytes(32);
    const next = randomBytes(32);
    const a = await track(world({ store, masterKey: first }));
    const card2 = await a.card();
    await a.deps.keyProvider.rotate(a.clock.now());
    await rotateDataKey(store.meta, a.deps.keyProvider, 'cvv', a.clock.now());
    await replaceRoot(store, { cfg: { name: 'local' }, master: new Secret(first) }, { cfg: { name: 'local' }, master: new Secret(next) }, () => a.clock.now());
    const b = await track(world({ store, clock: a.clock, masterKey: next }));
    await flow(b, card2, a.m);
    await assert.rejects(world({ store, clock: a.clock, masterKey: first }), /CVVOPS_MASTER_KEY is not the key/, 'the old root opens nothing');
    await assert.rejects(
      replaceRoot(store, { cfg: { name: 'local' }, master: new Secret(next) }, { cfg: { name: 'local' }, master: new Secret(next) }, () => a.clock.now()),
      /the one the database is under already/,
    );
  });
});
