import { createHmac, timingSafeEqual } from 'node:crypto';
import { CvvOpsError } from './errors.js';
import type { WebhookEvent } from './types.js';

export interface ConstructEventOptions {
  /** How far the signature's `t` may be from now, in seconds (default 300). */
  toleranceSeconds?: number;
  /** The time the delivery was received, in unix seconds (default now). */
  receivedAt?: number;
}

const HEX64 = /^[0-9a-f]{64}$/;

function invalid(message: string): CvvOpsError {
  return new CvvOpsError({ code: 'invalid_signature', message });
}

function toBuffer(raw: string | Uint8Array): Buffer {
  return typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
}

/**
 * `Cvvops-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (API.md section 8).
 */
export class Webhooks {
  /**
   * Checks a delivery's signature against the endpoint's secret, in constant time, and its
   * timestamp against `toleranceSeconds`, then returns the parsed event. `rawBody` must be the
   * body exactly as received (a string or the Buffer of bytes: `express.raw()`, not
   * `express.json()`). Throws a `CvvOpsError` with code `invalid_signature` otherwise.
   */
  constructEvent(
    rawBody: string | Uint8Array,
    signatureHeader: string | string[] | undefined | null,
    secret: string,
    opts: ConstructEventOptions = {},
  ): WebhookEvent {
    if (typeof rawBody !== 'string' && !(rawBody instanceof Uint8Array)) {
      throw invalid('constructEvent needs the raw request body (a string or a Buffer), not parsed JSON: the signature covers the exact bytes.');
    }
    if (typeof secret !== 'string' || secret === '') throw invalid('No webhook secret given.');
    const header = Array.isArray(signatureHeader) ? signatureHeader.join(',') : signatureHeader;
    if (typeof header !== 'string' || header === '') throw invalid('No Cvvops-Signature header.');
    let t: string | undefined;
    const v1: string[] = [];
    for (const part of header.split(',')) {
      const eq = part.indexOf('=');
      if (eq < 0) continue;
      const k = part.slice(0, eq).trim();
      const v = part.slice(eq + 1).trim();
      if (k === 't') t = v;
      else if (k === 'v1') v1.push(v.toLowerCase());
    }
    if (t === undefined || !/^\d{1,12}$/.test(t)) throw invalid('The Cvvops-Signature header has no valid timestamp.');
    if (v1.length === 0) throw invalid('The Cvvops-Signature header has no v1 signature.');
    const body = toBuffer(rawBody);
    const expected = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
    let match = false;
    for (const sig of v1) {
      // Every candidate is compared, in constant time; a malformed one simply does not match.
      if (HEX64.test(sig) && timingSafeEqual(expected, Buffer.from(sig, 'hex'))) match = true;
    }
    if (!match) throw invalid('No signature in the Cvvops-Signature header matches the body and the secret.');
    const tolerance = opts.toleranceSeconds ?? 300;
    const now = opts.receivedAt ?? Math.floor(Date.now() / 1000);
    if (tolerance > 0 && Math.abs(now - Number(t)) > tolerance) {
      throw invalid(`The signature's timestamp is more than ${tolerance} s from now (a replayed or delayed delivery?).`);
    }
    let event: unknown;
    try {
      event = JSON.parse(body.toString('utf8'));
    } catch {
      throw invalid('The signed body is not JSON.');
    }
    if (!event || typeof event !== 'object' || typeof (event as WebhookEvent).type !== 'string') throw invalid('The signed body is not an event.');
    return event as WebhookEvent;
  }

  /** A valid `Cvvops-Signature` value for a payload: for your own tests of a webhook handler. */
  generateTestHeader(opts: { payload: string | Uint8Array; secret: string; timestamp?: number }): string {
    const t = opts.timestamp ?? Math.floor(Date.now() / 1000);
    const v1 = createHmac('sha256', opts.secret).update(`${t}.`).update(toBuffer(opts.payload)).digest('hex');
    return `t=${t},v1=${v1}`;
  }
}
