import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { HttpError, JsonClient } from './http.js';
import { Samples, type Latency } from './stats.js';

export const STEPS = ['create', 'collectCvv', 'threeDS', 'charge', 'validateToken'] as const;
export type Step = (typeof STEPS)[number];

export const AMOUNT = { value: 1999, currency: 'EUR' };

/** The body of `POST /CvvOperations` used everywhere (create scenario and flows). */
export function createBody(card: string): Record<string, unknown> {
  return { card, operations: ['collectCvv', 'threeDS', 'charge'], amount: AMOUNT, require3DS: true, reference: 'bench-order' };
}

/** What the hosted form sends to threeDS (public/src/form-runtime.ts browserInfo()). */
export const THREEDS_BODY = JSON.stringify({
  browser: {
    acceptHeader: 'text/html',
    language: 'en-GB',
    screenWidth: 1280,
    screenHeight: 800,
    timeZoneOffset: -60,
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
    colorDepth: 24,
    javascriptEnabled: true,
  },
});

export interface FlowRun {
  shoppers: number;
  seconds: number;
  flows: number;
  flowsPerSecond: number;
  requests: number;
  /** Flows that stopped at a non-2xx answer or a connection error. */
  failedFlows: number;
  non2xx: number;
  connectionErrors: number;
  /** 2xx answers whose outcome was not the expected one (3DS neither Y nor A, charge not approved, token not valid). */
  unexpected: number;
  errorSamples: string[];
  flow: Latency;
  steps: Record<Step, Latency>;
}

/**
 * Full shopper flows: create (API key), collectCvv, threeDS, charge (session
 * token, chained), validateToken (API key) — `shoppers` loops at once for
 * `seconds`. A flow counts when it ends inside the window; a step's latency
 * counts when it ends inside the window.
 */
export async function runFlows(client: JsonClient, o: { apiKey: string; cards: string[]; shoppers: number; seconds: number }): Promise<FlowRun> {
  const flowLat = new Samples();
  const stepLat = Object.fromEntries(STEPS.map((s) => [s, new Samples()])) as Record<Step, Samples>;
  const merchant = { authorization: `Bearer ${o.apiKey}` };
  let flows = 0;
  let requests = 0;
  let failedFlows = 0;
  let non2xx = 0;
  let connectionErrors = 0;
  let unexpected = 0;
  const errorSamples: string[] = [];
  const t0 = performance.now();
  const end = t0 + o.seconds * 1000;
  const note = (s: string) => {
    if (errorSamples.length < 8) errorSamples.push(s);
  };

  const step = async (name: Step, path: string, body: unknown, headers: Record<string, string>, expect: number) => {
    const reply = await client.request('POST', path, body, headers);
    if (reply.end <= end) {
      requests++;
      stepLat[name].push(reply.ms);
    }
    if (reply.status !== expect) throw new HttpError(name, reply.status, reply.body);
    return JSON.parse(reply.body);
  };

  const shopper = async (i: number) => {
    const createJson = JSON.stringify(createBody(o.cards[i % o.cards.length]!));
    while (performance.now() < end) {
      const f0 = performance.now();
      try {
        const created = await step('create', '/CvvOperations', createJson, merchant, 201);
        let token: string = created.token;
        const c = await step('collectCvv', '/CvvOperations/collectCvv', '{"cvv":"123"}', { authorization: `Bearer ${token}` }, 200);
        token = c.token;
        const t = await step('threeDS', '/CvvOperations/threeDS', THREEDS_BODY, { authorization: `Bearer ${token}` }, 200);
        token = t.token;
        // Y or A: the bench's cards authenticate frictionlessly (4000000000004046 is A, attempted), and both let a require3DS charge through.
        if (t.result?.status !== 'Y' && t.result?.status !== 'A') {
          unexpected++;
          note(`threeDS status ${t.result?.status}`);
        }
        const ch = await step('charge', '/CvvOperations/charge', '{}', { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID() }, 200);
        token = ch.token;
        if (ch.result?.status !== 'approved') {
          unexpected++;
          note(`charge status ${ch.result?.status} ${ch.result?.declineCode ?? ''}`);
        }
        const v = await step('validateToken', '/CvvOperations/validateToken', JSON.stringify({ token }), merchant, 200);
        if (v.valid !== true || v.current !== true || v.session?.status !== 'completed') {
          unexpected++;
          note(`validateToken ${JSON.stringify(v).slice(0, 200)}`);
        }
        const f1 = performance.now();
        if (f1 <= end) {
          flows++;
          flowLat.push(f1 - f0);
        }
      } catch (e) {
        failedFlows++;
        if (e instanceof HttpError) {
          non2xx++;
          note(`${e.step}: ${e.status} ${e.body.slice(0, 200)}`);
        } else {
          connectionErrors++;
          note(String(e instanceof Error ? e.message : e));
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: o.shoppers }, (_, i) => shopper(i)));
  const seconds = o.seconds;
  return {
    shoppers: o.shoppers,
    seconds,
    flows,
    flowsPerSecond: flows / seconds,
    requests,
    failedFlows,
    non2xx,
    connectionErrors,
    unexpected,
    errorSamples,
    flow: flowLat.summary(),
    steps: Object.fromEntries(STEPS.map((s) => [s, stepLat[s].summary()])) as Record<Step, Latency>,
  };
}
