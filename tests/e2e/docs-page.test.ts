import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { chromiumAvailable, launchChromium } from '../helpers/browser.js';
import { type Harness, makeHarness } from '../helpers/harness.js';

/**
 * /docs: the API reference rendered in a real browser from /openapi.json, by
 * the renderer bundled at build time, under a CSP of 'self' only: every
 * operation and every webhook shows, nothing is blocked, nothing is fetched
 * from anywhere else.
 */
describe('/docs renders the OpenAPI document in Chromium, offline and under a strict CSP', { skip: !chromiumAvailable() && 'no Chromium' }, () => {
  let h: Harness;
  let server: http.Server;
  let base: string;
  let browser: Browser;
  before(async () => {
    h = await makeHarness();
    server = http.createServer(h.app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  it('lists every operation and webhook of the document; no CSP violation, no request to another origin', async () => {
    const doc = JSON.parse(readFileSync('openapi.json', 'utf8')) as { paths: Record<string, Record<string, unknown>>; webhooks: Record<string, unknown> };
    const page = await browser.newPage();
    const problems: string[] = [];
    const elsewhere: string[] = [];
    page.on('console', (m) => {
      // A failed load is reported by the response handler, with its address.
      if ((m.type() === 'error' && !m.text().startsWith('Failed to load resource')) || /Content Security Policy/i.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith('data:')) elsewhere.push(r.url());
    });
    const res = await page.goto(`${base}/docs`);
    assert.equal(res?.status(), 200);
    const csp = res.headers()['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /style-src 'self'(;|$)/);
    assert.ok(!csp.includes('unsafe-'), csp);

    await page.waitForSelector('.opblock', { timeout: 20_000 });
    const shown = await page.$$eval('.opblock .opblock-summary-path', (els) => els.map((e) => e.getAttribute('data-path')));
    // Every operation, then every webhook (each its own block, named by its event type).
    const expected = [...Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map(() => path)), ...Object.keys(doc.webhooks)];
    assert.deepEqual([...shown].sort(), [...expected].sort());
    // The styles applied (not blocked by the CSP): Swagger UI's operation blocks are laid out.
    const display = await page.evaluate("getComputedStyle(document.querySelector('.opblock-summary')).display");
    assert.equal(display, 'flex');
    // An operation opens, with its error codes listed; and nothing can be sent from the page.
    await page.click(`#operations-Operations-postCvvOperationsCharge .opblock-summary-control`);
    await page.waitForSelector('#operations-Operations-postCvvOperationsCharge .responses-table');
    const op = (await page.textContent('#operations-Operations-postCvvOperationsCharge')) ?? '';
    assert.match(op, /precondition_failed/);
    assert.equal(await page.$$eval('.try-out__btn', (b) => b.length), 0, 'no "Try it out"');
    assert.deepEqual(problems, []);
    assert.deepEqual(elsewhere, []);
    await page.close();
  });
});
