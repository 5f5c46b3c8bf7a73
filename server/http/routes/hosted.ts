import { bodyField } from '../middleware.js';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Express, type Request, type Response } from 'express';
import type { Deps } from '../../deps.js';
import { type ChallengeLocale, challengeLocale, challengeText, type ChallengeText } from '../challenge-text.js';
import { AppError } from '../../errors.js';
import { Secret } from '../../secret.js';
import type { MerchantRecord, TdsRecord } from '../../store/store.js';
import { projectRoot, VERSION } from '../../version.js';
import { CreatedSession, z } from '../schemas.js';

/** Subresource Integrity of our own scripts and styles, computed from the built files at start. */
function integrity(file: string): string {
  const path = join(projectRoot(), 'public', file);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` (it builds the browser code)`);
  return `sha384-${createHash('sha384').update(readFileSync(path)).digest('base64')}`;
}

const nonce = () => randomBytes(16).toString('base64');

/**
 * An id from the path or the query: our ids are `prefix_` and base64url characters. Anything else (NUL, a
 * slash, non-ASCII, kilobytes, a repeated query parameter) names nothing: 404 not_found, like an unknown
 * id, before it reaches the store.
 */
function hostedId(v: unknown, what: string): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]{1,100}$/.test(v)) throw new AppError('not_found', `No such ${what}.`);
  return v;
}

/**
 * The CSP of a hosted page: only our nonce'd scripts (with SRI in the HTML),
 * our styles, calls to our own origin, images from us or data:, and framing
 * by the server itself and the merchant's allowed origins only.
 */
function hostedCsp(n: string, ancestors: string[], extra: { frameSrc?: boolean; styleNonce?: boolean } = {}): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${n}'`,
    `style-src 'self'${extra.styleNonce ? ` 'nonce-${n}'` : ''}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    `frame-src ${extra.frameSrc ? "'self'" : "'none'"}`,
    "form-action 'self'",
    "base-uri 'none'",
    `frame-ancestors ${["'self'", ...ancestors].join(' ')}`,
  ].join('; ');
}

/** Hosted pages are made to be framed by the merchant: the page's CSP decides by whom. */
function framable(res: Response, csp: string): void {
  res.setHeader('Content-Security-Policy', csp);
  res.removeHeader('X-Frame-Options');
  res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
}

/**
 * Hosted pages and the browser code: the CVV form (/hosted/cvv), custom
 * forms (/hosted/forms/{id}), the 3-D Secure challenge (/hosted/3ds/{id}),
 * the SDK (/sdk/v1/…), our scripts (/assets/…) and the demo checkout (/demo).
 */
export function hostedRoutes(app: Express, d: Pick<Deps, 'cards' | 'clock' | 'config' | 'forms' | 'limits' | 'merchants' | 'sessions' | 'threeDS'>): void {
  const sri = {
    form: integrity('assets/form.js'),
    challenge: integrity('assets/challenge.js'),
    demo: integrity('assets/demo.js'),
    css: integrity('assets/form.css'),
  };
  const staticHeaders = (res: Response, crossOrigin: boolean, path: string) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    // The SDK's type declarations: TypeScript source, not an MPEG transport stream (the .ts default of mime tables).
    if (path.endsWith('.d.ts')) res.setHeader('Content-Type', 'application/typescript; charset=utf-8');
    if (crossOrigin) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    }
  };
  app.use(
    '/sdk/v1',
    express.static(join(projectRoot(), 'public/sdk/v1'), {
      index: false,
      fallthrough: true,
      setHeaders: (res, path) => staticHeaders(res, true, path),
    }),
  );
  app.use(
    '/assets',
    express.static(join(projectRoot(), 'public/assets'), {
      index: false,
      fallthrough: true,
      setHeaders: (res, path) => staticHeaders(res, false, path),
    }),
  );

  const limitAddress = (req: Request) => d.limits.consume('address', req.ip ?? 'unknown');

  async function merchantOfSession(id: unknown): Promise<MerchantRecord> {
    const c = await d.sessions.hostedContext(hostedId(id, 'session'));
    if (!c) throw new AppError('not_found', 'No such session.');
    return c.merchant;
  }

  app.get('/hosted/cvv', async (req: Request, res: Response) => {
    await limitAddress(req);
    const m = await merchantOfSession(req.query.session);
    const n = nonce();
    framable(res, hostedCsp(n, m.allowedOrigins));
    res.type('html').render('hosted-cvv', { nonce: n, sri, allowedOrigins: m.allowedOrigins });
  });

  // Whether the calling page's origin may frame this session's form: the SDK asks before the frame can fail
  // silently (a frame-ancestors refusal shows nothing to the page), so mount() fails in a moment, naming the
  // origin. Readable from any origin (a simple GET, no credential); it says no more than the form's own CSP.
  app.get('/hosted/origin-check', async (req: Request, res: Response) => {
    await limitAddress(req);
    const m = await merchantOfSession(req.query.session);
    // A browser leaves Origin out of a same-origin GET only: no Origin is this server's own page.
    const origin = req.get('origin') ?? d.config.publicOrigin;
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.setHeader('Cache-Control', 'no-store');
    res.json({ origin, allowed: origin === d.config.publicOrigin || m.allowedOrigins.includes(origin) });
  });

  app.get('/hosted/forms/:id', async (req: Request, res: Response) => {
    await limitAddress(req);
    const form = await d.forms.byId(hostedId(req.params.id, 'custom form'));
    if (!form) throw new AppError('not_found', 'No such custom form.');
    const preview = req.query.session === undefined;
    let origins: string[] = [];
    if (!preview) {
      const c = await d.sessions.hostedContext(hostedId(req.query.session, 'session'));
      if (!c || c.session.merchantId !== form.merchantId || c.session.form !== form.id) throw new AppError('not_found', 'No such session.');
      origins = c.merchant.allowedOrigins;
    } else {
      origins = (await d.merchants.settings(form.merchantId, form.mode))?.allowedOrigins ?? [];
    }
    const n = nonce();
    framable(res, hostedCsp(n, origins, { styleNonce: true }));
    res.type('html').render('custom-form', { nonce: n, sri, allowedOrigins: origins, name: form.name, html: form.html, css: form.css, preview });
  });

  // The 3-D Secure challenge: a plain HTML form that works without JavaScript.
  const form = express.urlencoded({ extended: false, limit: 4096, parameterLimit: 5 });
  /**
   * Redirect mode: where the shopper goes back to, an http(s) URL on one of the merchant's allowed origins
   * (the SDK's `returnUrl`, or the session's), without its fragment; anything else is refused (400), so the
   * page can never send a shopper to a place the merchant did not allow.
   */
  function returnTo(wanted: unknown, c: { merchant: MerchantRecord; session: { returnUrl: string | null } } | null): string | null {
    if (wanted === undefined) return null;
    const raw = typeof wanted === 'string' && wanted !== '' ? wanted : (c?.session.returnUrl ?? '');
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new AppError('invalid_request', "return must be an absolute URL on one of the merchant's allowed origins.");
    }
    if (!/^https?:$/.test(u.protocol) || raw.length > 2048 || !c?.merchant.allowedOrigins.includes(u.origin))
      throw new AppError('invalid_request', "return must be an absolute URL on one of the merchant's allowed origins.");
    u.hash = '';
    return u.href;
  }

  async function renderChallenge(res: Response, t: TdsRecord, parentOrigin: string, locale: ChallengeLocale, wantedReturn?: unknown): Promise<void> {
    const c = await d.sessions.hostedContext(t.sessionId);
    const origins = c?.merchant.allowedOrigins ?? [];
    const returnUrl = returnTo(wantedReturn, c);
    const n = nonce();
    framable(res, hostedCsp(n, origins, { styleNonce: true }));
    const amount = c?.session.amount ? formatAmount(c.session.amount, locale) : null;
    const status = t.result?.status ?? '';
    const text = challengeText(locale);
    res.type('html').render('three-ds-challenge', {
      nonce: n,
      sri,
      lang: locale,
      text,
      state: t.status === 'challenge' ? 'open' : 'done',
      // The answer comes back in the same language, and in redirect mode knows where to send the shopper.
      action: `/hosted/3ds/${t.id}${query({ locale: locale === 'en' ? null : locale, return: returnUrl })}`,
      // Redirect mode: the way back to the shop, with how it ended in the fragment (never sent to a server).
      back: returnUrl ? { done: `${returnUrl}#cvvops=3ds-done`, canceled: `${returnUrl}#cvvops=3ds-canceled` } : null,
      mode: t.mode,
      amount,
      status,
      message: text.outcome[status as keyof ChallengeText['outcome']] ?? text.finished,
      allowedOrigins: origins,
      transactionId: t.id,
      parentOrigin: origins.includes(parentOrigin) ? parentOrigin : '',
    });
  }
  app.get('/hosted/3ds/:id', async (req: Request, res: Response) => {
    await limitAddress(req);
    await renderChallenge(res, await d.threeDS.challenge(hostedId(req.params.id, 'challenge')), '', challengeLocale(req.query.locale), req.query.return);
  });
  app.post('/hosted/3ds/:id', form, async (req: Request, res: Response) => {
    await limitAddress(req);
    const sent = bodyField(req, 'code');
    const code = typeof sent === 'string' ? sent : '';
    if (code.length > 12) throw new AppError('invalid_request', 'The code is too long.');
    const from = bodyField(req, 'origin');
    const origin = typeof from === 'string' ? from : '';
    const id = hostedId(req.params.id, 'challenge');
    // A return address that is not the merchant's is refused before the code is used, not after.
    if (req.query.return !== undefined) returnTo(req.query.return, await d.sessions.hostedContext((await d.threeDS.challenge(id)).sessionId));
    await renderChallenge(res, await d.threeDS.submitChallenge(id, code), origin, challengeLocale(req.query.locale), req.query.return);
  });

  // The landing page: where the demo, the references and the health endpoints are (a newcomer's first request).
  app.get('/', (_req: Request, res: Response) => {
    const n = nonce();
    res.setHeader(
      'Content-Security-Policy',
      [`default-src 'none'`, `style-src 'nonce-${n}'`, "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"].join('; '),
    );
    res.type('html').render('index', { nonce: n, version: VERSION, demo: d.config.demo });
  });

  // The API reference, rendered from /openapi.json by Swagger UI (bundled at build time): scripts and
  // styles from this server only, nothing inline, no calls but the document itself.
  app.get('/docs', (_req: Request, res: Response) => {
    res.setHeader(
      'Content-Security-Policy',
      [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ].join('; '),
    );
    res.type('html').render('docs', { version: VERSION });
  });

  if (!d.config.demo) return;
  // The demo checkout: the merchant's server side runs here with the demo merchant's test key.
  const demoKey = async () => (await d.merchants.ensureDemo([d.config.publicOrigin])).testKey;
  app.get('/demo', async (_req: Request, res: Response) => {
    const n = nonce();
    res.setHeader(
      'Content-Security-Policy',
      [
        "default-src 'none'",
        `script-src 'nonce-${n}'`,
        `style-src 'nonce-${n}'`,
        "connect-src 'self'",
        "img-src 'self' data:",
        "frame-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
      ].join('; '),
    );
    res.type('html').render('demo', { nonce: n, sri });
  });
  const demoJson = express.json({ limit: 8192 });
  const DemoCheckout = z.strictObject({ card: z.enum(['4000000000002024', '4000000000001018', '4000000000006066', '378282246310005']) });
  app.post('/demo/api/checkout', demoJson, async (req: Request, res: Response) => {
    const body = DemoCheckout.safeParse(req.body);
    if (!body.success) throw new AppError('invalid_request', 'Pick one of the demo cards.');
    const m = await d.merchants.authenticate(await demoKey());
    const card = await d.cards.tokenize(m, { number: new Secret(body.data.card), expMonth: 12, expYear: new Date(d.clock.now()).getUTCFullYear() + 4 });
    const { body: session } = await d.sessions.create(m, {
      // A checkout to copy: the charge needs a successful 3-D Secure (Y or A); after N the server refuses it (409).
      card: card.token,
      operations: ['collectCvv', 'threeDS', 'charge'],
      amount: { value: 1999, currency: 'EUR' },
      require3DS: true,
      reference: 'demo-order',
    });
    res.status(201).json(CreatedSession.partial().passthrough().parse(session));
  });
  app.post('/demo/api/validate', demoJson, async (req: Request, res: Response) => {
    const sent = bodyField(req, 'token');
    const token = typeof sent === 'string' ? sent : '';
    const m = await d.merchants.authenticate(await demoKey());
    res.json(await d.sessions.validateToken(m, token));
  });
}

function formatAmount(a: { value: number; currency: string }, locale: ChallengeLocale): string {
  const format = new Intl.NumberFormat(locale, { style: 'currency', currency: a.currency });
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(a.value / 10 ** digits);
}

/** A query string of the parameters that have a value ("" when none). */
function query(params: Record<string, string | null>): string {
  const q = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => e[1] !== null));
  const text = q.toString();
  return text ? `?${text}` : '';
}
