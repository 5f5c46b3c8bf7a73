import { randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import { Secret } from '../secret.js';
import type { MerchantRecord, Mode, Store } from '../store/store.js';
import { type Clock, isoTime } from './clock.js';
import { newId } from './ids.js';
import { constantTimeEqualHex, type Keyring } from './keyring.js';
import { targetAllowed } from './targets.js';
import { assertReachableTarget } from '../connectors/outbound.js';
import type { HttpProcessorConfig } from '../connectors/processors/http.js';

/** Who is calling a merchant endpoint: the merchant and the mode of its key. */
export interface MerchantContext {
  merchant: MerchantRecord;
  mode: Mode;
  keyId: string;
}

export const DEFAULT_CVC_TTL_S = 90;
export const DEFAULT_BLOCK_THRESHOLD = 3;
const API_KEY = /^sk_(test|live)_[A-Za-z0-9_-]{43}$/;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Checks an allowed origin: exactly `scheme://host[:port]`, https, or http
 * for loopback hosts (or anywhere outside production). Returns the problem, or null.
 */
export function originProblem(origin: string, production: boolean): string | null {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    return `"${origin}" is not an origin`;
  }
  if (u.origin !== origin) return `"${origin}" must be exactly scheme://host[:port] (did you mean "${u.origin}"?)`;
  if (u.protocol === 'https:') return null;
  if (u.protocol === 'http:' && (!production || LOOPBACK.has(u.hostname) || u.hostname.endsWith('.localhost'))) return null;
  return `"${origin}" must use https${production ? '' : ' (or http)'}`;
}

/** Merchants and their API keys: keys of 256 random bits, shown once, stored as an HMAC, compared in constant time. */
export class MerchantService {
  constructor(
    private readonly store: Pick<Store, 'merchants' | 'meta'>,
    private readonly keyring: Keyring,
    private readonly clock: Clock,
    private readonly opts: { production: boolean; allowPrivateTargets?: boolean; log?: Logger },
  ) {}

  /** A target a live call could reach only at a private, loopback or link-local address: refused. */
  async #assertPublic(url: string, privateOk: boolean, field: string): Promise<void> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new AppError('invalid_request', `${field}: not a URL.`);
    }
    try {
      await assertReachableTarget(u, privateOk);
    } catch {
      throw new AppError(
        'target_not_allowed',
        `${field}: the host is, or resolves to, a private, loopback or link-local address, which live mode never reaches.`,
      );
    }
  }

  async create(p: { name: string; origins: string[]; id?: string }): Promise<{ merchant: MerchantRecord; testKey: Secret<string>; liveKey: Secret<string> }> {
    const problems = p.origins.map((o) => originProblem(o, this.opts.production)).filter((x): x is string => x !== null);
    if (!p.name.trim()) problems.push('the name must not be empty');
    if (problems.length) throw new Error(problems.join('; '));
    const now = this.clock.now();
    const merchant: MerchantRecord = {
      id: p.id ?? newId('mer'),
      name: p.name.trim(),
      mode: 'test',
      allowedOrigins: [...new Set(p.origins)],
      allowedProxyTargets: [],
      processor: { type: 'simulator' },
      cvvBlockThreshold: DEFAULT_BLOCK_THRESHOLD,
      cvcSessionTtlSeconds: DEFAULT_CVC_TTL_S,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.merchants.insert(merchant);
    const testKey = await this.createKey(merchant.id, 'test');
    const liveKey = await this.createKey(merchant.id, 'live');
    this.opts.log?.info({ audit: true, event: 'merchant.created', merchantId: merchant.id, origins: merchant.allowedOrigins }, 'merchant created');
    return { merchant, testKey, liveKey };
  }

  /**
   * The test-mode demo merchant (CVVOPS_DEMO): created once, its test key kept
   * encrypted so it can be printed at every start and used by /demo.
   */
  async ensureDemo(origins: string[]): Promise<{ merchantId: string; testKey: Secret<string> }> {
    const existing = await this.store.meta.get('demo_merchant');
    if (existing) {
      const { merchantId, sealed } = JSON.parse(existing) as { merchantId: string; sealed: string };
      const key = this.keyring.open('demo', { keyVersion: 1, blob: Buffer.from(sealed, 'base64') }, `demo|${merchantId}`).toString('utf8');
      return { merchantId, testKey: new Secret(key) };
    }
    const { merchant, testKey } = await this.create({ name: 'Demo shop', origins });
    const sealed = this.keyring.seal('demo', testKey.expose(), `demo|${merchant.id}`);
    const stored = await this.store.meta.putIfAbsent('demo_merchant', JSON.stringify({ merchantId: merchant.id, sealed: sealed.blob.toString('base64') }));
    // Another instance made one first: that one is the demo merchant.
    if ((JSON.parse(stored) as { merchantId?: string }).merchantId !== merchant.id) return this.ensureDemo(origins);
    return { merchantId: merchant.id, testKey };
  }

  /** A merchant's settings in one mode (cached for a second by the store), or null. */
  settings(id: string, mode: Mode): Promise<MerchantRecord | null> {
    return this.store.merchants.get(id, mode);
  }

  /** Every merchant, oldest first (`cvvops merchant list`). */
  list(): Promise<Array<{ id: string; name: string; createdAt: number }>> {
    return this.store.merchants.listAll();
  }

  /**
   * A merchant as its operator sees it (`cvvops merchant show`): its name, the
   * settings of each mode (the processor's sealed configuration left out),
   * and its API keys by suffix, with when each was made and when it ends.
   */
  async describe(id: string) {
    const [test, live] = await Promise.all([this.store.merchants.get(id, 'test'), this.store.merchants.get(id, 'live')]);
    if (!test || !live) throw new AppError('not_found', `No merchant ${id}.`);
    const now = this.clock.now();
    const settings = (m: MerchantRecord) => ({
      allowedOrigins: m.allowedOrigins,
      allowedProxyTargets: m.allowedProxyTargets,
      processor: m.processor.type === 'http' ? { type: 'http', url: m.processor.url } : { type: 'simulator' },
      cvvBlockThreshold: m.cvvBlockThreshold,
      cvcSessionTtlSeconds: m.cvcSessionTtlSeconds,
      updatedAt: isoTime(m.updatedAt),
    });
    const keys = (await this.store.merchants.listApiKeys(id)).map((k) => ({
      id: k.id,
      mode: k.mode,
      suffix: k.suffix,
      createdAt: isoTime(k.createdAt),
      endsAt: k.revokedAt === null ? null : isoTime(k.revokedAt),
      active: k.revokedAt === null || k.revokedAt > now,
    }));
    return { id, name: test.name, createdAt: isoTime(test.createdAt), test: settings(test), live: settings(live), keys };
  }

  /**
   * Rolls a mode's API key (`cvvops keys roll`): a new key, and every key of
   * that mode still working ends `graceMs` from now (0: at once), so the
   * merchant can deploy the new one before the old one stops.
   */
  async rollKey(
    merchantId: string,
    mode: Mode,
    graceMs: number,
  ): Promise<{ key: Secret<string>; ending: Array<{ id: string; suffix: string; endsAt: string }> }> {
    if (!(await this.store.merchants.get(merchantId, mode))) throw new AppError('not_found', `No merchant ${merchantId}.`);
    const now = this.clock.now();
    const old = (await this.store.merchants.listApiKeys(merchantId)).filter((k) => k.mode === mode && (k.revokedAt === null || k.revokedAt > now));
    const key = await this.createKey(merchantId, mode);
    const end = now + Math.max(0, graceMs);
    for (const k of old) await this.store.merchants.revokeApiKey(merchantId, k.id, end);
    this.opts.log?.info({ audit: true, event: 'api_key.rolled', merchantId, mode, ending: old.map((k) => k.id), endsAt: isoTime(end) }, 'API key rolled');
    return { key, ending: old.map((k) => ({ id: k.id, suffix: k.suffix, endsAt: isoTime(Math.min(end, k.revokedAt ?? end)) })) };
  }

  /** Ends an API key now (`cvvops keys revoke`), by its id or its last four characters. */
  async revokeKey(merchantId: string, which: string): Promise<{ id: string; suffix: string; mode: Mode }> {
    const keys = await this.store.merchants.listApiKeys(merchantId);
    const now = this.clock.now();
    const matches = keys.filter((k) => (k.id === which || k.suffix === which) && (k.revokedAt === null || k.revokedAt > now));
    if (matches.length === 0) throw new AppError('not_found', `No working API key ${which} of merchant ${merchantId}.`);
    if (matches.length > 1) throw new AppError('invalid_request', `Several working keys end in ${which}: name one by its id.`);
    const k = matches[0]!;
    await this.store.merchants.revokeApiKey(merchantId, k.id, now);
    this.opts.log?.info({ audit: true, event: 'api_key.revoked', merchantId, mode: k.mode, keyId: k.id }, 'API key revoked');
    return { id: k.id, suffix: k.suffix, mode: k.mode };
  }

  async createKey(merchantId: string, mode: Mode): Promise<Secret<string>> {
    const key = `sk_${mode}_${randomBytes(32).toString('base64url')}`;
    await this.store.merchants.insertApiKey({
      id: newId('key'),
      merchantId,
      mode,
      hash: this.keyring.mac('api-key', key),
      suffix: key.slice(-4),
      createdAt: this.clock.now(),
      revokedAt: null,
    });
    return new Secret(key);
  }

  /**
   * PATCH /Merchant: the settings of section 8, of the key's own mode only (a
   * test key can never change where live card data goes). In live mode the
   * processor's URLs and the proxy targets must not be, or resolve to, private
   * addresses: refused now rather than at the first charge, after the CVV was used.
   */
  async updateSettings(
    m: MerchantContext,
    patch: {
      allowedOrigins?: string[];
      allowedProxyTargets?: string[];
      cvvBlockThreshold?: number;
      cvcSessionTtlSeconds?: number;
      processor?: { type: 'simulator' } | HttpProcessorConfig;
    },
  ): Promise<MerchantRecord> {
    if (patch.allowedOrigins) {
      const problems = patch.allowedOrigins.map((o) => originProblem(o, this.opts.production)).filter((x): x is string => x !== null);
      if (problems.length) throw new AppError('invalid_request', `allowedOrigins: ${problems[0]}`);
    }
    const targets = patch.allowedProxyTargets ?? m.merchant.allowedProxyTargets;
    if (patch.allowedProxyTargets && this.opts.production && patch.allowedProxyTargets.some((t) => !t.startsWith('https://'))) {
      throw new AppError('invalid_request', 'allowedProxyTargets must be https URLs.');
    }
    const privateOk = this.opts.allowPrivateTargets === true && m.mode === 'test';
    for (const t of patch.allowedProxyTargets ?? []) await this.#assertPublic(t, privateOk, 'allowedProxyTargets');
    let processor: Record<string, unknown> | undefined;
    if (patch.processor?.type === 'http') {
      const cfg = patch.processor;
      for (const url of [cfg.request.url, ...(cfg.lookup ? [cfg.lookup.url] : [])]) {
        const concrete = url.replace(/\$\{[A-Za-z.]+\}/g, 'x');
        if (!targetAllowed(concrete, targets)) {
          throw new AppError('target_not_allowed', "The processor's URLs must be within allowedProxyTargets.");
        }
        await this.#assertPublic(concrete, privateOk, 'processor');
      }
      processor = {
        type: 'http',
        url: cfg.request.url,
        // Bound to its mode: a sealed live configuration cannot be copied into the test settings, or back.
        ...sealedField(this.keyring.seal('settings', JSON.stringify(cfg), processorAad(m.merchant.id, m.mode, 'mode'))),
        scope: 'mode',
      };
    } else if (patch.processor) {
      processor = { type: 'simulator' };
    }
    const { processor: _p, ...rest } = patch;
    const next = await this.store.merchants.update(
      m.merchant.id,
      m.mode,
      {
        ...rest,
        ...(processor ? { processor } : {}),
        ...(patch.allowedOrigins ? { allowedOrigins: [...new Set(patch.allowedOrigins)] } : {}),
        ...(patch.allowedProxyTargets ? { allowedProxyTargets: [...new Set(patch.allowedProxyTargets)] } : {}),
      },
      this.clock.now(),
    );
    if (!next) throw new AppError('not_found');
    this.opts.log?.info(
      { audit: true, event: 'merchant.settings_changed', merchantId: m.merchant.id, mode: m.mode, keyId: m.keyId, fields: Object.keys(patch) },
      'merchant settings changed',
    );
    return next;
  }

  /** Resolves an API key to its merchant and mode, or throws invalid_api_key. */
  async authenticate(key: Secret<string>): Promise<MerchantContext> {
    const k = key.expose();
    if (!API_KEY.test(k)) throw new AppError('invalid_api_key');
    const hash = this.keyring.mac('api-key', k);
    const row = await this.store.merchants.findApiKeyByHash(hash);
    // A key being rolled works until its end (revokedAt ahead); a revoked one never again.
    const ended = row !== null && row.revokedAt !== null && row.revokedAt <= this.clock.now();
    if (!row || !constantTimeEqualHex(hash, row.hash) || ended || !k.startsWith(`sk_${row.mode}_`)) {
      throw new AppError('invalid_api_key');
    }
    const merchant = await this.store.merchants.get(row.merchantId, row.mode);
    if (!merchant) throw new AppError('invalid_api_key');
    return { merchant, mode: row.mode, keyId: row.id };
  }
}

/** How a merchant's processor configuration is bound when sealed: per mode (older ones, from before settings were per mode, per merchant). */
export function processorAad(merchantId: string, mode: Mode, scope?: unknown): string {
  return scope === 'mode' ? `processor|${merchantId}|${mode}` : `processor|${merchantId}`;
}

/** A sealed value as JSON fields: base64 blob and its key version. */
function sealedField(s: { keyVersion: number; blob: Buffer }): { sealed: string; keyVersion: number } {
  return { sealed: s.blob.toString('base64'), keyVersion: s.keyVersion };
}
