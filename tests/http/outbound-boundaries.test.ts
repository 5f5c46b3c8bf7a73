import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import request from 'supertest';
import { isPrivateAddress, OutboundError, outbound, pooledConnections } from '../../server/connectors/outbound.js';
import { newId } from '../../server/domain/ids.js';
import { auth, collect, forceSettings, type Harness, makeCard, makeHarness, makeMerchant, makeSession, type TestMerchant } from '../helpers/harness.js';

/**
 * SECURITY.md "HTTP" (outbound calls), two boundaries:
 * - a kept-alive connection opened for a test-mode call (private targets
 *   allowed) is never reused by a live-mode call: the card data of a live
 *   charge must never reach a loopback address, and a live webhook endpoint
 *   on a private address is refused when it is created;
 * - every outbound body goes with its exact Content-Length, never chunked
 *   (a WSGI receiver reads CONTENT_LENGTH and would see an empty body).
 */

const LIVE_CARD = '4242424242424242';
/** Multi-byte UTF-8: 2, 3 and 4 bytes a character, so a length in characters is wrong. */
const WIDE = 'Zoë Ñandú € 😀';

// A throwaway self-signed certificate for localhost / 127.0.0.1 / ::1, for these tests only (it protects nothing).
const TEST_TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgXduXjYsre5khYlEv
sKMjbako7mNCOYf33StQhRge90qhRANCAARLxrps5O2XRToIfb67iv1SQOx3mmS2
u0REteX4P4Vob60mmgUA9sv2tmxmHMjNQLJMm+1Irgzg6y5O99akfjms
-----END PRIVATE KEY-----
`;
const TEST_TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBrTCCAVSgAwIBAgIUAbq9xrS4rnHYiruGumlAzAOIWt0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNTE2MDAyOVoYDzIxMjYxMTEx
MTYwMDI5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARLxrps5O2XRToIfb67iv1SQOx3mmS2u0REteX4P4Vob60mmgUA9sv2
tmxmHMjNQLJMm+1Irgzg6y5O99akfjmso4GBMH8wHQYDVR0OBBYEFKAmELviDkOL
14hegzw5usIGoJiXMB8GA1UdIwQYMBaAFKAmELviDkOL14hegzw5usIGoJiXMA8G
A1UdEwEB/wQFMAMBAf8wLAYDVR0RBCUwI4IJbG9jYWxob3N0hwR/AAABhxAAAAAA
AAAAAAAAAAAAAAABMAoGCCqGSM49BAMCA0cAMEQCIB8ewQ67SbT04tnXo/qe9ybk
TMYfHuQRfH9Kl7BFWoedAiB/mFf3G2ajWeR8MrKz68YbRX9qsJ4bqGHXxdwlwzUE
Ag==
-----END CERTIFICATE-----
`;

interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * A local receiver (HTTP or HTTPS, on 127.0.0.1) that records every request
 * with its raw body bytes and counts every connection; it answers with
 * keep-alive, as a real provider does, and a JSON body an http processor can
 * read as an approval.
 */
class Receiver {
  readonly seen: Seen[] = [];
  connections = 0;
  readonly #sockets = new Set<Socket>();
  private constructor(
    readonly server: http.Server | https.Server,
    readonly scheme: 'http' | 'https',
  ) {}

  static async start(scheme: 'http' | 'https'): Promise<Receiver> {
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        rx.seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive' });
        res.end(JSON.stringify({ status: 'succeeded', authorization_code: 'AUTH-1' }));
      });
    };
    const server = scheme === 'https' ? https.createServer({ key: TEST_TLS_KEY, cert: TEST_TLS_CERT }, onRequest) : http.createServer(onRequest);
    const rx = new Receiver(server, scheme);
    server.on(scheme === 'https' ? 'secureConnection' : 'connection', (s: Socket) => {
      rx.connections++;
      rx.#sockets.add(s);
      s.on('close', () => rx.#sockets.delete(s));
    });
    server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return rx;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** By name (`localhost`), so a live call goes through name resolution and may find a pooled connection under the same name. */
  url(path = ''): string {
    return `${this.scheme}://localhost:${this.port}${path}`;
  }

  /** Forgets what was seen and drops kept-alive sockets; waits until the client's pools have seen them close. */
  async clear(): Promise<void> {
    this.seen.length = 0;
    this.connections = 0;
    for (const s of this.#sockets) s.destroy();
    for (let i = 0; i < 400 && pooledConnections(this.port) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(pooledConnections(this.port), 0, 'the pools still hold connections');
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** What a WSGI server does with a request: Content-Length present, exact, and no chunked framing. */
function assertExactLength(s: Seen, what: string): void {
  assert.equal(s.headers['transfer-encoding'], undefined, `${what}: sent with Transfer-Encoding: ${s.headers['transfer-encoding']}`);
  assert.equal(s.headers['content-length'], String(s.body.length), `${what}: Content-Length ${s.headers['content-length']} for a ${s.body.length}-byte body`);
}

const anyText = (s: Seen) => `${JSON.stringify(s.headers)}${s.path}${s.body.toString('utf8')}`;

// The receiver's certificate is self-signed: the test-mode calls here accept it (this process only). The live
// calls must be refused before TLS even matters: by address, never by certificate.
let tlsBefore: string | undefined;
before(() => {
  tlsBefore = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
});
after(() => {
  if (tlsBefore === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
  else process.env.NODE_TLS_REJECT_UNAUTHORIZED = tlsBefore;
});

// ---------------------------------------------------------------------------
// Point 5: a pooled connection never skips the address check
// ---------------------------------------------------------------------------

describe('outbound(): a kept-alive connection from a test-mode call is never reused by a live call', () => {
  let rx: Receiver;
  before(async () => {
    rx = await Receiver.start('https');
  });
  after(() => rx.close());
  beforeEach(() => rx.clear());

  const call = (path: string, allowPrivate: boolean, body: string) =>
    outbound({ method: 'POST', url: rx.url(path), headers: { 'content-type': 'application/json' }, body, timeoutMs: 3000, allowPrivate });

  it('test mode reaches https://localhost; the live call right after (same host and port) is refused and sends nothing', async () => {
    const t = await call('/test', true, '{"number":"4000000000001018"}');
    assert.equal(t.status, 200);
    assert.equal(rx.seen.length, 1);
    assert.equal(rx.connections, 1);

    await assert.rejects(call('/live', false, `{"number":"${LIVE_CARD}","cvc":"987"}`), (e: unknown) => {
      assert.ok(e instanceof OutboundError, String(e));
      assert.equal(e.kind, 'refused', e.message);
      assert.ok(!e.message.includes(LIVE_CARD) && !e.message.includes('987'));
      return true;
    });
    // A marker on the test pool's kept-alive connection: whatever the live call could have sent on it arrives first.
    assert.equal((await call('/marker', true, '{}')).status, 200);
    assert.deepEqual(
      rx.seen.map((s) => s.path),
      ['/test', '/marker'],
      'the live call reached the loopback receiver',
    );
    assert.ok(!rx.seen.some((s) => anyText(s).includes(LIVE_CARD)), 'the live card number reached a loopback address');
    assert.equal(rx.connections, 1, 'the live call opened a connection to a loopback address');
  });

  it('several test calls, then several live calls: none of the live ones gets through', async () => {
    await Promise.all([call('/t1', true, '{}'), call('/t2', true, '{}'), call('/t3', true, '{}')]);
    for (let i = 0; i < 3; i++) {
      await assert.rejects(call(`/live${i}`, false, `{"number":"${LIVE_CARD}"}`), (e: unknown) => e instanceof OutboundError && e.kind === 'refused');
    }
    assert.deepEqual(rx.seen.map((s) => s.path).sort(), ['/t1', '/t2', '/t3']);
  });

  it('control: test-mode calls still reuse their own kept-alive connection', async () => {
    await call('/a', true, '{}');
    await call('/b', true, '{}');
    assert.equal(rx.seen.length, 2);
    assert.equal(rx.connections, 1, 'test-mode calls no longer keep their connection alive');
  });
});

describe('http processor through the API: a live charge after a test-mode one never reaches a loopback provider', () => {
  let h: Harness;
  let m: TestMerchant;
  let rx: Receiver;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    rx = await Receiver.start('https');
    const processor = {
      type: 'http',
      request: {
        method: 'POST',
        url: rx.url('/v1/payments'),
        headers: { 'Content-Type': 'application/json' },
        body: '{"number":"${cardNumber}","cvc":"${cvv}","name":"${holderName}"}',
      },
      response: { approved: { path: 'status', equals: 'succeeded' }, authorizationCode: 'authorization_code' },
      timeoutMs: 3000,
    };
    const r = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [rx.url('/')], processor });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // The live key cannot save a loopback target (refused when saved); one that got there anyway (a name that
    // resolved elsewhere when saved) is what the connection pools must keep from being reused live.
    const live = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.liveKey))
      .send({ allowedProxyTargets: [rx.url('/')], processor });
    assert.equal(live.status, 403, JSON.stringify(live.body));
    await forceSettings(h, m.id, 'live', { allowedProxyTargets: [rx.url('/')], processor });
  });
  after(async () => {
    await rx.close();
    await h.close();
  });

  it('test charge approved over https://localhost; the live charge is an error result and nothing reaches the provider', async () => {
    const ts = await makeSession(h, m.testKey);
    const tc = await collect(h, ts.token);
    const tr = await request(h.app).post('/CvvOperations/charge').set(auth(tc.body.token)).send({});
    assert.equal(tr.body.result?.status, 'approved', JSON.stringify(tr.body));
    assert.equal(rx.seen.length, 1);

    const card = await makeCard(h, m.liveKey, { number: LIVE_CARD });
    const s = await makeSession(h, m.liveKey, { card });
    const c = await collect(h, s.token, '987');
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const r = await request(h.app).post('/CvvOperations/charge').set(auth(c.body.token)).send({});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.result.status, 'error', JSON.stringify(r.body));
    assert.equal(rx.seen.length, 1, 'the live charge reached the loopback provider');
    assert.ok(!rx.seen.some((x) => anyText(x).includes(LIVE_CARD)), 'the live card number reached a loopback address');
    assert.ok(!h.logs.join('').includes(LIVE_CARD));
  });
});

describe('webhooks: a live endpoint on a private address is refused when it is created', () => {
  let h: Harness;
  let m: TestMerchant;
  let rx: Receiver;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    rx = await Receiver.start('https');
  });
  after(async () => {
    await rx.close();
    await h.close();
  });
  beforeEach(() => rx.clear());

  const create = (key: string, url: string) =>
    request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(key))
      .send({ url, events: ['cvv.collected'] });

  it('live key: https://localhost, https://127.0.0.1, https://[::1], 10.x, a 6to4 or NAT64 form of loopback are 400 invalid_request', async () => {
    for (const url of [
      rx.url('/live'),
      `https://127.0.0.1:${rx.port}/live`,
      `https://[::1]:${rx.port}/live`,
      'https://10.1.2.3/live',
      'https://169.254.169.254/latest',
      'https://[2002:7f00:1::1]/live',
      'https://[64:ff9b::7f00:1]/live',
      'https://[::ffff:127.0.0.1]/live',
    ]) {
      const r = await create(m.liveKey, url);
      assert.equal(r.status, 400, `${url}: ${r.status} ${r.text}`);
      assert.equal(r.body.error.code, 'invalid_request');
      assert.match(r.body.error.message, /private/i, r.body.error.message);
    }
    const list = await request(h.app).get('/WebhookEndpoints').set(auth(m.liveKey));
    assert.deepEqual(list.body.data, [], 'a refused endpoint was stored');
  });

  it('control: the test key (CVVOPS_ALLOW_PRIVATE_TARGETS=on) still adds loopback endpoints; the live key a public https one', async () => {
    assert.equal((await create(m.testKey, rx.url('/test'))).status, 201);
    assert.equal((await create(m.testKey, `http://127.0.0.1:${rx.port}/plain`)).status, 201);
    // Does not resolve: nothing private about it (delivery checks again when it connects).
    assert.equal((await create(m.liveKey, 'https://hooks.shop.example.invalid/cvvops')).status, 201);
    assert.equal((await create(m.liveKey, 'https://[2002:808:808::1]/cvvops')).status, 201, 'a 6to4 address of a public IPv4 is public');
  });

  it('a live endpoint stored before this check (same host as a test one) is never delivered to, even right after a test delivery', async () => {
    const test = await create(m.testKey, rx.url('/test-hook'));
    assert.equal(test.status, 201);
    // Stored directly: what a database written by an older version may hold.
    const id = newId('whe');
    await h.deps.store.webhooks.insertEndpoint({
      id,
      merchantId: m.id,
      mode: 'live',
      url: rx.url('/live-hook'),
      events: ['cvv.collected'],
      secretSealed: h.deps.keyring.seal('signing-key', 'whsec_old', `webhook|${m.id}|${id}`),
      createdAt: h.clock.now(),
    });
    h.deps.webhooks.forget(m.id, 'live');
    await h.deps.webhooks.emit(m.id, 'test', 'cvv.collected', { session: 'cvs_t' });
    await h.deps.webhooks.tick();
    assert.equal(rx.seen.filter((s) => s.path === '/test-hook').length, 1, 'control: the test-mode delivery');
    await h.deps.webhooks.emit(m.id, 'live', 'cvv.collected', { session: 'cvs_l' });
    await h.deps.webhooks.tick();
    assert.equal(rx.seen.filter((s) => s.path === '/live-hook').length, 0, 'a live webhook reached a loopback address over a pooled connection');
  });
});

describe('isPrivateAddress: IPv6 forms that embed an IPv4 address are judged by that IPv4 address', () => {
  const cases: Array<[string, string, boolean]> = [
    // IPv4-compatible ::/96 (deprecated)
    ['::127.0.0.1', 'IPv4-compatible loopback', true],
    ['::7f00:1', 'IPv4-compatible loopback, hex', true],
    ['::a00:1', 'IPv4-compatible 10.0.0.1', true],
    ['0:0:0:0:0:0:c0a8:101', 'IPv4-compatible 192.168.1.1, long form', true],
    ['::8.8.8.8', 'IPv4-compatible public', false],
    // IPv4-mapped ::ffff:0:0/96
    ['::ffff:7f00:1', 'mapped loopback, hex', true],
    ['0:0:0:0:0:FFFF:A9FE:A9FE', 'mapped 169.254.169.254, upper case, long form', true],
    ['::ffff:1.1.1.1', 'mapped public', false],
    // IPv4-translated ::ffff:0:0:0/96
    ['::ffff:0:7f00:1', 'translated loopback', true],
    ['::ffff:0:10.0.0.1', 'translated 10.0.0.1', true],
    ['::ffff:0:808:808', 'translated public', false],
    // 6to4 2002::/16
    ['2002:7f00:1::', '6to4 of 127.0.0.1', true],
    ['2002:a00:1::1', '6to4 of 10.0.0.1', true],
    ['2002:c0a8:101:1::1', '6to4 of 192.168.1.1', true],
    ['2002:a9fe:a9fe::1', '6to4 of 169.254.169.254', true],
    ['2002:808:808::1', '6to4 of 8.8.8.8', false],
    ['2002:102:304::1', '6to4 of 1.2.3.4', false],
    // NAT64 well-known prefix 64:ff9b::/96
    ['64:ff9b::127.0.0.1', 'NAT64 of 127.0.0.1', true],
    ['64:ff9b::a00:1', 'NAT64 of 10.0.0.1', true],
    ['64:ff9b::8.8.8.8', 'NAT64 of 8.8.8.8 (a DNS64 network reaches public IPv4 this way)', false],
    // NAT64 local-use 64:ff9b:1::/48: where the IPv4 sits depends on the operator's prefix length, so all of it
    ['64:ff9b:1::a00:1', 'local-use NAT64', true],
    ['64:ff9b:1:ffff::808:808', 'local-use NAT64, any IPv4', true],
    // Teredo 2001::/32: server IPv4 in bits 32-63, client IPv4 inverted in the last 32 bits
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'Teredo, client 127.0.0.1', true],
    ['2001:0:4136:e378:8000:63bf:f5ff:fffe', 'Teredo, client 10.0.0.1', true],
    ['2001:0:a00:1:8000:63bf:f7f7:f7f7', 'Teredo, server 10.0.0.1', true],
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', 'Teredo, public server and client', false],
    // Native IPv6, unchanged
    ['::', 'unspecified', true],
    ['::1', 'loopback', true],
    ['fe80::1%eth0', 'link-local with a zone', true],
    ['fd00::1', 'unique-local', true],
    ['2001:4860:4860::8888', 'public', false],
    ['2606:4700:4700::1111', 'public', false],
    // IPv4, unchanged (and not caught by an IPv6 rule in mapped form)
    ['127.0.0.1', 'IPv4 loopback', true],
    ['10.9.8.7', 'IPv4 private', true],
    ['8.8.8.8', 'IPv4 public', false],
    ['0.0.0.1', 'IPv4 this-network', true],
    ['32.1.0.0', 'IPv4 that looks like 2001:: (Teredo) in mapped form', false],
    ['32.2.0.0', 'IPv4 that looks like 2002:: (6to4)', false],
  ];
  for (const [ip, what, expected] of cases) {
    it(`${ip} (${what}) is ${expected ? 'private' : 'public'}`, () => assert.equal(isPrivateAddress(ip), expected));
  }

  it('with allowPrivate false, outbound() refuses literal URLs of these forms before connecting', async () => {
    for (const host of [
      '[::7f00:1]',
      '[2002:7f00:1::1]',
      '[64:ff9b::7f00:1]',
      '[::ffff:0:7f00:1]',
      '[2001:0:4136:e378:8000:63bf:80ff:fffe]',
      '[64:ff9b:1::1]',
    ]) {
      await assert.rejects(
        outbound({ method: 'GET', url: `https://${host}:1/x`, headers: {}, timeoutMs: 500, allowPrivate: false }),
        (e: unknown) => e instanceof OutboundError && e.kind === 'refused',
        host,
      );
    }
  });
});

// ---------------------------------------------------------------------------
// Point 6: outbound bodies carry their exact Content-Length
// ---------------------------------------------------------------------------

describe('outbound bodies: exact Content-Length, never chunked', () => {
  let h: Harness;
  let m: TestMerchant;
  let rx: Receiver;
  before(async () => {
    h = await makeHarness({ env: { CVVOPS_ALLOW_PRIVATE_TARGETS: 'on' } });
    m = await makeMerchant(h);
    rx = await Receiver.start('http');
  });
  after(async () => {
    await rx.close();
    await h.close();
  });
  beforeEach(() => rx.clear());

  it('outbound(): a multi-byte UTF-8 string body, a Buffer body and an empty POST', async () => {
    const base = { method: 'POST', headers: { 'content-type': 'application/json' }, timeoutMs: 3000, allowPrivate: true };
    await outbound({ ...base, url: rx.url('/string'), body: JSON.stringify({ name: WIDE }) });
    await outbound({ ...base, url: rx.url('/buffer'), body: Buffer.from(WIDE, 'utf8') });
    await outbound({ ...base, url: rx.url('/empty') });
    assert.deepEqual(
      rx.seen.map((s) => s.path),
      ['/string', '/buffer', '/empty'],
    );
    for (const s of rx.seen) assertExactLength(s, s.path);
    assert.equal(rx.seen[0]!.body.toString('utf8'), JSON.stringify({ name: WIDE }));
    assert.equal(rx.seen[1]!.body.toString('utf8'), WIDE);
    assert.equal(rx.seen[2]!.headers['content-length'], '0');
  });

  it("outbound(): a caller's Content-Length or Transfer-Encoding header (any case) cannot override the real length", async () => {
    const body = `{"name":"${WIDE}"}`;
    const wrong: Array<Record<string, string>> = [
      { 'Content-Length': '3' },
      { 'content-length': '100000' },
      { 'Transfer-Encoding': 'chunked' },
      { 'CONTENT-LENGTH': String(body.length), 'transfer-encoding': 'chunked' },
    ];
    for (const headers of wrong) {
      await outbound({
        method: 'POST',
        url: rx.url('/override'),
        headers: { 'content-type': 'application/json', ...headers },
        body,
        timeoutMs: 3000,
        allowPrivate: true,
      });
    }
    assert.equal(rx.seen.length, 4);
    for (const s of rx.seen) {
      assertExactLength(s, JSON.stringify(s.headers));
      assert.equal(s.body.toString('utf8'), body);
    }
  });

  it('webhooks: the signed body goes with its exact Content-Length, multi-byte characters included', async () => {
    const r = await request(h.app)
      .post('/WebhookEndpoints')
      .set(auth(m.testKey))
      .send({ url: rx.url('/hook'), events: ['cvv.collected', 'charge.succeeded'] });
    assert.equal(r.status, 201, r.text);
    await h.deps.webhooks.emit(m.id, 'test', 'charge.succeeded', { note: WIDE });
    const s = await makeSession(h, m.testKey);
    await collect(h, s.token).expect(200);
    await h.deps.webhooks.tick();
    assert.equal(rx.seen.length, 2);
    for (const d of rx.seen) assertExactLength(d, `webhook ${JSON.parse(d.body.toString('utf8')).type}`);
    assert.ok(rx.seen.some((d) => d.body.toString('utf8').includes(WIDE)));
  });

  it("POST /proxy: the filled body goes with its exact Content-Length; the merchant's Content-Length and Transfer-Encoding are not forwarded", async () => {
    const p = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [rx.url('/')] });
    assert.equal(p.status, 200, p.text);
    const card = await makeCard(h, m.testKey, { holderName: WIDE });
    const res = await request(h.app)
      .post('/proxy')
      .set({ ...auth(m.testKey), 'X-Proxy-Target': rx.url('/forward'), 'X-Card-Token': card, 'Content-Type': 'application/json' })
      .send(`{"name":"\${holderName}","note":"${WIDE}"}`);
    assert.equal(res.status, 200, res.text);
    assert.equal(rx.seen.length, 1);
    assertExactLength(rx.seen[0]!, 'proxy');
    assert.equal(JSON.parse(rx.seen[0]!.body.toString('utf8')).name, WIDE);
  });

  it('http processor: the charge body goes with its exact Content-Length, even when the template sets a wrong one', async () => {
    const processor = {
      type: 'http',
      request: {
        method: 'POST',
        url: rx.url('/v1/payments'),
        headers: { 'Content-Type': 'application/json', 'Content-Length': '7', 'Transfer-Encoding': 'chunked' },
        body: '{"number":"${cardNumber}","cvc":"${cvv}","name":"${holderName}"}',
      },
      response: { approved: { path: 'status', equals: 'succeeded' } },
      timeoutMs: 3000,
    };
    h.clock.advance(1);
    const p = await request(h.app)
      .patch('/Merchant')
      .set(auth(m.testKey))
      .send({ allowedProxyTargets: [rx.url('/')], processor });
    assert.equal(p.status, 200, p.text);
    const card = await makeCard(h, m.testKey, { holderName: WIDE });
    const s = await makeSession(h, m.testKey, { card });
    const c = await collect(h, s.token);
    const r = await request(h.app).post('/CvvOperations/charge').set(auth(c.body.token)).send({});
    assert.equal(r.body.result?.status, 'approved', JSON.stringify(r.body));
    const sent = rx.seen.filter((x) => x.path === '/v1/payments');
    assert.equal(sent.length, 1);
    assertExactLength(sent[0]!, 'http processor');
    assert.equal(JSON.parse(sent[0]!.body.toString('utf8')).name, WIDE);
  });
});
