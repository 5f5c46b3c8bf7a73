/**
 * The runtime of the hosted CVV form and of merchants' custom forms: it runs
 * inside our iframe, on our origin. The CVV never leaves this frame except in
 * the collectCvv request to our own server; the parent page gets events and,
 * after each operation, the response with the rotated token.
 */
import { type ApiErrorShape, decodeClaims, type FromForm, type Method, safeTexts, safeTheme, type ToForm } from './protocol';
import { pickLocale, strings } from './i18n';

/** An API answer as this runtime reads it: the rotated token, the operation's result; the rest passed on as it is. */
interface ApiAnswer extends Record<string, unknown> {
  token?: unknown;
  result?: Record<string, unknown>;
}

const root = document.querySelector<HTMLElement>('[data-cvvops-root]');
if (root) start(root);

function start(rootEl: HTMLElement): void {
  const params = new URLSearchParams(location.hash.slice(1));
  // The token leaves the address bar at once (no history, no copy-paste).
  history.replaceState(null, '', location.pathname + location.search);
  let token = params.get('token') ?? '';
  const allowed = JSON.parse(rootEl.dataset.allowedOrigins ?? '[]') as string[];
  const wantedParent = params.get('origin');
  const parentOrigin = wantedParent && allowed.includes(wantedParent) && window.parent !== window ? wantedParent : null;
  const locale = pickLocale(params.get('locale') ?? rootEl.dataset.locale);
  const t = strings(locale);
  document.documentElement.lang = locale;
  let theme: unknown = null;
  try {
    theme = JSON.parse(params.get('theme') ?? 'null');
  } catch {
    theme = null;
  }
  for (const [k, v] of Object.entries(safeTheme(theme))) document.documentElement.style.setProperty(k, v);
  if (params.get('appearance') === 'dark') document.documentElement.dataset.theme = 'dark';
  let texts: ReturnType<typeof safeTexts> = {};
  try {
    texts = safeTexts(JSON.parse(params.get('texts') ?? 'null'));
  } catch {
    texts = {};
  }

  const claims = decodeClaims(token);
  const cvvLength: number = claims?.card?.cvvLength === 4 ? 4 : 3;
  const claimedBrand = claims?.card?.brand;
  const brand: string = typeof claimedBrand === 'string' ? claimedBrand : 'unknown';

  const input = ensureInput(rootEl.querySelector<HTMLElement>('[data-cvvops="cvv"]'));
  const message = rootEl.querySelector<HTMLElement>('[data-cvvops="message"]');
  const submit = rootEl.querySelector<HTMLButtonElement>('[data-cvvops="submit"]');
  const toggle = rootEl.querySelector<HTMLButtonElement>('[data-cvvops="toggle"]');
  const label = rootEl.querySelector<HTMLElement>('[data-cvvops="label"]');
  const hint = rootEl.querySelector<HTMLElement>('[data-cvvops="hint"]');
  // The hosted form speaks the shopper's language (or the merchant's words, `texts`); a custom form keeps its own label.
  const hosted = rootEl.dataset.kind === 'hosted';
  if (label && (hosted || !label.textContent?.trim())) label.textContent = (hosted && texts.label) || t.label;
  if (hint) {
    hint.textContent = (hosted && texts.hint) || t.hint(cvvLength);
    // Where the code is: the back of the card, or the front for American Express (4 digits).
    if (hosted) hint.prepend(cardPicture(cvvLength === 4, t.picture(cvvLength)));
  }
  if (hosted && !input.placeholder) input.placeholder = texts.placeholder ?? t.placeholder;
  if (submit && !submit.textContent?.trim()) submit.textContent = t.submit;
  if (message) {
    message.setAttribute('role', 'alert');
    message.setAttribute('aria-live', 'assertive');
  }

  input.maxLength = cvvLength;
  input.minLength = cvvLength;
  input.inputMode = 'numeric';
  input.autocomplete = 'cc-csc';
  input.pattern = `[0-9]{${cvvLength}}`;
  input.required = true;
  input.spellcheck = false;
  if (!input.getAttribute('aria-label') && !rootEl.querySelector(`label[for="${input.id}"]`)) input.setAttribute('aria-label', t.label);
  if (hint?.id) input.setAttribute('aria-describedby', [hint.id, message?.id].filter(Boolean).join(' '));

  const post = (msg: FromForm) => {
    if (parentOrigin) window.parent.postMessage(msg, parentOrigin);
  };
  const valid = () => new RegExp(`^[0-9]{${cvvLength}}$`).test(input.value);
  const say = (text: string, kind: 'error' | 'ok' | 'info') => {
    if (!message) return;
    message.textContent = text;
    message.dataset.kind = kind;
  };
  const setInvalid = (bad: boolean) => input.setAttribute('aria-invalid', bad ? 'true' : 'false');

  // Typing, pasting and autofill all end here: `input` for keystrokes and paste, `change` too for an autofill
  // that sets the value without keystrokes. What is not a digit goes; the change is told once per new value.
  let told: string | null = null;
  const onValue = () => {
    const digits = input.value.replace(/[^0-9]/g, '').slice(0, cvvLength);
    if (digits !== input.value) input.value = digits;
    if (input.getAttribute('aria-invalid') === 'true' && valid()) {
      setInvalid(false);
      say('', 'info');
    }
    if (told === input.value) return;
    told = input.value;
    post({ type: 'cvvops:event', name: 'change', data: { valid: valid(), empty: input.value === '', brand } });
  };
  input.addEventListener('input', onValue);
  input.addEventListener('change', onValue);
  input.addEventListener('focus', () => post({ type: 'cvvops:event', name: 'focus', data: {} }));
  input.addEventListener('blur', () => {
    // Checked when the shopper leaves the field, not only on submit: a started but short code is said at once.
    onValue();
    if (input.value !== '' && !valid()) {
      setInvalid(true);
      say(t.invalid(cvvLength), 'error');
    }
    post({ type: 'cvvops:event', name: 'blur', data: {} });
  });

  if (toggle) {
    toggle.textContent = t.show;
    toggle.setAttribute('aria-pressed', 'false');
    toggle.setAttribute('aria-controls', input.id);
    toggle.addEventListener('click', () => {
      const show = input.type === 'password';
      input.type = show ? 'text' : 'password';
      toggle.textContent = show ? t.hide : t.show;
      toggle.setAttribute('aria-pressed', String(show));
    });
  }

  async function api(path: string, body: unknown, extraHeaders: Record<string, string> = {}): Promise<ApiAnswer> {
    const res = await fetch(path, {
      method: 'POST',
      credentials: 'omit',
      cache: 'no-store',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...extraHeaders },
      body: JSON.stringify(body),
    });
    const json = ((await res.json().catch(() => ({}))) ?? {}) as ApiAnswer & { error?: { code?: string; message?: string } };
    if (!res.ok) {
      const err: ApiErrorShape = { code: json.error?.code ?? 'internal_error', status: res.status, message: json.error?.message ?? res.statusText };
      throw err;
    }
    if (typeof json.token === 'string') {
      token = json.token;
      post({ type: 'cvvops:token', token });
    }
    return json;
  }

  function browserInfo() {
    return {
      acceptHeader: 'text/html',
      language: navigator.language.slice(0, 35),
      screenWidth: screen.width,
      screenHeight: screen.height,
      timeZoneOffset: new Date().getTimezoneOffset(),
      userAgent: navigator.userAgent.slice(0, 2048),
      colorDepth: screen.colorDepth,
      javascriptEnabled: true,
    };
  }

  function explain(e: ApiErrorShape): string {
    if (e.code === 'invalid_cvv') return t.invalid(cvvLength);
    if (e.code === 'cvv_blocked') return t.blocked;
    if (e.code === 'token_expired' || e.code === 'session_expired') return t.expired;
    return t.error;
  }

  async function run(method: Method, args: ToForm['args']): Promise<unknown> {
    if (method === 'collectCvv') {
      if (!valid()) {
        setInvalid(true);
        say(t.invalid(cvvLength), 'error');
        input.focus();
        const invalid: ApiErrorShape = { code: 'invalid_cvv', status: 400, message: t.invalid(cvvLength) };
        throw invalid;
      }
      say(t.working, 'info');
      const r = await api('/CvvOperations/collectCvv', { cvv: input.value });
      // The CVV is in the vault now: it does not stay in the page.
      input.value = '';
      setInvalid(false);
      say(t.collected, 'ok');
      post({ type: 'cvvops:event', name: 'change', data: { valid: false, empty: true, brand } });
      return r;
    }
    if (method === 'threeDS') return api('/CvvOperations/threeDS', { browser: browserInfo() });
    if (method === 'threeDSResult') return api('/CvvOperations/threeDS/result', {});
    return api('/CvvOperations/charge', args?.amount ? { amount: args.amount } : {}, { 'idempotency-key': crypto.randomUUID() });
  }

  async function handle(method: Method, args: ToForm['args'], id: number | null): Promise<void> {
    try {
      const response = await run(method, args);
      if (id !== null) post({ type: 'cvvops:result', id, ok: true, response });
    } catch (e) {
      const err = (e && typeof e === 'object' && 'code' in e ? e : { code: 'internal_error', status: 0, message: String(e) }) as ApiErrorShape;
      // An open challenge (409 to threeDSResult) is a state, not an error to show.
      const quiet = method === 'threeDSResult' && err.code === 'precondition_failed';
      if (!quiet && err.code !== 'invalid_cvv') say(explain(err), 'error');
      if (!quiet) post({ type: 'cvvops:event', name: 'error', data: err });
      if (id !== null) post({ type: 'cvvops:result', id, ok: false, error: err });
    }
  }

  window.addEventListener('message', (event: MessageEvent) => {
    if (!parentOrigin || event.origin !== parentOrigin || event.source !== window.parent) return;
    const msg = event.data as ToForm;
    if (!msg || msg.type !== 'cvvops:call' || typeof msg.id !== 'number') return;
    if (!['collectCvv', 'threeDS', 'threeDSResult', 'charge'].includes(msg.method)) return;
    void handle(msg.method, msg.args, msg.id);
  });

  const form = input.closest('form');
  const onSubmit = (ev: Event) => {
    ev.preventDefault();
    post({ type: 'cvvops:event', name: 'submit', data: {} });
    if (!parentOrigin) void handle('collectCvv', undefined, null);
  };
  form?.addEventListener('submit', onSubmit);
  if (submit && !form) submit.addEventListener('click', onSubmit);
  // The page's disabled default button keeps Enter from submitting the form natively while this
  // script is not running (views/hosted-cvv.ejs). Now every submission comes here: Enter may submit.
  if (form) for (const guard of form.querySelectorAll('[data-cvvops-noscript-guard]')) guard.remove();
  // The frame takes the height of what it shows, as that changes (a message appears, a narrow column wraps).
  let height = 0;
  const sendHeight = () => {
    const h = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (h !== height && h > 0) {
      height = h;
      post({ type: 'cvvops:resize', height: h });
    }
  };
  new ResizeObserver(sendHeight).observe(document.documentElement);
  sendHeight();
  post({ type: 'cvvops:ready' });
}

/** Custom forms mark the CVV field with data-cvvops="cvv": an input, or an element that gets one. */
function ensureInput(el: HTMLElement | null): HTMLInputElement {
  if (el instanceof HTMLInputElement) {
    if (!el.id) el.id = 'cvvops-cvv';
    // Never a named field: a named field is what a native submission would carry (a custom form
    // stored before the sanitizer dropped `name` may still have one).
    el.removeAttribute('name');
    if (el.type !== 'password' && el.type !== 'text') el.type = 'password';
    return el;
  }
  const input = document.createElement('input');
  input.id = 'cvvops-cvv';
  input.type = 'password';
  input.className = 'cvvops-input';
  (el ?? document.body).appendChild(input);
  return input;
}

/** A small drawing of where the code is: the back of the card by the signature strip, or the front (4 digits) for Amex. */
function cardPicture(front: boolean, title: string): SVGSVGElement {
  const NS = 'http://www.w3.org/2000/svg';
  const el = <K extends keyof SVGElementTagNameMap>(name: K, attrs: Record<string, string>, text?: string): SVGElementTagNameMap[K] => {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const svg = el('svg', { viewBox: '0 0 48 32', width: '36', height: '24', role: 'img', class: 'cvvops-card', focusable: 'false' });
  svg.append(el('title', {}, title), el('rect', { x: '0.5', y: '0.5', width: '47', height: '31', rx: '3.5', class: 'cvvops-card-body' }));
  if (front) {
    svg.append(
      el('rect', { x: '30', y: '6', width: '14', height: '8', rx: '1.5', class: 'cvvops-card-code' }),
      el('text', { x: '37', y: '12.2', 'text-anchor': 'middle', class: 'cvvops-card-digits' }, '1234'),
      el('rect', { x: '5', y: '18', width: '38', height: '3', rx: '1', class: 'cvvops-card-line' }),
      el('rect', { x: '5', y: '24', width: '18', height: '3', rx: '1', class: 'cvvops-card-line' }),
    );
  } else {
    svg.append(
      el('rect', { x: '0.5', y: '5', width: '47', height: '6', class: 'cvvops-card-stripe' }),
      el('rect', { x: '5', y: '16', width: '24', height: '7', rx: '1', class: 'cvvops-card-line' }),
      el('rect', { x: '31', y: '14.5', width: '13', height: '10', rx: '1.5', class: 'cvvops-card-code' }),
      el('text', { x: '37.5', y: '21.6', 'text-anchor': 'middle', class: 'cvvops-card-digits' }, '123'),
    );
  }
  return svg;
}
