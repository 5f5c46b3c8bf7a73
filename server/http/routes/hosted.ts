import { randomBytes } from 'node:crypto';
import express, { type Express, type Request, type Response } from 'express';
import type { Deps } from '../../deps.js';
import { AppError } from '../../errors.js';
import type { TdsRecord } from '../../store/store.js';

const OUTCOME_TEXT: Record<string, string> = {
  Y: 'Thank you: the payment is verified.',
  A: 'Thank you: the verification was attempted.',
  N: 'The payment could not be verified.',
  U: 'The verification is unavailable right now.',
  R: 'The bank declined the verification.',
};

/**
 * Hosted pages. The 3-D Secure challenge page (the built-in ACS simulator in
 * test mode) is a plain HTML form that works without JavaScript; it may be
 * framed by the server's own origin and the merchant's allowed origins only.
 */
export function hostedRoutes(app: Express, d: Deps): void {
  const form = express.urlencoded({ extended: false, limit: 4096, parameterLimit: 5 });

  async function frameAncestors(t: TdsRecord): Promise<string> {
    const m = await d.store.getMerchant(t.merchantId);
    return ["'self'", ...(m?.allowedOrigins ?? [])].join(' ');
  }

  async function render(res: Response, t: TdsRecord): Promise<void> {
    const nonce = randomBytes(16).toString('base64');
    res.setHeader('Content-Security-Policy', [
      "default-src 'none'", `style-src 'nonce-${nonce}'`, "form-action 'self'", "base-uri 'none'", `frame-ancestors ${await frameAncestors(t)}`,
    ].join('; '));
    res.removeHeader('X-Frame-Options');
    const session = await d.store.getSessionById(t.sessionId);
    const amount = session?.amount ? new Intl.NumberFormat('en', { style: 'currency', currency: session.amount.currency }).format(session.amount.value / 10 ** minorDigits(session.amount.currency)) : null;
    const status = t.result?.status ?? '';
    res.type('html').render('three-ds-challenge', {
      nonce, state: t.status === 'challenge' ? 'open' : 'done', action: `/hosted/3ds/${t.id}`, mode: t.mode, amount, status,
      message: OUTCOME_TEXT[status] ?? 'The verification has finished.',
    });
  }

  app.get('/hosted/3ds/:id', async (req: Request, res: Response) => {
    await d.limits.consume('address', req.ip ?? 'unknown');
    await render(res, await d.threeDS.challenge(String(req.params.id)));
  });

  app.post('/hosted/3ds/:id', form, async (req: Request, res: Response) => {
    await d.limits.consume('address', req.ip ?? 'unknown');
    const code = typeof req.body?.code === 'string' ? req.body.code : '';
    if (code.length > 12) throw new AppError('invalid_request', 'The code is too long.');
    await render(res, await d.threeDS.submitChallenge(String(req.params.id), code));
  });
}

function minorDigits(currency: string): number {
  return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
}
