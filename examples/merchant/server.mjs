/**
 * A merchant's integration of cvvops, whole and small: this server holds the
 * API key, creates the session, checks the result with validateToken and
 * verifies webhooks; its checkout page (public/) runs on its own origin and
 * drives the hosted CVV form with the browser SDK.
 *
 *   CVVOPS_URL=http://127.0.0.1:8080 CVVOPS_API_KEY=sk_test_… node examples/merchant/server.mjs
 *
 * then open http://localhost:3000 (that origin must be one of the merchant's
 * allowed origins; `cvvops merchant update mer_… --mode test --origin …` sets
 * the list: name every origin the merchant uses, http://localhost:3000 among them).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { CvvOps } from '@cvvops/node';

export function createApp({ cvvopsUrl, apiKey, webhookSecret }) {
  const cvvops = new CvvOps(apiKey, { baseUrl: cvvopsUrl });
  const app = express();
  const page = readFile(fileURLToPath(new URL('./public/checkout.html', import.meta.url)), 'utf8');
  /** The SDK's Subresource Integrity hash, from the file the cvvops server serves (pin it in production). */
  const sri = fetch(`${cvvopsUrl}/sdk/v1/cvvops.js`)
    .then((r) => r.arrayBuffer())
    .then((b) => `sha384-${createHash('sha384').update(Buffer.from(b)).digest('base64')}`);

  app.get('/', async (_req, res) => {
    const html = (await page).replaceAll('{{CVVOPS_URL}}', cvvopsUrl).replaceAll('{{SDK_SRI}}', await sri);
    res.type('html').send(html);
  });
  app.get('/checkout.js', (_req, res) => res.sendFile(fileURLToPath(new URL('./public/checkout.js', import.meta.url))));

  // 1. The page asks for a session: the server decides the card, the operations and the amount.
  app.post('/api/session', express.json(), async (req, res, next) => {
    try {
      // A real shop charges a card it stored earlier (its token); the example stores a test card now.
      const card = await cvvops.cards.create({ number: req.body?.card ?? '4000000000001018', expMonth: 12, expYear: 2030 });
      const session = await cvvops.sessions.create({
        card: card.token,
        operations: ['collectCvv', 'threeDS', 'charge'],
        amount: { value: 1999, currency: 'EUR' },
        require3DS: true,
        reference: 'order-1001',
      });
      res.json({ token: session.token });
    } catch (err) {
      next(err);
    }
  });

  // 2. The page sends back the last token: only validateToken says whether the shopper paid.
  app.post('/api/paid', express.json(), async (req, res, next) => {
    try {
      const v = await cvvops.sessions.validateToken(String(req.body?.token ?? ''));
      const charge = v.valid ? v.claims.res.charge : undefined;
      const paid = v.valid && v.current && v.session.status === 'completed' && charge?.status === 'approved';
      res.json({
        paid,
        reason: paid ? null : v.valid ? (charge?.declineCode ?? charge?.status ?? 'not charged') : v.reason,
        chargeId: charge?.chargeId ?? null,
      });
    } catch (err) {
      next(err);
    }
  });

  // 3. Webhooks: the raw body, verified against the endpoint's secret before anything trusts it.
  app.post('/webhooks', express.raw({ type: 'application/json' }), (req, res) => {
    try {
      const event = cvvops.webhooks.constructEvent(req.body, req.get('cvvops-signature'), webhookSecret ?? '');
      app.emit('cvvops-event', event);
      res.sendStatus(204);
    } catch {
      res.sendStatus(400);
    }
  });

  app.use((err, _req, res, _next) => res.status(502).json({ error: err.code ?? 'error', message: err.message }));
  return app;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 3000);
  const app = createApp({
    cvvopsUrl: process.env.CVVOPS_URL ?? 'http://127.0.0.1:8080',
    apiKey: process.env.CVVOPS_API_KEY,
    webhookSecret: process.env.WEBHOOK_SECRET,
  });
  app.listen(port, 'localhost', () => process.stdout.write(`example shop on http://localhost:${port}\n`));
}
