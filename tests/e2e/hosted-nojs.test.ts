import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildApp } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { createDeps, type Deps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { chromiumAvailable, freePort, launchChromium } from '../helpers/browser.js';

/**
 * Security review, point 4: the hosted CVV form and the custom-form shell never
 * put a CVV in a URL. Without JavaScript, or when the form's runtime script
 * fails to load, typing a CVV and pressing Enter (or clicking the form's
 * submit button) must not navigate to `…?cvv=…`: not in the page's URL, not
 * in any URL the server sees, not in the server's logs. With the runtime,
 * Enter still collects the CVV through the API.
 */
// Sentinels, looked for as a number standing alone (not inside a longer run of digits), so
// that a timing or a timestamp in a log line that happens to contain these digits does not count.
const CVV = '7319';
const CUSTOM_CVV = '73190468';
const has = (text: string, cvv: string): boolean => new RegExp(`(?<![0-9])${cvv}(?![0-9])`).test(text);

if (!chromiumAvailable()) {
  describe('hosted forms without their script', () => {
    it('run in real Chromium', { skip: 'Chromium not installed (apt-get install -y chromium)' }, () => {});
  });
} else {
  describe('hosted forms without their script never put the CVV in a URL (real Chromium)', () => {
    let deps: Deps;
    let server: http.Server;
    let browser: Browser;
    let base: string;
    let key: string;
    let dir: string;
    const logs: string[] = [];
    /** Every request line the server received (method and URL with its query). */
    const seen: string[] = [];

    before(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      dir = mkdtempSync(join(tmpdir(), 'cvvops-nojs-'));
      const master = randomBytes(32);
      const config = loadConfig({
        PORT: String(port),
        PUBLIC_BASE_URL: base,
        DATABASE_URL: `sqlite:${join(dir, 'db.sqlite')}`,
        CVVOPS_MASTER_KEY: master.toString('base64'),
        CVVOPS_RATE_LIMIT: 'off',
        LOG_LEVEL: 'trace',
        CVVOPS_DEMO: 'off',
      });
      const sink = new Writable({
        write(chunk, _enc, cb) {
          logs.push(String(chunk));
          cb();
        },
      });
      deps = await createDeps(config, createLogger('trace', sink), { masterKey: new Secret(master) });
      const created = await deps.merchants.create({ name: 'Shop', origins: ['https://shop.example'] });
      await deps.origins.refresh();
      key = created.testKey.expose();
      const app = buildApp(deps);
      server = http
        .createServer((req, res) => {
          seen.push(`${req.method} ${req.url}`);
          app(req, res);
        })
        .listen(port, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      server?.close();
      await deps?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    async function api(path: string, body: unknown, bearer = key): Promise<any> {
      const r = await fetch(`${base}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      return r.json();
    }

    /** A session's form URL (`…?session=cvo_…#token=…`), for the hosted form or a custom form. */
    async function formUrl(form?: string): Promise<string> {
      const card = await api('/Cards', { number: '4000000000001018', expMonth: 12, expYear: 2030 });
      const s = await api('/CvvOperations', { card: card.token, operations: ['collectCvv'], ...(form ? { form } : {}) });
      assert.ok(typeof s.formUrl === 'string', JSON.stringify(s));
      return s.formUrl;
    }

    let customForm: string;
    async function custom(): Promise<string> {
      // A merchant form that names its field "cvv" and has a submit button: the way a
      // native submission would carry the value, if anything let it.
      customForm ??= (
        await api('/CustomForms', {
          name: 'Checkout CVV',
          html: '<label for="c" data-cvvops="label">Card code</label><input id="c" name="cvv" type="text" data-cvvops="cvv"><button type="submit" data-cvvops="submit">Pay</button><p data-cvvops="message"></p>',
        })
      ).id;
      assert.match(customForm, /^frm_/);
      return formUrl(customForm);
    }

    interface Trace {
      urls: string[];
      bodies: string[];
      requests: string[];
      /** Status of every POST the page made to a hosted page (a native submission). */
      posts: number[];
    }
    /** Everything the page did that could carry a value: its URLs (each navigation), requests and their bodies. */
    function trace(page: Page): Trace {
      const t: Trace = { urls: [], bodies: [], requests: [], posts: [] };
      page.on('framenavigated', (f) => t.urls.push(f.url()));
      page.on('request', (r) => {
        t.requests.push(`${r.method()} ${r.url()}`);
        const body = r.postData();
        if (body) t.bodies.push(body);
      });
      page.on('response', (r) => {
        if (r.request().method() === 'POST' && new URL(r.url()).pathname.startsWith('/hosted/')) t.posts.push(r.status());
      });
      return t;
    }

    function assertNoCvvAnywhere(cvv: string, page: Page, t: Trace, where: string): void {
      assert.ok(!has(page.url(), cvv), `${where}: the page's URL has the CVV: ${page.url()}`);
      for (const u of t.urls) assert.ok(!has(u, cvv), `${where}: a navigation to a URL with the CVV: ${u}`);
      for (const r of t.requests) assert.ok(!has(r, cvv), `${where}: a request with the CVV in its URL: ${r}`);
      for (const b of t.bodies) assert.ok(!has(b, cvv), `${where}: a request body with the CVV (without the runtime nothing may send it): ${b}`);
      for (const s of seen) assert.ok(!has(s, cvv), `${where}: the server saw a URL with the CVV: ${s}`);
      assert.ok(!has(logs.join('\n'), cvv), `${where}: the CVV is in the server's logs`);
    }

    /**
     * Types the CVV and presses Enter: nothing may be submitted (the page stays the form). Then, when
     * the form has a submit button (a custom form), clicks it: that is an explicit submission, which
     * may post, but only to our own page, which answers 4xx (the caller checks the rest).
     */
    async function typeAndSubmit(page: Page, t: Trace, cvv: string): Promise<void> {
      const field = page.locator('[data-cvvops="cvv"]');
      await field.click();
      await page.keyboard.type(cvv);
      assert.equal(await field.inputValue(), cvv, 'the field took the CVV');
      await page.keyboard.press('Enter');
      await page.waitForTimeout(800);
      assert.equal(t.urls.length, 1, `Enter submitted nothing (no navigation): ${t.urls.join(', ')}`);
      assert.deepEqual(t.posts, [], 'Enter posted nothing');
      const button = page.locator('[data-cvvops="submit"]');
      if ((await button.count()) > 0) {
        await button.click({ timeout: 2000 });
        await page.waitForTimeout(800);
        assert.equal(t.posts.length, 1, 'the click posted (an explicit submission)');
        assert.ok(t.posts[0]! >= 400 && t.posts[0]! < 500, `a native post is answered 4xx, not ${t.posts[0]}`);
      }
    }

    async function withPage<T>(ctx: BrowserContext, fn: (page: Page) => Promise<T>): Promise<T> {
      const page = await ctx.newPage();
      page.setDefaultTimeout(10_000);
      try {
        return await fn(page);
      } finally {
        await page.close();
      }
    }

    for (const kind of ['hosted', 'custom'] as const) {
      const cvv = kind === 'hosted' ? CVV : CUSTOM_CVV;

      it(`${kind} form, JavaScript disabled: Enter (and the submit button) never put the CVV in a URL`, async () => {
        const ctx = await browser.newContext({ javaScriptEnabled: false });
        try {
          await withPage(ctx, async (page) => {
            const t = trace(page);
            await page.goto(kind === 'hosted' ? await formUrl() : await custom());
            const form = page.locator('form[data-cvvops-root]');
            const named = await page.locator('[data-cvvops="cvv"]').getAttribute('name');
            const method = await form.getAttribute('method');
            await typeAndSubmit(page, t, cvv);
            assertNoCvvAnywhere(cvv, page, t, `${kind}, no JavaScript`);
            // How: an unnamed field (never part of a native submission) in a form that could only post.
            assert.equal(named, null, 'the CVV field has no name');
            assert.equal(method, 'post');
          });
        } finally {
          await ctx.close();
        }
      });

      it(`${kind} form, its script blocked: Enter (and the submit button) never put the CVV in a URL`, async () => {
        const ctx = await browser.newContext();
        try {
          await withPage(ctx, async (page) => {
            let blocked = 0;
            await page.route('**/assets/form.js', (route) => {
              blocked++;
              return route.abort();
            });
            const t = trace(page);
            await page.goto(kind === 'hosted' ? await formUrl() : await custom());
            assert.equal(blocked, 1, 'the runtime script was requested and blocked');
            await typeAndSubmit(page, t, cvv);
            assertNoCvvAnywhere(cvv, page, t, `${kind}, script blocked`);
          });
        } finally {
          await ctx.close();
        }
      });

      it(`${kind} form with its script: Enter collects the CVV through the API, and the URL stays clean`, async () => {
        const ctx = await browser.newContext();
        try {
          await withPage(ctx, async (page) => {
            const t = trace(page);
            const url = kind === 'hosted' ? await formUrl() : await custom();
            await page.goto(url);
            const field = page.locator('[data-cvvops="cvv"]');
            await field.click();
            await page.keyboard.type('123');
            await page.keyboard.press('Enter');
            await page.waitForFunction(() => (globalThis as any).document.querySelector('[data-cvvops="message"]')?.dataset.kind === 'ok');
            assert.equal(await field.inputValue(), '', 'cleared once collected');
            assert.ok(
              t.requests.some((r) => r === `POST ${base}/CvvOperations/collectCvv`),
              t.requests.join('\n'),
            );
            // The page never left the form (the load, then the runtime's replaceState that drops the fragment).
            const where = new URL(url).pathname + new URL(url).search;
            for (const u of t.urls) assert.equal(new URL(u).pathname + new URL(u).search, where);
            assert.ok(!has(page.url(), '123'));
            assert.ok(!page.url().includes('token='), 'the runtime took the token out of the address bar');
          });
        } finally {
          await ctx.close();
        }
      });
    }

    it('nothing on the server takes a CVV from a query string; a native post gets a 4xx and its body is neither read nor logged', async () => {
      const url = new URL(await formUrl());
      const before = logs.length;
      const get = await fetch(`${base}/hosted/cvv?cvv=${CVV}`);
      assert.ok(get.status >= 400 && get.status < 500, `GET with ?cvv= is ${get.status}`);
      const withSession = await fetch(`${base}/hosted/cvv?session=${url.searchParams.get('session')}&cvv=${CVV}`);
      assert.equal(withSession.status, 200, 'the page renders, the parameter is ignored');
      assert.ok(!has(await withSession.text(), CVV), 'and never echoed');
      for (const path of [`/hosted/cvv?session=${url.searchParams.get('session')}`, `/hosted/forms/${customForm}?session=cvo_x`]) {
        const post = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `cvv=${CVV}` });
        assert.ok(post.status >= 400 && post.status < 500, `POST ${path} is ${post.status}`);
        assert.ok(!has(await post.text(), CVV));
      }
      assert.ok(!has(logs.slice(before).join('\n'), CVV), 'no CVV in the logs');
    });
  });
}
