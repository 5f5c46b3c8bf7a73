import type { ServerResponse } from 'node:http';
import { type Recorded, RecordingServer } from './recording-server.js';

/** The CVV the slow provider accepts (API.md section 11's expected test CVV). */
export const EXPECTED_CVV = '123';

/** What the provider decided for one charge request, by idempotency key. */
export interface SlowOutcome {
  id: string;
  status: 'succeeded' | 'declined';
  decline_code: string | null;
  cvc_check: 'M' | 'N';
  authorization_code: string | null;
}

/** The body template of `slowProviderConfig`: what the provider parses. */
const BODY_TEMPLATE = JSON.stringify({
  card: { number: '${cardNumber}', cvc: '${cvv}', exp_month: '${expMonth}', exp_year: '${expYear}' },
  amount: 0,
  currency: '${amount.currency}',
  reference: '${reference}',
  idempotency_key: '${idempotencyKey}',
}).replace('"amount":0', '"amount":${amount.value}');

/**
 * A fake payment service provider that takes its time: every charge request
 * (`POST /v1/charges`) is decided at once (approved when its CVV is `123`,
 * otherwise declined `incorrect_cvc` with CVV result `N`) and answered only
 * after `delayMs`, so a test can act while a charge is at the processor
 * without sleeping: it polls `charges()` instead. `GET /v1/charges/lookup?key=`
 * answers 404 for an idempotency key it never saw, else the recorded outcome.
 */
export class SlowProvider extends RecordingServer {
  delayMs = 600;
  readonly outcomes = new Map<string, SlowOutcome>();
  #seq = 0;
  readonly #timers = new Set<NodeJS.Timeout>();

  static async start(delayMs = 600): Promise<SlowProvider> {
    const p = await RecordingServer.listen((server) => new SlowProvider(server));
    p.delayMs = delayMs;
    return p;
  }

  /** The charge requests received so far (lookups excluded), bodies parsed. */
  charges(): Array<{ cvc: string; number: string; reference: string; idempotencyKey: string }> {
    return this.requests
      .filter((r) => r.method === 'POST' && r.path.startsWith('/v1/charges'))
      .map((r) => {
        const b = JSON.parse(r.body) as { card: { cvc: string; number: string }; reference: string; idempotency_key: string };
        return { cvc: b.card.cvc, number: b.card.number, reference: b.reference, idempotencyKey: b.idempotency_key };
      });
  }

  /** Resolves once `n` charge requests have arrived in all (polling; fails after `timeoutMs`). */
  async reached(n: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.charges().length < n) {
      if (Date.now() > deadline) throw new Error(`the provider got ${this.charges().length} charge request(s), not ${n}, within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  protected override respond(rec: Recorded, res: ServerResponse): void {
    const url = new URL(rec.path, 'http://provider.invalid');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (rec.method === 'GET' && url.pathname === '/v1/charges/lookup') {
      const found = this.outcomes.get(url.searchParams.get('key') ?? '');
      if (!found) return send(404, { error: 'not_found' });
      return send(200, { payment: found });
    }
    if (rec.method !== 'POST' || url.pathname !== '/v1/charges') return send(404, { error: 'not_found' });
    let body: { card?: { cvc?: string }; idempotency_key?: string };
    try {
      body = JSON.parse(rec.body);
    } catch {
      return send(400, { error: 'bad_json' });
    }
    const key = body.idempotency_key ?? '';
    // A repeated idempotency key gets the first outcome, as a provider would; a new one is decided now.
    let outcome = this.outcomes.get(key);
    if (!outcome) {
      const ok = body.card?.cvc === EXPECTED_CVV;
      outcome = {
        id: `pay_${++this.#seq}`,
        status: ok ? 'succeeded' : 'declined',
        decline_code: ok ? null : 'incorrect_cvc',
        cvc_check: ok ? 'M' : 'N',
        authorization_code: ok ? `AUTH${this.#seq}` : null,
      };
      if (key) this.outcomes.set(key, outcome);
    }
    const answer = outcome;
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!res.destroyed) send(200, { payment: answer });
    }, this.delayMs);
    this.#timers.add(t);
  }

  override async close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await super.close();
  }
}

/** The merchant's `http` processor settings (PATCH /Merchant `processor`) pointing at this provider. */
export function slowProviderConfig(p: SlowProvider, over: Record<string, unknown> = {}): Record<string, unknown> {
  const base = p.url();
  return {
    type: 'http',
    request: {
      method: 'POST',
      url: `${base}/v1/charges`,
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': '${idempotencyKey}' },
      body: BODY_TEMPLATE,
    },
    response: {
      approved: { path: 'payment.status', equals: 'succeeded' },
      authorizationCode: 'payment.authorization_code',
      declineCode: 'payment.decline_code',
      cvvResult: 'payment.cvc_check',
    },
    lookup: { method: 'GET', url: `${base}/v1/charges/lookup?key=\${idempotencyKey}`, headers: {} },
    timeoutMs: 10_000,
    ...over,
  };
}
