import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { buildApp } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { createDeps, type Deps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { chromiumAvailable, freePort, launchChromium } from '../helpers/browser.js';

/**
 * examples/merchant, run as a merchant runs it: its server (its own origin,
 * the API key, validateToken, webhook verification) and its checkout page in
 * real Chromium against a real cvvops server. And the README's browser
 * snippet is the example's, word for word.
 */
describe('the example integration (examples/merchant)', () => {
  it("the README's browser snippet is the example page's script", () => {
    const js = readFileSync('examples/merchant/public/checkout.js', 'utf8');
    const snippet = js.slice(js.indexOf('// README:start\n') + '// README:start\n'.length, js.indexOf('// README:end'));
    assert.ok(snippet.includes('CvvOps.mount'), 'the marked part is the flow');
    assert.ok(
      readFileSync('README.md', 'utf8').includes(snippet.trim()),
      'README.md must show examples/merchant/public/checkout.js between its README markers',
    );
  });

  if (!chromiumAvailable()) {
    it('runs in real Chromium', { skip: 'Chromium not installed (apt-get install -y chromium)' }, () => {});
    return;
  }

  let deps: Deps;
  let server: http.Server;
  let shop: http.Server;
  let browser: Browser;
  let shopApp: import('express').Express;
  let secret: string;

  before(async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const shopPort = await freePort();
    const shopOrigin = `http://localhost:${shopPort}`;
    const master = randomBytes(32);
    const config = loadConfig({
      PORT: String(port),
      PUBLIC_BASE_URL: base,
      DATABASE_URL: 'sqlite::memory:',
      CVVOPS_MASTER_KEY: master.toString('base64'),
      CVVOPS_RATE_LIMIT: 'off',
      CVVOPS_ALLOW_PRIVATE_TARGETS: 'on',
      LOG_LEVEL: 'silent',
    });
    deps = await createDeps(config, createLogger('silent'), { masterKey: new Secret(master) });
    const created = await deps.merchants.create({ name: 'Example shop', origins: [shopOrigin] });
    await deps.origins.refresh();
    secret = (await deps.webhooks.createEndpoint(created.merchant.id, 'test', `${shopOrigin}/webhooks`, ['charge.succeeded'])).secret;
    server = buildApp(deps).listen(port, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    // @ts-expect-error: the example is plain JavaScript (examples/merchant/server.mjs), as a merchant would write it.
    const { createApp } = (await import('../../examples/merchant/server.mjs')) as { createApp: (o: Record<string, string>) => import('express').Express };
    shopApp = createApp({ cvvopsUrl: base, apiKey: created.testKey.expose(), webhookSecret: secret });
    shop = shopApp.listen(shopPort, 'localhost');
    await new Promise((r) => shop.once('listening', r));
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    shop?.close();
    server?.close();
    await deps?.close();
  });

  it('a shopper pays on the example checkout; its server learns it from validateToken and a verified webhook', { timeout: 90_000 }, async () => {
    const events: Array<{ type: string }> = [];
    (shopApp as unknown as NodeJS.EventEmitter).on('cvvops-event', (e: { type: string }) => events.push(e));
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://localhost:${(shop.address() as { port: number }).port}/`);
    const frame = (await (await page.waitForSelector('#cvv iframe')).contentFrame())!;
    await frame.locator('[data-cvvops="cvv"]').fill('123');
    await page.locator('#pay:not([disabled])').click();
    await page.waitForFunction(`(document.querySelector('#outcome')?.textContent ?? '') !== ''`);
    assert.equal(await page.locator('#outcome').textContent(), 'Paid.', errors.join('; '));
    assert.deepEqual(errors, []);
    // The charge.succeeded webhook, delivered by the outbox to the example's endpoint and verified there.
    for (let i = 0; i < 50 && !events.some((e) => e.type === 'charge.succeeded'); i++) {
      await deps.webhooks.tick();
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(
      events.some((e) => e.type === 'charge.succeeded'),
      'the example verified the charge.succeeded webhook',
    );
    await page.close();
  });
});
