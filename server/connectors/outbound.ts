import { lookup as dnsLookup, promises as dnsPromises, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction, type Socket } from 'node:net';

/**
 * Addresses an outbound call may never reach in live mode: private, loopback, link-local, unique-local, CGNAT,
 * multicast, unspecified. IPv4 and IPv6 rules are kept in two lists on purpose: BlockList checks an IPv4 address
 * against IPv6 rules in mapped form (::ffff:a.b.c.d), so an IPv6 rule covering ::ffff:0:0/96 in a shared list
 * would match every IPv4 address, and an IPv4 address would be judged by rules that were never meant for it.
 */
const PRIVATE_V4 = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE_V4.addSubnet(net, bits, 'ipv4');
}
/**
 * Native IPv6 ranges. The forms that embed an IPv4 address are not here: they are judged by that address
 * (embeddedIPv4 below). The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is here as a whole: where the IPv4
 * address sits in it depends on the prefix length the operator picked (RFC 6052 2.2), and it is never
 * globally reachable anyway.
 */
const PRIVATE_V6 = new BlockList();
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b:1::', 48],
] as const) {
  PRIVATE_V6.addSubnet(net, bits, 'ipv6');
}

/** An IPv6 address (already valid per isIP) as its eight 16-bit groups; a zone (%eth0) is dropped. */
function ipv6Groups(ip: string): number[] | null {
  let s = ip.toLowerCase().replace(/%.*$/, '');
  const cut = s.lastIndexOf(':');
  const tail = s.slice(cut + 1);
  if (tail.includes('.')) {
    if (isIP(tail) !== 4) return null;
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    s = `${s.slice(0, cut + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const part = (p: string) => (p === '' ? [] : p.split(':').map((h) => Number.parseInt(h, 16)));
  const head = part(halves[0]!);
  const rest = halves.length === 2 ? part(halves[1]!) : [];
  const groups = halves.length === 2 ? [...head, ...new Array<number>(Math.max(0, 8 - head.length - rest.length)).fill(0), ...rest] : head;
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

const dotted = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;

/**
 * The IPv4 addresses an IPv6 address stands for, in the forms that embed one (a packet to it ends up at that
 * IPv4 address, through the host's stack or a translator or tunnel on the way): null for any other address.
 */
function embeddedIPv4(g: number[]): string[] | null {
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  // ::a.b.c.d, IPv4-compatible (deprecated, RFC 4291 2.5.5.1); :: and ::1 are in it too (0.0.0.0/8).
  if (zero(0, 6)) return [dotted(g[6]!, g[7]!)];
  // ::ffff:a.b.c.d, IPv4-mapped (RFC 4291 2.5.5.2).
  if (zero(0, 5) && g[5] === 0xffff) return [dotted(g[6]!, g[7]!)];
  // ::ffff:0:a.b.c.d, IPv4-translated (RFC 2765 2.1).
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return [dotted(g[6]!, g[7]!)];
  // 64:ff9b::a.b.c.d, the NAT64 well-known prefix (RFC 6052 2.1): public IPv4 addresses are reached this way
  // from an IPv6-only network with DNS64, so it is judged by the embedded address rather than refused whole.
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return [dotted(g[6]!, g[7]!)];
  // 2002:AABB:CCDD::/48, 6to4 (RFC 3056): the relay delivers to AA.BB.CC.DD.
  if (g[0] === 0x2002) return [dotted(g[1]!, g[2]!)];
  // 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, Teredo (RFC 4380 4): the server's IPv4 address, and the client's
  // with every bit inverted. Either one being private is enough.
  if (g[0] === 0x2001 && g[1] === 0) return [dotted(g[2]!, g[3]!), dotted(g[6]! ^ 0xffff, g[7]! ^ 0xffff)];
  return null;
}

/** Whether an address (IPv4, or IPv6 with or without a zone) is one a live outbound call may not reach; anything unparsable is. */
export function isPrivateAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return PRIVATE_V4.check(ip, 'ipv4');
  if (family !== 6) return true;
  const groups = ipv6Groups(ip);
  if (!groups) return true;
  const v4 = embeddedIPv4(groups);
  if (v4?.some((a) => PRIVATE_V4.check(a, 'ipv4'))) return true;
  return PRIVATE_V6.check(ip.replace(/%.*$/, ''), 'ipv6');
}

export class OutboundError extends Error {
  constructor(
    message: string,
    readonly kind: 'refused' | 'transport' | 'timeout',
  ) {
    super(message);
    this.name = 'OutboundError';
  }
}

export interface OutboundRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  timeoutMs: number;
  /** Lets loopback/private addresses and plain http (local fake providers in tests; never in production). */
  allowPrivate: boolean;
  maxResponseBytes?: number;
}

export interface OutboundResponse {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

/**
 * Kept-alive connection pools, one per policy, never Node's global agent.
 * The address check runs when a connection is made (the lookup hook below);
 * a pooled connection is reused without a lookup, so a pool shared between
 * policies would let a live call ride a connection a test-mode call opened to
 * a loopback address (with CVVOPS_ALLOW_PRIVATE_TARGETS=on): the pool key is
 * only host, port and TLS options. With one pool per policy every connection
 * in the guarded pool was opened by a guarded call, to an address that passed
 * the check, and a socket's peer never changes. A fresh connection per call
 * (agent: false) would be as safe but costs a TCP and TLS handshake on every
 * charge; the per-request peer check in outbound() is a second, independent
 * guard over the same boundary. The free-socket timeout is below the 5 s
 * keep-alive of common servers (Node's own default), so a connection the
 * other side is about to close is not picked up.
 */
const POOL = { keepAlive: true, scheduling: 'lifo', timeout: 4000 } as const;
const AGENTS = {
  guarded: { http: new http.Agent(POOL), https: new https.Agent(POOL) },
  privateOk: { http: new http.Agent(POOL), https: new https.Agent(POOL) },
} as const;

/** Connections open in the pools to a port, idle or busy (tests wait on it). */
export function pooledConnections(port: number): number {
  let n = 0;
  for (const pool of Object.values(AGENTS))
    for (const agent of Object.values(pool))
      for (const [name, list] of [...Object.entries(agent.freeSockets), ...Object.entries(agent.sockets)])
        if (name.includes(`:${port}:`)) n += list?.length ?? 0;
  return n;
}

/** Framing is ours: a caller's (a merchant template's) value could only be wrong or smuggle a second request. */
const FRAMING = new Set(['content-length', 'transfer-encoding']);
const BODILESS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);

/**
 * One outbound HTTP call, safely: https only (http only where private targets
 * are allowed), the address resolved first, checked, then connected to (a
 * lookup hook, so there is no second resolution to race), the connected peer
 * checked again on every request (a reused connection included), no redirects
 * followed, a hard timeout, a cap on the response size. The body is sent with
 * its exact Content-Length, never chunked: a receiver that reads
 * CONTENT_LENGTH (WSGI) would otherwise see an empty body.
 */
export function outbound(req: OutboundRequest, signal?: AbortSignal): Promise<OutboundResponse> {
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return Promise.reject(new OutboundError('not a URL', 'refused'));
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && req.allowPrivate)) {
    return Promise.reject(new OutboundError('only https targets are allowed', 'refused'));
  }
  if (url.username || url.password) return Promise.reject(new OutboundError('credentials in the URL are refused', 'refused'));
  const guardedLookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 4);
      const list = addresses;
      const bad = list.find((a) => isPrivateAddress(a.address));
      if (bad && !req.allowPrivate) return callback(new OutboundError('the target resolves to a private address', 'refused'), '', 4);
      if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
  // A literal IP never goes through lookup: check it here.
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(literal) && isPrivateAddress(literal) && !req.allowPrivate) {
    return Promise.reject(new OutboundError('the target is a private address', 'refused'));
  }
  const secure = url.protocol === 'https:';
  const lib = secure ? https : http;
  const pool = req.allowPrivate ? AGENTS.privateOk : AGENTS.guarded;
  const agent = secure ? pool.https : pool.http;
  const body = req.body === undefined ? undefined : typeof req.body === 'string' ? Buffer.from(req.body, 'utf8') : req.body;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (!FRAMING.has(k.toLowerCase())) headers[k] = v;
  if (body !== undefined || !BODILESS.has(req.method.toUpperCase())) headers['content-length'] = String(body?.length ?? 0);
  const max = req.maxResponseBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const r = lib.request(url, { method: req.method, headers, agent, lookup: guardedLookup, timeout: req.timeoutMs, signal }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) {
          r.destroy(new OutboundError('the response is too large', 'transport'));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string | string[]>, body: Buffer.concat(chunks) }));
      res.on('error', (e) => reject(e instanceof OutboundError ? e : new OutboundError(e.message, 'transport')));
    });
    const timer = setTimeout(() => r.destroy(new OutboundError('timed out', 'timeout')), req.timeoutMs);
    r.on('close', () => clearTimeout(timer));
    r.on('timeout', () => r.destroy(new OutboundError('timed out', 'timeout')));
    r.on('error', (e) =>
      reject(e instanceof OutboundError ? e : new OutboundError(signal?.aborted ? 'aborted' : e.message, signal?.aborted ? 'timeout' : 'transport')),
    );
    if (!req.allowPrivate) {
      // Whatever the pools hold, the peer of the socket this request got is checked before a byte of the
      // request is written to it: 'socket' is emitted before the request is flushed, a reused socket is
      // connected already; a new one is checked on 'connect', whose listener is added here before the
      // request's first (queued) write adds its own, and before the TLS handshake the data waits for.
      r.on('socket', (socket: Socket) => {
        const check = () => {
          const peer = socket.remoteAddress;
          // No peer: the socket closed under us (a kept-alive one the server dropped). Not sent, not refused.
          if (peer === undefined) r.destroy(new OutboundError('the connection closed', 'transport'));
          else if (isPrivateAddress(peer)) r.destroy(new OutboundError('the target is a private address', 'refused'));
        };
        if (socket.connecting) socket.once('connect', check);
        else check();
      });
    }
    r.end(body);
  });
}

/**
 * Checks a target before anything irreversible happens (a single-use CVV is
 * taken only after this): refused when it is, or resolves to, a private
 * address and those are not allowed. outbound() checks again at connect time.
 */
export async function assertReachableTarget(url: URL, allowPrivate: boolean): Promise<void> {
  if (allowPrivate) return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [host] : (await dnsPromises.lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
  if (addresses.some(isPrivateAddress)) throw new OutboundError('the target is or resolves to a private address', 'refused');
}
