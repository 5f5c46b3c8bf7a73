import { lookup as dnsLookup, promises as dnsPromises, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Addresses an outbound call may never reach in live mode: private, loopback, link-local, unique-local, CGNAT, multicast, unspecified. */
const PRIVATE = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv4');
}
// IPv4-mapped IPv6 (::ffff:a.b.c.d) is unwrapped and checked as IPv4 below: a ::ffff:0:0/96 rule here would
// also match every IPv4 address, since BlockList checks IPv4 against IPv6 rules in mapped form.
for (const [net, bits] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96]] as const) {
  PRIVATE.addSubnet(net, bits, 'ipv6');
}

export function isPrivateAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return true;
  if (family === 6 && ip.toLowerCase().startsWith('::ffff:')) {
    const v4 = ip.slice(7);
    if (isIP(v4) === 4) return PRIVATE.check(v4, 'ipv4');
  }
  return PRIVATE.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

export class OutboundError extends Error {
  constructor(message: string, readonly kind: 'refused' | 'transport' | 'timeout') {
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
 * One outbound HTTP call, safely: https only (http only where private targets
 * are allowed), the address resolved first, checked, then connected to (a
 * lookup hook, so there is no second resolution to race), no redirects
 * followed, a hard timeout, a cap on the response size.
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
      const list = addresses as unknown as LookupAddress[];
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
  const lib = url.protocol === 'https:' ? https : http;
  const max = req.maxResponseBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const r = lib.request(url, { method: req.method, headers: req.headers, lookup: guardedLookup, timeout: req.timeoutMs, signal }, (res) => {
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
    r.on('error', (e) => reject(e instanceof OutboundError ? e : new OutboundError(signal?.aborted ? 'aborted' : e.message, signal?.aborted ? 'timeout' : 'transport')));
    if (req.body !== undefined) r.write(req.body);
    r.end();
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
