import { z } from 'zod';
import type { Secret } from '../../secret.js';
import { outbound, OutboundError, type OutboundResponse } from '../outbound.js';
import { type ChargeRequest, type ChargeResult, type Processor, ProcessorError } from './processor.js';

/** The placeholders of API.md section 6. */
export const PLACEHOLDERS = [
  'cardNumber',
  'expMonth',
  'expYear',
  'holderName',
  'cvv',
  'amount.value',
  'amount.currency',
  'threeDS.eci',
  'threeDS.authenticationValue',
  'threeDS.dsTransactionId',
  'reference',
  'idempotencyKey',
] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
const PLACEHOLDER = /\$\{([A-Za-z.]+)\}/g;

const HeaderMap = z.record(
  z.string().regex(/^[A-Za-z0-9-]{1,64}$/),
  z
    .string()
    .max(4096)
    .regex(/^[^\r\n]*$/),
);
const RequestTemplate = z.strictObject({
  method: z.enum(['POST', 'PUT', 'GET']).default('POST'),
  url: z.string().url().max(2048),
  headers: HeaderMap.default({}),
  body: z.string().max(32768).optional(),
});
export const HttpProcessorConfig = z
  .strictObject({
    type: z.literal('http'),
    request: RequestTemplate,
    /** Dotted paths into the provider's JSON answer. */
    response: z.strictObject({
      approved: z.strictObject({ path: z.string().max(200), equals: z.union([z.string(), z.number(), z.boolean()]) }),
      authorizationCode: z.string().max(200).optional(),
      declineCode: z.string().max(200).optional(),
      cvvResult: z.string().max(200).optional(),
      avsResult: z.string().max(200).optional(),
      networkTransactionId: z.string().max(200).optional(),
      /** Provider values mapped to M/N/P/U (default: M, N, P, U, match/pass → M, no_match/fail → N). */
      cvvResultMap: z.record(z.string(), z.enum(['M', 'N', 'P', 'U'])).optional(),
    }),
    /** Optional: how to ask the provider for the outcome of a charge by idempotency key (crash recovery). */
    lookup: RequestTemplate.optional(),
    timeoutMs: z.number().int().min(1000).max(60000).default(15000),
  })
  .superRefine((c, ctx) => {
    const parts = (name: 'request' | 'lookup', t: z.infer<typeof RequestTemplate>) => [
      [`${name}.url`, t.url],
      [`${name}.body`, t.body ?? ''],
      ...Object.entries(t.headers).map(([k, v]) => [`${name}.headers.${k}`, v]),
    ];
    for (const [where, text] of [...parts('request', c.request), ...(c.lookup ? parts('lookup', c.lookup) : [])]) {
      for (const m of text!.matchAll(PLACEHOLDER)) {
        if (!(PLACEHOLDERS as readonly string[]).includes(m[1]!))
          ctx.addIssue({ code: 'custom', path: where!.split('.'), message: `unknown placeholder \${${m[1]}}` });
      }
    }
  });
export type HttpProcessorConfig = z.infer<typeof HttpProcessorConfig>;

/** Fills `${…}` in a template; `escape` decides how each value is written (JSON string content, URL component, header). */
export function fill(template: string, values: Partial<Record<Placeholder, string>>, escape: (v: string) => string): string {
  return template.replace(PLACEHOLDER, (whole, name: string) => {
    if (!(PLACEHOLDERS as readonly string[]).includes(name)) return whole;
    return escape(values[name as Placeholder] ?? '');
  });
}

/** JSON-string escaping without the quotes: what `"${x}"` in a JSON template needs. Nothing else is evaluated. */
export const jsonEscape = (v: string): string => JSON.stringify(v).slice(1, -1);

export function placeholderValues(req: ChargeRequest): Partial<Record<Placeholder, string>> {
  return {
    cardNumber: req.card.number.expose(),
    expMonth: String(req.card.expMonth).padStart(2, '0'),
    expYear: String(req.card.expYear).padStart(4, '0'),
    holderName: req.card.holderName?.expose() ?? '',
    cvv: req.cvv?.expose() ?? '',
    'amount.value': String(req.amount.value),
    'amount.currency': req.amount.currency,
    'threeDS.eci': req.threeDS?.eci ?? '',
    'threeDS.authenticationValue': req.threeDS?.authenticationValue?.expose() ?? '',
    'threeDS.dsTransactionId': req.threeDS?.dsTransactionId ?? '',
    reference: req.reference ?? '',
    idempotencyKey: req.idempotencyKey,
  };
}

export interface BuiltRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** Pure: the provider request for a charge (or a lookup). */
export function buildRequest(t: HttpProcessorConfig['request'], values: Partial<Record<Placeholder, string>>): BuiltRequest {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(t.headers)) headers[k] = fill(v, values, (x) => x.replace(/[\r\n]/g, ''));
  return {
    method: t.method,
    url: fill(t.url, values, encodeURIComponent),
    headers,
    ...(t.body !== undefined ? { body: fill(t.body, values, jsonEscape) } : {}),
  };
}

function at(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

const DEFAULT_CVV_MAP: Record<string, ChargeResult['cvvResult']> = {
  M: 'M',
  N: 'N',
  P: 'P',
  U: 'U',
  match: 'M',
  pass: 'M',
  matched: 'M',
  no_match: 'N',
  fail: 'N',
  failed: 'N',
  unavailable: 'U',
  unchecked: 'P',
};

/** Pure: the provider's answer as a ChargeResult. A 5xx or an unreadable body is a ProcessorError; a decline is a value. */
export function parseResponse(map: HttpProcessorConfig['response'], status: number, body: Buffer): ChargeResult {
  if (status >= 500 || status === 0) throw new ProcessorError(`provider answered ${status}`);
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ProcessorError(`provider answered ${status} without JSON`);
  }
  const str = (p?: string) => {
    if (!p) return null;
    const v = at(json, p);
    // A field is a string, a number or a boolean; anything else (an object, an array) is no value, not "[object Object]".
    return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : null;
  };
  const approved = status < 300 && at(json, map.approved.path) === map.approved.equals;
  const rawCvv = str(map.cvvResult);
  const cvvResult = rawCvv === null ? 'U' : ({ ...DEFAULT_CVV_MAP, ...map.cvvResultMap }[rawCvv] ?? 'U');
  return {
    status: approved ? 'approved' : 'declined',
    authorizationCode: approved ? str(map.authorizationCode) : null,
    declineCode: approved ? null : (str(map.declineCode) ?? (cvvResult === 'N' ? 'incorrect_cvc' : 'do_not_honor')),
    cvvResult,
    avsResult: str(map.avsResult) ?? 'U',
    networkTransactionId: str(map.networkTransactionId),
  };
}

/**
 * Pure: a transcript safe to log or store. Every secret value that was
 * substituted is replaced, and so is anything shaped like a card number or a
 * CVV field, and credentials in headers.
 */
export function scrub(transcript: string, secrets: Array<Secret<string> | string | null | undefined>): string {
  let out = transcript;
  for (const s of secrets) {
    const v = typeof s === 'string' ? s : s?.expose();
    if (v && v.length >= 3) out = out.split(v).join('[FILTERED]');
  }
  return out
    .replace(/\b\d{12,19}\b/g, '[FILTERED]')
    .replace(/("(?:cvv|cvc|cvv2|cvc2|csc|security_?code|card_?verification)"\s*:\s*")[^"]*(")/gi, '$1[FILTERED]$2')
    .replace(/((?:authorization|x-api-key|api-key)\s*:\s*)[^\r\n]*/gi, '$1[FILTERED]');
}

/** The merchant's payment service provider, reached through its request template. */
export class HttpProcessor implements Processor {
  readonly name = 'http';
  constructor(
    private readonly config: HttpProcessorConfig,
    private readonly opts: { allowPrivate: boolean; onTranscript?: (scrubbed: string) => void },
  ) {}

  async #send(built: BuiltRequest, signal: AbortSignal, secrets: Array<Secret<string> | null>, mode: 'test' | 'live'): Promise<OutboundResponse> {
    try {
      // Never a private, loopback or link-local address in live mode, whatever CVVOPS_ALLOW_PRIVATE_TARGETS says.
      const res = await outbound({ ...built, timeoutMs: this.config.timeoutMs, allowPrivate: this.opts.allowPrivate && mode === 'test' }, signal);
      this.opts.onTranscript?.(
        scrub(
          `${built.method} ${built.url}\n${Object.entries(built.headers)
            .map(([k, v]) => `${k}: ${v}`)
            .join('\n')}\n\n${built.body ?? ''}\n\n<- ${res.status}\n${res.body.toString('utf8')}`,
          secrets,
        ),
      );
      return res;
    } catch (e) {
      if (e instanceof OutboundError) throw new ProcessorError(`provider unreachable: ${e.message}`, e.kind !== 'refused');
      throw e;
    }
  }

  async charge(req: ChargeRequest, signal: AbortSignal): Promise<ChargeResult> {
    const values = placeholderValues(req);
    const built = buildRequest(this.config.request, values);
    const res = await this.#send(built, signal, [req.card.number, req.cvv, req.threeDS?.authenticationValue ?? null, req.card.holderName], req.mode);
    return parseResponse(this.config.response, res.status, res.body);
  }

  async lookup(idempotencyKey: string, mode: 'test' | 'live', signal: AbortSignal): Promise<ChargeResult | null> {
    if (!this.config.lookup) throw new ProcessorError('no lookup request is configured', false);
    const res = await this.#send(buildRequest(this.config.lookup, { idempotencyKey }), signal, [], mode);
    if (res.status === 404) return null;
    return parseResponse(this.config.response, res.status, res.body);
  }
}
