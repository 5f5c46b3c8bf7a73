/** The demo checkout: the merchant side of the flow, on the demo merchant, in test mode. */
import CvvOps, { type CvvOpsForm, type OperationResponse } from './sdk';
import { decodeClaims } from './protocol';

const $ = <T extends HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const log = $<HTMLOListElement>('#steps');
const pay = $<HTMLButtonElement>('#pay');
const start = $<HTMLButtonElement>('#start');
const cardSelect = $<HTMLSelectElement>('#card');
let form: CvvOpsForm | null = null;

function step(title: string, data: unknown, token?: string): void {
  const li = document.createElement('li');
  const h = document.createElement('h3');
  h.textContent = title;
  const pre = document.createElement('pre');
  pre.textContent = JSON.stringify(data, null, 2);
  li.append(h, pre);
  if (token) {
    const claims = decodeClaims(token);
    const t = document.createElement('details');
    const s = document.createElement('summary');
    s.textContent = `Token seq ${String(claims?.seq)} (claims)`;
    const p = document.createElement('pre');
    p.textContent = JSON.stringify(claims, null, 2);
    t.append(s, p);
    li.append(t);
  }
  log.append(li);
  li.scrollIntoView({ block: 'nearest' });
}

/** What the demo's two server endpoints answer (the fields this page shows). */
interface DemoSession {
  id: string;
  card: string;
  operations: string[];
  amount: unknown;
  token: string;
}
interface DemoValidation {
  valid: boolean;
  current?: boolean;
  session?: { status?: string };
  claims?: { res?: { charge?: { status?: string; declineCode?: string | null } } };
}

/** What a 3-D Secure status other than Y or A means to the shopper. */
const THREE_DS_FAILURE: Record<string, string> = {
  N: 'not authenticated: the code was wrong',
  U: 'the verification was unavailable',
  R: 'the bank rejected the verification',
};

async function backend<T>(path: string, body: unknown): Promise<T> {
  const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await r.json()) as (T & { error?: { message?: string } }) | null;
  if (!r.ok || json === null) throw new Error(json?.error?.message ?? r.statusText);
  return json;
}

start.addEventListener('click', () => void begin());
async function begin(): Promise<void> {
  start.disabled = true;
  log.replaceChildren();
  form?.destroy();
  try {
    const session = await backend<DemoSession>('/demo/api/checkout', { card: cardSelect.value });
    step(
      'Merchant server: card on file and POST /CvvOperations',
      { card: session.card, session: session.id, operations: session.operations, amount: session.amount },
      session.token,
    );
    form = await CvvOps.mount('#cvv', { token: session.token, locale: document.documentElement.lang });
    form.on('change', ({ valid }: { valid: boolean }) => (pay.disabled = !valid));
    form.on('challenge', ({ transactionId }: { transactionId: string }) =>
      step('Browser: 3-D Secure challenge (status C: the bank asks the shopper for a code, in the overlay)', { transactionId }),
    );
    $('#checkout').hidden = false;
  } catch (e) {
    step('Error', { message: String(e) });
  } finally {
    start.disabled = false;
  }
}

pay.addEventListener('click', () => void checkout());
async function checkout(): Promise<void> {
  if (!form) return;
  pay.disabled = true;
  const show = (title: string, r: OperationResponse) => step(title, r.result, r.token);
  try {
    show('Browser: collectCvv', await form.collectCvv());
    const auth = await form.threeDS();
    show('Browser: 3-D Secure', auth);
    const authenticated = auth.result.status === 'Y' || auth.result.status === 'A';
    if (!authenticated) {
      // No charge without a successful authentication: the session requires it (require3DS), the server would refuse it.
      const why = THREE_DS_FAILURE[String(auth.result.status)] ?? 'not authenticated';
      $('#outcome').textContent = `Not paid: 3-D Secure ended with ${String(auth.result.status)} (${why}). No charge was made.`;
      return;
    }
    show('Browser: charge', await form.charge());
    const v = await backend<DemoValidation>('/demo/api/validate', { token: form.token });
    step('Merchant server: validateToken', { valid: v.valid, current: v.current, status: v.session?.status, charge: v.claims?.res?.charge });
    const charge = v.claims?.res?.charge;
    $('#outcome').textContent =
      charge?.status === 'approved'
        ? "Paid. The merchant's server has verified it."
        : charge?.status === 'declined'
          ? `Not paid: the card was declined (${charge.declineCode ?? 'no reason given'}).`
          : charge?.status === 'error'
            ? 'Not paid: the processor failed or could not be reached; no money moved. Try again.'
            : 'Not paid: see the steps.';
  } catch (e: unknown) {
    const err = e as { code?: string; status?: number; message?: string } | null;
    step('Error', { code: err?.code, status: err?.status, message: err?.message });
    pay.disabled = false;
  }
}
