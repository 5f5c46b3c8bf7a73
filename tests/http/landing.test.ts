import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import request from 'supertest';
import { type Harness, makeHarness } from '../helpers/harness.js';

/** GET /: a small landing page (not a JSON 404) linking the demo, the references and the health endpoints, under a strict CSP. */
describe('the landing page', () => {
  let h: Harness;
  let off: Harness;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_DEMO: 'on' } });
    off = await makeHarness({ env: { CVVOPS_DEMO: 'off' } });
  });
  after(async () => {
    await h.close();
    await off.close();
  });

  it('is HTML with a strict CSP, and every link on it answers', async () => {
    const r = await request(h.app).get('/');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] ?? '', /^text\/html/);
    const csp = r.headers['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /style-src 'nonce-[A-Za-z0-9+/=_-]+'/);
    assert.ok(!csp.includes('unsafe-inline') && !csp.includes('script-src'), 'no script, no inline without its nonce');
    const links = [...r.text.matchAll(/href="([^"]+)"/g)].map((m) => m[1]!);
    for (const want of ['/demo', '/openapi.json', '/healthz', '/readyz', '/metrics', '/.well-known/jwks.json', '/sdk/v1/cvvops.js']) {
      assert.ok(links.includes(want), `links ${want}`);
    }
    for (const link of links) assert.equal((await request(h.app).get(link)).status, 200, `${link} answers`);
  });

  it('says the demo is off instead of linking it when it is off', async () => {
    const r = await request(off.app).get('/');
    assert.equal(r.status, 200);
    assert.ok(!r.text.includes('href="/demo"'));
    assert.match(r.text, /demo checkout is off/);
  });
});
