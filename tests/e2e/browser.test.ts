import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Frame, Page } from 'playwright-core';
import { buildApp } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { ManualClock } from '../../server/domain/clock.js';
import { createDeps, type Deps } from '../../server/deps.js';
import { createLogger } from '../../server/log.js';
import { Secret } from '../../server/secret.js';
import { chromiumAvailable, freePort, launchChromium } from '../helpers/browser.js';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
// Written on every run (gitignored); docs/screenshots/ holds the copies the README shows.
const SHOTS = join(process.cwd(), 'tests', 'e2e', 'screenshots');

if (!chromiumAvailable()) {
  describe('the browser flow', () => {
    it('runs in real Chromium', { skip: 'Chromium not installed (apt-get install -y chromium)' }, () => {});
  });
} else {
  describe('the browser flow in real Chromium', () => {
    let deps: Deps;
    let server: http.Server;
    let shop: http.Server;
    let other: http.Server;
    let browser: Browser;
    let base: string;
    let shopOrigin: string;
    let otherOrigin: string;
    let key: string;
    let merchantId: string;
    const evilHits: string[] = [];

    /** The merchant's own server: its page (another origin) and its backend, which uses our API with its key. */
    function merchantApp(): http.Server {
      return http.createServer(async (req, res) => {
        const url = new URL(req.url ?? '/', shopOrigin);
        if (url.pathname.startsWith('/evil')) {
          evilHits.push(url.pathname + url.search);
          res.writeHead(204).end();
          return;
        }
        const api = async (path: string, body: unknown) => {
          const r = await fetch(`${base}${path}`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(body),
          });
          return r.json() as Promise<any>;
        };
        if (url.pathname === '/session') {
          const card = await api('/Cards', { number: url.searchParams.get('card') ?? '4000000000002024', expMonth: 12, expYear: 2030 });
          const form = url.searchParams.get('form');
          const s = await api('/CvvOperations', {
            card: card.token,
            operations: ['collectCvv', 'threeDS', 'charge'],
            amount: { value: 1999, currency: 'EUR' },
            ...(form ? { form } : {}),
          });
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: s.token }));
          return;
        }
        if (url.pathname === '/validate') {
          let body = '';
          for await (const c of req) body += c;
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(await api('/CvvOperations/validateToken', JSON.parse(body))));
          return;
        }
        if (url.pathname === '/redirect') {
          // A checkout in redirect mode: the challenge is a whole page; back here, CvvOps.resume() goes on.
          res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>
<main><div id="cvv"></div><button id="pay" type="button">Pay</button><p id="out" role="status"></p></main>
<script src="${base}/sdk/v1/cvvops.js"></script>
<script>
const out = (o) => { document.querySelector('#out').textContent = JSON.stringify(o); };
const finish = async (form) => {
  const p = await form.charge();
  const v = await (await fetch('/validate', { method: 'POST', body: JSON.stringify({ token: form.token }) })).json();
  return { charge: p.result.status, valid: v.valid, current: v.current };
};
window.flow = (async () => {
  const back = await CvvOps.resume('#cvv', { locale: 'fr' });
  if (back) {
    window.form = back.form;
    if (back.canceled) { out({ canceled: true }); return true; }
    out({ threeDS: back.threeDS.result.status, ...(await finish(back.form)) });
    return true;
  }
  const { token } = await (await fetch('/session')).json();
  const form = await CvvOps.mount('#cvv', { token, locale: 'fr' });
  window.form = form;
  document.querySelector('#pay').addEventListener('click', async () => {
    await form.collectCvv();
    await form.threeDS({ mode: 'redirect' });
  });
  return true;
})();
</script></body></html>`);
          return;
        }
        const sri = `sha384-${(await import('node:crypto'))
          .createHash('sha384')
          .update(readFileSync(join(process.cwd(), 'public/sdk/v1/cvvops.js')))
          .digest('base64')}`;
        res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>
<main><h1>Checkout</h1><div id="cvv"></div><button id="pay" type="button" disabled>Pay</button><p id="out" role="status"></p></main>
<script src="${base}/sdk/v1/cvvops.js" integrity="${sri}" crossorigin="anonymous"></script>
<script>
window.flow = (async () => {
  const q = new URLSearchParams(location.search);
  if (q.get('width')) document.querySelector('#cvv').style.width = q.get('width') + 'px';
  const { token } = await (await fetch('/session?' + q.toString())).json();
  const form = await CvvOps.mount('#cvv', {
    token,
    locale: q.get('locale') || undefined,
    theme: q.get('appearance') ? undefined : { '--cvvops-accent': '#0a7d4f' },
    appearance: q.get('appearance') || undefined,
    texts: q.get('texts') ? JSON.parse(q.get('texts')) : undefined,
  });
  window.form = form;
  window.events = [];
  form.on('change', (e) => { window.events.push(['change', e]); document.querySelector('#pay').disabled = !e.valid; });
  form.on('token', () => window.events.push(['token']));
  form.on('error', (e) => window.events.push(['error', e.code]));
  document.querySelector('#pay').addEventListener('click', async () => {
    try {
      const c = await form.collectCvv();
      const t = await form.threeDS();
      const p = await form.charge();
      const v = await (await fetch('/validate', { method: 'POST', body: JSON.stringify({ token: form.token }) })).json();
      document.querySelector('#out').textContent = JSON.stringify({ collect: c.result.status, threeDS: t.result.status, charge: p.result.status, declineCode: p.result.declineCode, valid: v.valid, current: v.current, res: v.claims && v.claims.res.charge.status });
    } catch (e) {
      document.querySelector('#out').textContent = JSON.stringify({ error: e.code, status: e.status });
    }
  });
  return true;
})();
</script></body></html>`);
      });
    }

    before(async () => {
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      shop = merchantApp();
      await new Promise<void>((r) => shop.listen(0, 'localhost', () => r()));
      shopOrigin = `http://localhost:${(shop.address() as { port: number }).port}`;
      other = http.createServer((req, res) => {
        const q = new URL(req.url ?? '/', 'http://x').searchParams;
        if (q.has('token')) {
          // A page that mounts the SDK with a session token of a merchant that does not allow this origin.
          res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>Other</title><div id="cvv"></div>
<script src="${base}/sdk/v1/cvvops.js"></script>
<script>
window.mounted = (async () => {
  const t0 = performance.now();
  try {
    await CvvOps.mount('#cvv', { token: ${JSON.stringify(q.get('token'))} });
    return { ok: true };
  } catch (e) {
    return { code: e.code, message: e.message, ms: performance.now() - t0, frames: document.querySelectorAll('iframe').length };
  }
})();
</script>`);
          return;
        }
        const src = q.get('src') ?? '';
        res
          .writeHead(200, { 'content-type': 'text/html' })
          .end(`<!doctype html><title>Other</title><iframe id="f" src="${src.replace(/"/g, '&quot;')}"></iframe>`);
      });
      await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
      otherOrigin = `http://127.0.0.1:${(other.address() as { port: number }).port}`;
      const master = randomBytes(32);
      const config = loadConfig({
        PORT: String(port),
        PUBLIC_BASE_URL: base,
        DATABASE_URL: `sqlite::memory:`,
        CVVOPS_MASTER_KEY: master.toString('base64'),
        CVVOPS_RATE_LIMIT: 'off',
        LOG_LEVEL: 'silent',
        CVVOPS_DEMO: 'on',
      });
      deps = await createDeps(config, createLogger('silent'), { clock: new ManualClock(Date.now()), masterKey: new Secret(master) });
      const created = await deps.merchants.create({ name: 'Shop', origins: [shopOrigin] });
      await deps.origins.refresh();
      key = created.testKey.expose();
      merchantId = created.merchant.id;
      server = buildApp(deps).listen(port, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      browser = await launchChromium();
    });

    after(async () => {
      await browser?.close();
      server?.close();
      shop?.close();
      other?.close();
      await deps?.close();
    });

    /** A step that must end within `ms`: a hang fails the test naming the step instead of running into the test's timeout. */
    function bounded<T>(p: Promise<T>, step: string, ms = 20_000): Promise<T> {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${step}: no answer within ${ms / 1000} s`)), ms);
      });
      return Promise.race([p, late]).finally(() => clearTimeout(timer));
    }

    async function shopPage(query = ''): Promise<{ page: Page; form: Frame }> {
      const page = await browser.newPage();
      page.setDefaultTimeout(15_000);
      await page.goto(`${shopOrigin}/${query}`);
      await page.waitForFunction('window.flow');
      await bounded(page.evaluate('window.flow'), 'the page mounts the form');
      const handle = await page.waitForSelector('#cvv iframe');
      const form = (await handle.contentFrame())!;
      await form.waitForSelector('[data-cvvops="cvv"]');
      return { page, form };
    }

    async function axe(frame: Page | Frame): Promise<unknown[]> {
      await frame.evaluate(AXE);
      const r = await frame.evaluate(
        'axe.run(document, { resultTypes: ["violations"] }).then(r => r.violations.map(v => ({ id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.html) })))',
      );
      return r as unknown[];
    }

    it(
      'the 3DS overlay closes by its button, Escape in the challenge and the backdrop: threeDS() rejects "canceled", focus comes back, the same session then authenticates',
      { timeout: 90_000 },
      async () => {
        const overlayCount = (page: Page) => page.locator('[role="dialog"][aria-label="Payment verification"]').count();
        /** Starts threeDS() on the page; the result (status, or error code) is read later with `outcome`. */
        const start = async (page: Page) => {
          // A statement, not the promise: evaluate would wait for it.
          await page.evaluate('void (window.pending = window.form.threeDS().then((r) => r.result.status, (e) => e.code))');
          return (await (await page.waitForSelector('iframe[title="Payment verification"]')).contentFrame())!;
        };
        const outcome = (page: Page) =>
          page.evaluate<string>('Promise.race([window.pending, new Promise((r) => setTimeout(() => r("still open after 10 s"), 10000))])');
        const ready = async (query: string) => {
          const { page, form } = await shopPage(query);
          await form.locator('[data-cvvops="cvv"]').fill('123');
          assert.equal(await bounded(page.evaluate('window.form.collectCvv().then((r) => r.result.status)'), 'collectCvv'), 'succeeded');
          // Where the shopper's focus was when the verification opened (Pay is disabled again once the field is cleared).
          await page.evaluate(
            `document.body.insertAdjacentHTML('beforeend', '<button id="before" type="button">Back</button>'); document.getElementById('before').focus()`,
          );
          return page;
        };

        let page = await ready('?card=4000000000002024');
        let challenge = await start(page);
        await challenge.waitForSelector('#code');
        // Focus is in the dialog and stays there: Tab moves between its close button and the frame, never behind it.
        for (let i = 0; i < 4; i++) {
          await page.keyboard.press('Tab');
          assert.equal(await page.evaluate("!!document.activeElement.closest('[role=dialog]')"), true, `Tab ${i + 1} stayed in the dialog`);
        }
        await page.click('button[aria-label="Cancel the verification"]');
        assert.equal(await outcome(page), 'canceled');
        assert.equal(await overlayCount(page), 0, 'the overlay is gone');
        assert.equal(await page.evaluate('document.activeElement.id'), 'before', 'focus is back where it was');
        challenge = await start(page);
        await challenge.locator('#code').fill('123456');
        await challenge.locator('button[type=submit]').click();
        assert.equal(await outcome(page), 'Y', 'the same session authenticates after a cancel');
        await page.close();

        page = await ready('?card=4000000000002024');
        challenge = await start(page);
        // A real key press in the frame, sent to whatever has focus. The frame is removed under it, so nothing may wait on
        // it: the browser's acknowledgement of the key's release, routed to a frame that no longer exists, can never come
        // (awaiting it hung this test now and then). The outcome below is what shows the key worked.
        await challenge.locator('#code').focus();
        void page.keyboard.press('Escape').catch(() => undefined);
        assert.equal(await outcome(page), 'canceled', 'Escape, pressed in the challenge frame');
        assert.equal(await overlayCount(page), 0);
        await start(page);
        await bounded(page.mouse.click(3, 3), 'a click on the backdrop');
        assert.equal(await outcome(page), 'canceled', 'a click on the backdrop');
        assert.equal(await overlayCount(page), 0);
        challenge = await start(page);
        await challenge.locator('#code').fill('123456');
        await challenge.locator('button[type=submit]').click();
        assert.equal(await outcome(page), 'Y');
        await page.close();
      },
    );

    it('a merchant page on another origin mounts the SDK; the shopper types the CVV, passes the challenge, is charged; the merchant validates', async () => {
      const { page, form } = await shopPage('?card=4000000000002024');
      assert.equal(await page.locator('#pay').isDisabled(), true);
      await form.locator('[data-cvvops="cvv"]').fill('123');
      await page.waitForFunction("!document.querySelector('#pay').disabled");
      assert.equal(await form.locator('[data-cvvops="cvv"]').getAttribute('autocomplete'), 'cc-csc');
      assert.equal(await form.locator('[data-cvvops="cvv"]').getAttribute('inputmode'), 'numeric');
      assert.equal(await form.locator('[data-cvvops="cvv"]').getAttribute('maxlength'), '3');
      await page.screenshot({ path: join(SHOTS, 'hosted-form.png') });
      await page.click('#pay');
      const overlay = await page.waitForSelector('iframe[title="Payment verification"]');
      const challenge = (await overlay.contentFrame())!;
      await challenge.waitForSelector('#code');
      assert.deepEqual(await axe(challenge), [], 'axe: the challenge page');
      assert.deepEqual(await axe(page), [], 'axe: the merchant page with the overlay open (dialog, close button)');
      await challenge.locator('#code').fill('123456');
      await page.screenshot({ path: join(SHOTS, 'challenge.png') });
      await challenge.locator('button[type=submit]').click();
      await page.waitForFunction("document.querySelector('#out').textContent !== ''", undefined, { timeout: 20_000 });
      const out = JSON.parse((await page.textContent('#out'))!);
      assert.deepEqual(out, { collect: 'succeeded', threeDS: 'Y', charge: 'approved', declineCode: null, valid: true, current: true, res: 'approved' });
      // The CVV never reached the merchant's page: not in its DOM, not in its events.
      const events = JSON.stringify(await page.evaluate('window.events'));
      assert.ok(events.includes('"valid":true'));
      assert.ok(!events.includes('123'), 'no CVV in the events the merchant page received');
      assert.equal(await form.locator('[data-cvvops="cvv"]').inputValue(), '', 'the field is cleared after collection');
      await page.close();
    });

    it('the hosted form has no accessibility violations, in French too', async () => {
      for (const locale of ['en', 'fr']) {
        const { page, form } = await shopPage(`?card=4000000000001018&locale=${locale}`);
        assert.deepEqual(await axe(form), [], `axe: hosted form (${locale})`);
        const label = await form.locator('label[for="cvvops-cvv"]').textContent();
        assert.equal(label, locale === 'fr' ? 'Cryptogramme visuel (CVV)' : 'Security code (CVV)');
        await page.close();
      }
    });

    it('the field fits a 200 px column, a 390 px phone, 1280 px and 200 % zoom: nothing clipped, the toggle as tall as the input, the frame as tall as the form', async () => {
      const cases = [
        { what: '200 px column', viewport: { width: 1280, height: 800 }, scale: 1, width: 200 },
        { what: '390 px phone', viewport: { width: 390, height: 844 }, scale: 3, width: 0 },
        { what: '1280 px', viewport: { width: 1280, height: 800 }, scale: 1, width: 0 },
        // Page zoom at 200 % halves the CSS pixels a window has: 1280 device px are 640 CSS px, each drawn twice.
        { what: '200 % zoom', viewport: { width: 640, height: 400 }, scale: 2, width: 0 },
        { what: '200 % zoom in a 200 px column', viewport: { width: 640, height: 400 }, scale: 2, width: 200 },
      ];
      for (const c of cases) {
        const context = await browser.newContext({ viewport: c.viewport, deviceScaleFactor: c.scale });
        const page = await context.newPage();
        await page.goto(`${shopOrigin}/?card=4000000000001018${c.width ? `&width=${c.width}` : ''}`);
        await page.evaluate('window.flow');
        const frameEl = await page.waitForSelector('#cvv iframe');
        const form = (await frameEl.contentFrame())!;
        if (c.what === '1280 px') {
          await form.waitForSelector('[data-cvvops="cvv"]');
          await page.locator('#cvv').screenshot({ path: join(SHOTS, 'field.png') });
        }
        // A started, too short code, then Tab: the error shows (the frame must grow to show it too).
        await form.locator('[data-cvvops="cvv"]').fill('12');
        await form.locator('[data-cvvops="cvv"]').press('Tab');
        await form.waitForSelector('[data-cvvops="message"][data-kind="error"]');
        const m = await form.evaluate<{
          client: number;
          scroll: number;
          doc: number;
          outside: string[];
          input: number;
          toggle: number;
        }>(`(() => {
          const de = document.documentElement;
          const outside = [...document.querySelectorAll('label, input, button:not([hidden]), p')]
            .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.left < 0 || r.right > de.clientWidth + 0.5); })
            .map((e) => e.getAttribute('data-cvvops') || e.tagName);
          return {
            client: de.clientWidth, scroll: de.scrollWidth, doc: Math.ceil(de.getBoundingClientRect().height), outside,
            input: document.querySelector('[data-cvvops="cvv"]').getBoundingClientRect().height,
            toggle: document.querySelector('[data-cvvops="toggle"]').getBoundingClientRect().height,
          };
        })()`);
        // The frame grows to the form's height (its resize message), whatever the width made of it.
        await page.waitForFunction(`Math.abs(document.querySelector('#cvv iframe').getBoundingClientRect().height - ${m.doc}) <= 1`);
        const frameBox = (await frameEl.boundingBox())!;
        const container = (await page.locator('#cvv').boundingBox())!;
        assert.deepEqual(m.outside, [], `${c.what}: elements cut off at the sides`);
        assert.ok(m.scroll <= m.client, `${c.what}: the form scrolls sideways (${m.scroll} > ${m.client})`);
        assert.ok(Math.abs(m.input - m.toggle) <= 1, `${c.what}: input ${m.input} px, toggle ${m.toggle} px`);
        assert.ok(frameBox.width <= container.width + 0.5, `${c.what}: the frame is wider than its column`);
        assert.ok(m.doc < 260, `${c.what}: ${m.doc} px tall`);
        if (c.what === '390 px phone') await page.screenshot({ path: join(SHOTS, 'phone.png'), clip: { x: 0, y: 0, width: 390, height: 260 } });
        if (c.what === '1280 px') await page.locator('#cvv').screenshot({ path: join(SHOTS, 'field-error.png') });
        const errorText = await form.locator('[data-cvvops="message"]').textContent();
        assert.match(errorText ?? '', /3-digit/, `${c.what}: blur validation says what is wrong`);
        await context.close();
      }
    });

    it('blur, paste and autofill: a short code is said on leaving the field; a pasted or autofilled code (no keystrokes) enables Pay', async () => {
      const { page, form } = await shopPage('?card=4000000000001018');
      const field = form.locator('[data-cvvops="cvv"]');
      await field.focus();
      await field.press('Tab');
      assert.equal(await form.locator('[data-cvvops="message"]').textContent(), '', 'an empty field left alone is not an error');
      await field.fill('1');
      await field.press('Tab');
      assert.equal(await field.getAttribute('aria-invalid'), 'true');
      assert.match((await form.locator('[data-cvvops="message"]').textContent()) ?? '', /3-digit/);
      assert.equal(await form.locator('[data-cvvops="message"]').getAttribute('role'), 'alert', 'announced');
      assert.deepEqual(await axe(form), [], 'axe: the field in its error state');
      assert.equal(await page.isDisabled('#pay'), true);
      // Paste: the clipboard's text, letters and spaces dropped.
      await field.focus();
      const inField = (js: string) => form.evaluate(`(() => { const el = document.querySelector('[data-cvvops="cvv"]'); ${js} })()`);
      await inField(`el.value = ' 1 2 3 '; el.dispatchEvent(new InputEvent('input', { bubbles: true, inputType: 'insertFromPaste' }));`);
      await page.waitForFunction("!document.querySelector('#pay').disabled");
      assert.equal(await field.inputValue(), '123');
      assert.equal(await field.getAttribute('aria-invalid'), 'false');
      // Autofill: the value set with only a change event, no keystroke and no input event.
      await inField(`el.value = ''; el.dispatchEvent(new Event('input', { bubbles: true }));`);
      await page.waitForFunction("document.querySelector('#pay').disabled");
      await inField(`el.value = '456'; el.dispatchEvent(new Event('change', { bubbles: true }));`);
      await page.waitForFunction("!document.querySelector('#pay').disabled");
      await page.close();
    });

    it('a form mounted in French shows the 3-D Secure overlay and challenge page in French, through to the outcome; axe-clean', async () => {
      const { page, form } = await shopPage('?locale=fr'); // the default card asks for a challenge
      await form.locator('[data-cvvops="cvv"]').fill('123');
      await page.click('#pay');
      const overlay = await page.waitForSelector('iframe[title="Vérification du paiement"]');
      assert.equal(await page.getAttribute('[role=dialog]', 'aria-label'), 'Vérification du paiement');
      assert.equal(await page.getAttribute('[role=dialog] button', 'aria-label'), 'Annuler la vérification');
      const challenge = (await overlay.contentFrame())!;
      await challenge.waitForSelector('#code');
      assert.equal(await challenge.getAttribute('html', 'lang'), 'fr');
      assert.equal(await challenge.textContent('h1'), 'Vérifiez votre paiement');
      assert.match((await challenge.textContent('main p'))!, /Votre banque vous demande de confirmer ce paiement de 19,99\s€/);
      assert.equal(await challenge.textContent('label[for=code]'), 'Code à usage unique');
      assert.match((await challenge.textContent('#code-hint'))!, /Mode test/);
      assert.deepEqual(await axe(challenge), [], 'axe: the challenge page in French');
      await challenge.locator('#code').fill('123456');
      await challenge.locator('button[type=submit]').click();
      await page.waitForFunction("document.querySelector('#out').textContent !== ''", undefined, { timeout: 20_000 });
      assert.equal(JSON.parse((await page.textContent('#out'))!).charge, 'approved');
      await page.close();
    });

    it('where the code is (the back, or the front for Amex), the merchant words, the dark appearance: axe-clean, in the error state too', async () => {
      // A Visa: 3 digits on the back.
      {
        const { page, form } = await shopPage('?card=4000000000001018');
        assert.match((await form.textContent('[data-cvvops="hint"]'))!, /3 digits on the back/);
        assert.equal(await form.getAttribute('[data-cvvops="hint"] svg', 'role'), 'img');
        assert.equal(await form.textContent('[data-cvvops="hint"] svg title'), 'Where to find it: the back of the card');
        assert.equal(await form.textContent('[data-cvvops="hint"] svg text'), '123');
        assert.equal(await form.getAttribute('[data-cvvops="cvv"]', 'placeholder'), 'CVV');
        await page.close();
      }
      // An Amex: 4 digits on the front; the merchant's own label, placeholder and hint; dark.
      const texts = { label: 'Card code', placeholder: '4 digits', hint: 'Printed above the card number.' };
      const { page, form } = await shopPage(`?card=378282246310005&appearance=dark&texts=${encodeURIComponent(JSON.stringify(texts))}`);
      assert.equal(await form.textContent('[data-cvvops="label"]'), 'Card code');
      assert.equal(await form.getAttribute('[data-cvvops="cvv"]', 'placeholder'), '4 digits');
      assert.match((await form.textContent('[data-cvvops="hint"]'))!, /Printed above the card number\./);
      assert.equal(await form.textContent('[data-cvvops="hint"] svg title'), 'Where to find it: the front of the card');
      assert.equal(await form.textContent('[data-cvvops="hint"] svg text'), '1234');
      assert.equal(await form.getAttribute('html', 'data-theme'), 'dark');
      assert.deepEqual(await axe(form), [], 'axe (contrast included): dark');
      await form.locator('[data-cvvops="cvv"]').fill('12');
      await form.locator('[data-cvvops="cvv"]').press('Tab');
      await form.waitForSelector('[data-cvvops="message"][data-kind="error"]');
      assert.match((await form.textContent('[data-cvvops="message"]'))!, /4-digit/);
      assert.deepEqual(await axe(form), [], 'axe (contrast included): dark, error shown');
      await form.locator('[data-cvvops="cvv"]').focus();
      await page.locator('#cvv').screenshot({ path: join(SHOTS, 'field-dark-error.png') });
      await page.close();
    });

    it('redirect mode: the challenge as a whole page and back, resumed by CvvOps.resume(); canceled, then retried in the same session; no token in any URL', async () => {
      const page = await browser.newPage();
      page.setDefaultTimeout(20_000);
      const urls: string[] = [];
      page.on('request', (r) => urls.push(r.url()));
      page.on('framenavigated', (f) => urls.push(f.url()));
      const shopAt = `${shopOrigin}/redirect`;
      const payAndGo = async () => {
        await page.goto(shopAt);
        await page.evaluate('window.flow');
        const form = (await (await page.waitForSelector('#cvv iframe')).contentFrame())!;
        await form.locator('[data-cvvops="cvv"]').fill('123');
        await Promise.all([page.waitForURL(`${base}/hosted/3ds/**`), page.click('#pay')]);
        // The challenge page, in the form's language, the whole window.
        assert.equal(await page.getAttribute('html', 'lang'), 'fr');
        assert.deepEqual(await axe(page), [], 'axe: the challenge page in redirect mode');
      };
      // 1. The shopper goes back without finishing: resumed as canceled.
      await payAndGo();
      await Promise.all([page.waitForURL(`${shopAt}**`), page.click('a[data-cvvops-3ds-cancel]')]);
      await page.evaluate('window.flow');
      await page.waitForFunction("document.querySelector('#out').textContent !== ''");
      assert.deepEqual(JSON.parse((await page.textContent('#out'))!), { canceled: true });
      assert.equal(new URL(page.url()).hash, '', 'the outcome left the address bar');
      // 2. The same session tries again (the overlay this time) and authenticates.
      // Started, not awaited: it settles once the shopper has finished in the overlay.
      void page.evaluate(`window.form.threeDS().then((t) => { window.retried = t.result.status; }, (e) => { window.retried = e.code; })`);
      const overlay = (await (await page.waitForSelector('iframe[title="Vérification du paiement"]')).contentFrame())!;
      await overlay.locator('#code').fill('123456');
      await overlay.locator('button[type=submit]').click();
      await page.waitForFunction('window.retried !== undefined');
      assert.equal(await page.evaluate('window.retried'), 'Y', 'the same session authenticated after its cancel');
      // 3. A new session, the code given on the challenge page: back at the shop, resumed, charged, validated.
      await payAndGo();
      await page.locator('#code').fill('123456');
      await Promise.all([page.waitForURL(`${shopAt}**`), page.click('button[type=submit]')]);
      await page.evaluate('window.flow');
      await page.waitForFunction("document.querySelector('#out').textContent !== ''");
      assert.deepEqual(JSON.parse((await page.textContent('#out'))!), { threeDS: 'Y', charge: 'approved', valid: true, current: true });
      // The token travelled in this tab's storage only: no address the browser went to or asked for holds one.
      const jws = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
      assert.deepEqual(
        urls.filter((u) => jws.test(u.split('#')[0]!)),
        [],
      );
      assert.equal(await page.evaluate("sessionStorage.getItem('cvvops:resume')"), null, 'nothing left to resume');
      await page.close();
    });

    it('keyboard only: tab into the field, type, tab to Pay, press Enter', async () => {
      const { page, form } = await shopPage('?card=4000000000001018');
      await page.keyboard.press('Tab');
      const focused = await form.evaluate("document.activeElement && document.activeElement.getAttribute('data-cvvops')");
      assert.equal(focused, 'cvv');
      await page.keyboard.type('123');
      await page.waitForFunction("!document.querySelector('#pay').disabled");
      // Tab on: the show/hide toggle, then out of the frame to Pay (a few presses at most, each checked, since
      // focus leaving an iframe can take a moment to land in the parent page).
      let onPay = false;
      for (let i = 0; i < 4 && !onPay; i++) {
        await page.keyboard.press('Tab');
        onPay = await page.waitForFunction("document.activeElement && document.activeElement.id === 'pay'", undefined, { timeout: 1000 }).then(
          () => true,
          () => false,
        );
      }
      assert.ok(onPay, 'Pay is reachable with Tab');
      await page.keyboard.press('Enter');
      await page.waitForFunction("document.querySelector('#out').textContent !== ''", undefined, { timeout: 20_000 });
      assert.equal(JSON.parse((await page.textContent('#out'))!).charge, 'approved');
      await page.close();
    });

    it('a wrong CVV is declined (incorrect_cvc) three times, then the card is blocked', async () => {
      const number = '4000000000004046';
      for (let i = 0; i < 3; i++) {
        const { page, form } = await shopPage(`?card=${number}`);
        await form.locator('[data-cvvops="cvv"]').fill('999');
        await page.click('#pay');
        await page.waitForFunction("document.querySelector('#out').textContent !== ''", undefined, { timeout: 20_000 });
        const out = JSON.parse((await page.textContent('#out'))!);
        assert.equal(out.charge, 'declined');
        assert.equal(out.declineCode, 'incorrect_cvc');
        await page.close();
      }
      const { page, form } = await shopPage(`?card=${number}`);
      await form.locator('[data-cvvops="cvv"]').fill('123');
      await page.click('#pay');
      await page.waitForFunction("document.querySelector('#out').textContent !== ''");
      assert.deepEqual(JSON.parse((await page.textContent('#out'))!), { error: 'cvv_blocked', status: 423 });
      assert.match((await form.locator('[data-cvvops="message"]').textContent())!, /cannot be used/);
      await page.close();
    });

    it('a custom form: injected script, onerror and exfiltrating CSS do nothing; the flow works', async () => {
      const res = await fetch(`${base}/CustomForms`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'Checkout CVV',
          html: `<div class="box"><label for="c" data-cvvops="label">Card code</label><input id="c" data-cvvops="cvv" onfocus="fetch('${shopOrigin}/evil/onfocus')">
<img src="x" onerror="fetch('${shopOrigin}/evil/onerror')"><script>fetch('${shopOrigin}/evil/script')</script>
<a href="javascript:fetch('${shopOrigin}/evil/js')">x</a><button data-cvvops="submit">Save</button><p data-cvvops="message"></p></div>`,
          css: `.box{padding:4px} input[value^="1"]{background:url(${shopOrigin}/evil/css1)} @import url(${shopOrigin}/evil/import); input{background-image:url("${shopOrigin}/evil/css2")}`,
        }),
      });
      assert.equal(res.status, 201);
      const created = (await res.json()) as any;
      const removed = created.sanitized.map((r: any) => r.removed);
      for (const r of ['script', 'event-handler attribute', 'css url()', 'css @import']) assert.ok(removed.includes(r), `reported: ${r} in ${removed}`);
      const { page, form } = await shopPage(`?card=4000000000001018&form=${created.id}`);
      assert.equal(await form.locator('label').textContent(), 'Card code');
      const csp = (await fetch(`${base}/hosted/forms/${created.id}`)).headers.get('content-security-policy')!;
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      await form.locator('[data-cvvops="cvv"]').focus();
      await form.locator('[data-cvvops="cvv"]').fill('123');
      assert.deepEqual(await axe(form), [], 'axe: custom form');
      await page.click('#pay');
      await page.waitForFunction("document.querySelector('#out').textContent !== ''", undefined, { timeout: 20_000 });
      assert.equal(JSON.parse((await page.textContent('#out'))!).charge, 'approved');
      // Until no request has been under way for 500 ms: whatever the injected markup could start has started.
      await page.waitForLoadState('networkidle');
      assert.deepEqual(evilHits, [], 'nothing injected ran or loaded');
      await page.close();
    });

    it('an origin the merchant does not allow cannot frame the form', async () => {
      const r = await fetch(`${base}/CvvOperations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          card: (
            (await (
              await fetch(`${base}/Cards`, {
                method: 'POST',
                headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
                body: JSON.stringify({ number: '4000000000001018', expMonth: 12, expYear: 2030 }),
              })
            ).json()) as any
          ).token,
          operations: ['collectCvv'],
        }),
      });
      const s = (await r.json()) as any;
      const page = await browser.newPage();
      await page.goto(`${otherOrigin}/?src=${encodeURIComponent(s.formUrl)}`);
      await page.waitForTimeout(1500);
      const frame = page.frames().find((f) => f !== page.mainFrame());
      const inputs = frame
        ? await frame
            .locator('[data-cvvops="cvv"]')
            .count()
            .catch(() => 0)
        : 0;
      assert.equal(inputs, 0, 'the form must not render inside a foreign page');
      // Mounted with the SDK there, the form fails in a moment, naming the page's origin and the fix (not after the 15 s timeout).
      const sdkPage = await browser.newPage();
      await sdkPage.goto(`${otherOrigin}/?token=${encodeURIComponent(s.token)}`);
      const failed = await sdkPage.evaluate<{ code: string; message: string; ms: number; frames: number }>('window.mounted');
      assert.equal(failed.code, 'origin_not_allowed', JSON.stringify(failed));
      assert.ok(failed.ms < 3000, `rejected after ${Math.round(failed.ms)} ms`);
      assert.ok(failed.message.includes(otherOrigin), failed.message);
      assert.match(failed.message, /allowedOrigins|merchant update --origin/);
      assert.equal(failed.frames, 0, 'the refused frame is removed');
      await sdkPage.close();
      // The same form is framable by the merchant's origin (control).
      const ok = await browser.newPage();
      await ok.goto(`${shopOrigin}/?card=4000000000001018`);
      await ok.evaluate('window.flow');
      const f = await (await ok.waitForSelector('#cvv iframe')).contentFrame();
      assert.equal(await f!.locator('[data-cvvops="cvv"]').count(), 1);
      await page.close();
      await ok.close();
      void merchantId;
    });

    it('the 3DS challenge page works without JavaScript', async () => {
      const ctx = await browser.newContext({ javaScriptEnabled: false });
      const card = (await (
        await fetch(`${base}/Cards`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ number: '4000000000002024', expMonth: 12, expYear: 2030 }),
        })
      ).json()) as any;
      const s = (await (
        await fetch(`${base}/CvvOperations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ card: card.token, operations: ['threeDS'] }),
        })
      ).json()) as any;
      const t = (await (
        await fetch(`${base}/CvvOperations/threeDS`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' },
          body: '{}',
        })
      ).json()) as any;
      const page = await ctx.newPage();
      await page.goto(t.result.challengeUrl);
      await page.fill('input[name="code"]', '123456');
      await page.click('button[type=submit]');
      await page.waitForSelector('[data-cvvops-3ds-status="Y"]');
      const r = await fetch(`${base}/CvvOperations/threeDS/result`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(((await r.json()) as any).result.status, 'Y');
      await ctx.close();
    });

    it('the demo on a 390 px phone: nothing sideways, every step shown with the challenge, "Not paid" with the reason for a decline', async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      const outcome = () =>
        page.waitForFunction(() => (globalThis as any).document.querySelector('#outcome').textContent !== '', undefined, { timeout: 20_000 });
      const sideways = () =>
        page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth - (globalThis as any).document.documentElement.clientWidth);
      await page.goto(`${base}/demo`);
      assert.equal(await sideways(), 0, 'the page scrolls sideways');
      // The challenge card: the challenge is a step of its own.
      await page.selectOption('#card', '4000000000002024');
      await page.click('#start');
      const frame = (await (await page.waitForSelector('#cvv iframe')).contentFrame())!;
      await frame.locator('[data-cvvops="cvv"]').fill('123');
      await page.click('#pay');
      const overlay = (await (await page.waitForSelector('iframe[title="Payment verification"]')).contentFrame())!;
      await overlay.locator('#code').fill('123456');
      await overlay.locator('button[type=submit]').click();
      await outcome();
      assert.match((await page.textContent('#outcome'))!, /^Paid/);
      const titles = await page.locator('#steps h3').allTextContents();
      assert.ok(
        titles.some((t) => /challenge/.test(t)),
        titles.join(' | '),
      );
      assert.equal(titles.length, 6, titles.join(' | '));
      assert.equal(await sideways(), 0, 'the page scrolls sideways after the flow');
      await page.screenshot({ path: join(SHOTS, 'demo-phone.png'), fullPage: true });
      // A declined card: "Not paid", with the reason.
      await page.selectOption('#card', '4000000000006066');
      await page.click('#start');
      const frame2 = (await (await page.waitForSelector('#cvv iframe')).contentFrame())!;
      await frame2.locator('[data-cvvops="cvv"]').fill('123');
      await page.evaluate(() => ((globalThis as any).document.querySelector('#outcome').textContent = ''));
      await page.click('#pay');
      await outcome();
      assert.equal(await page.textContent('#outcome'), 'Not paid: the card was declined (insufficient_funds).');
      await context.close();
    });

    it('the demo checkout runs the whole flow and has no accessibility violations', async () => {
      const page = await browser.newPage();
      page.setDefaultTimeout(20_000);
      await page.goto(`${base}/demo`);
      assert.deepEqual(await axe(page), [], 'axe: demo');
      await page.selectOption('#card', '4000000000001018');
      await page.click('#start');
      const frame = (await (await page.waitForSelector('#cvv iframe')).contentFrame())!;
      await frame.locator('[data-cvvops="cvv"]').fill('123');
      await page.click('#pay');
      await page.waitForFunction(
        () => {
          // Our pages refuse eval (CSP), so the predicate is a function, not a string.
          const doc = (globalThis as any).document;
          return doc.querySelector('#outcome').textContent !== '' || [...doc.querySelectorAll('#steps h3')].some((h: any) => h.textContent === 'Error');
        },
        undefined,
        { timeout: 20_000 },
      );
      assert.match((await page.textContent('#outcome')) ?? '', /Paid/, (await page.locator('#steps li').last().textContent()) ?? '');
      assert.equal(await page.locator('#steps li').count(), 5);
      await page.screenshot({ path: join(SHOTS, 'demo.png'), fullPage: true });
      await page.close();
    });

    it('the demo never charges after a failed 3-D Secure: the wrong challenge code ends in "Not paid" and the session has no charge', async () => {
      const page = await browser.newPage();
      page.setDefaultTimeout(20_000);
      // The token the page holds after 3-D Secure (the SDK fetched the final result with it).
      let latest = '';
      page.on('response', async (r) => {
        if (r.url().endsWith('/CvvOperations/threeDS/result') && r.status() === 200) latest = ((await r.json()) as { token: string }).token;
      });
      await page.goto(`${base}/demo`);
      await page.selectOption('#card', '4000000000002024');
      await page.click('#start');
      const frame = (await (await page.waitForSelector('#cvv iframe')).contentFrame())!;
      await frame.locator('[data-cvvops="cvv"]').fill('123');
      await page.click('#pay');
      const challenge = (await (await page.waitForSelector('iframe[title="Payment verification"]')).contentFrame())!;
      await challenge.locator('#code').fill('000000');
      await challenge.locator('button[type=submit]').click();
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#outcome').textContent !== '', undefined, { timeout: 20_000 });
      assert.match((await page.textContent('#outcome')) ?? '', /^Not paid: 3-D Secure ended with N/);
      assert.ok(!(await page.locator('#steps h3').allTextContents()).includes('Browser: charge'), 'no charge was attempted');
      // The server agrees: the demo's sessions require 3-D Secure, so a charge with that token is refused, and none was made.
      assert.ok(latest, 'the page fetched the final 3DS result');
      const charge = await fetch(`${base}/CvvOperations/charge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${latest}`, 'content-type': 'application/json' },
        body: '{}',
      });
      assert.equal(charge.status, 409);
      assert.equal(((await charge.json()) as any).error.code, 'precondition_failed');
      const v = (await (
        await fetch(`${base}/demo/api/validate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: latest }) })
      ).json()) as any;
      assert.equal(v.valid, true);
      assert.equal(v.session.results.charge, undefined, 'no charge in the session');
      assert.equal(v.session.require3DS, true);
      await page.close();
    });
  });
}
