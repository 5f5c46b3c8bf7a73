/**
 * The cvvops browser SDK: mounts the hosted CVV form (or a custom form) in an
 * iframe served by the cvvops server, and drives the operations through it.
 * The CVV never enters the merchant's page; the SDK only sees results and the
 * rotated token.
 *
 * @example
 *   const form = await CvvOps.mount('#cvv', { token });
 *   form.on('change', ({ valid }) => (pay.disabled = !valid));
 *   await form.collectCvv();
 *   await form.threeDS();
 *   await form.charge();
 *   sendToMyServer(form.token);
 */
import { type Locale, pickLocale, strings } from './i18n';
import { type ApiErrorShape, decodeClaims, type FromChallenge, type FromForm, type Method, safeTexts, safeTheme, type ToForm } from './protocol';

// The public types are declared once, in the declarations shipped with the SDK (cvvops.d.ts).
import type { EventName, MountOptions, OperationResponse } from './cvvops';

export type { EventName, MountOptions, OperationResponse };

/** An API error: `code` and `status` as the server answered them. */
export class CvvOpsError extends Error {
  readonly code: string;
  readonly status: number;
  constructor(e: ApiErrorShape) {
    super(e.message);
    this.name = 'CvvOpsError';
    this.code = e.code;
    this.status = e.status;
  }
}

export class CvvOpsForm {
  /** The latest session token: send it to your server, which validates it. */
  token: string;
  readonly iframe: HTMLIFrameElement;
  readonly #origin: string;
  readonly #listeners = new Map<EventName, Set<(data: any) => void>>();
  readonly #pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #onMessage: (e: MessageEvent) => void;
  #overlay: HTMLElement | null = null;
  /** The form's language: the challenge page and the overlay speak it too. */
  readonly #locale: Locale;

  constructor(iframe: HTMLIFrameElement, origin: string, token: string, locale: Locale = 'en') {
    this.iframe = iframe;
    this.#origin = origin;
    this.token = token;
    this.#locale = locale;
    this.#onMessage = (e) => this.#receive(e);
    window.addEventListener('message', this.#onMessage);
  }

  on(name: EventName, fn: (data: any) => void): this {
    if (!this.#listeners.has(name)) this.#listeners.set(name, new Set());
    this.#listeners.get(name)!.add(fn);
    return this;
  }

  off(name: EventName, fn: (data: any) => void): this {
    this.#listeners.get(name)?.delete(fn);
    return this;
  }

  #emit(name: EventName, data: unknown): void {
    for (const fn of this.#listeners.get(name) ?? []) {
      try {
        fn(data);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  #receive(e: MessageEvent): void {
    if (e.origin !== this.#origin) return;
    const fromForm = e.source === this.iframe.contentWindow;
    const fromChallenge = this.#overlay !== null && e.source === this.#overlay.querySelector('iframe')?.contentWindow;
    if (!fromForm && !fromChallenge) return;
    const msg = e.data as FromForm | FromChallenge;
    if (!msg || typeof msg !== 'object') return;
    if (fromChallenge) {
      if (msg.type === 'cvvops:3ds-complete') this.#emit('challenge-complete' as EventName, msg);
      if (msg.type === 'cvvops:3ds-cancel') this.#emit('challenge-cancel' as EventName, msg);
      return;
    }
    switch (msg.type) {
      case 'cvvops:ready':
        this.#emit('ready', {});
        break;
      case 'cvvops:resize':
        // The form's own height, within sane bounds (a frame cannot grow the page without limit).
        if (typeof msg.height === 'number' && Number.isFinite(msg.height)) this.iframe.style.height = `${Math.min(600, Math.max(40, Math.ceil(msg.height)))}px`;
        break;
      case 'cvvops:event':
        this.#emit(msg.name, msg.data);
        break;
      case 'cvvops:token':
        if (typeof msg.token === 'string' && msg.token !== this.token) {
          this.token = msg.token;
          this.#emit('token', { token: msg.token });
        }
        break;
      case 'cvvops:result': {
        const p = this.#pending.get(msg.id);
        if (!p) return;
        this.#pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.response);
        else p.reject(new CvvOpsError(msg.error));
        break;
      }
      default:
    }
  }

  #call(method: Method, args?: ToForm['args']): Promise<OperationResponse> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const msg: ToForm = { type: 'cvvops:call', id, method, args };
      this.iframe.contentWindow?.postMessage(msg, this.#origin);
    });
  }

  /** Sends the CVV typed in the form to the vault. */
  collectCvv(): Promise<OperationResponse> {
    return this.#call('collectCvv');
  }

  /**
   * Runs 3-D Secure; when the card needs a challenge, opens it in an overlay and resolves with the final
   * result. `mode: 'redirect'` (for pages whose CSP forbids frames, or that prefer a whole page): the shopper
   * goes to the challenge page and comes back to `returnUrl` (default: this page; it must be on one of the
   * merchant's allowed origins), where `CvvOps.resume()` picks the flow up. This promise then never settles.
   */
  async threeDS(opts: { mode?: 'overlay' | 'redirect'; returnUrl?: string } = {}): Promise<OperationResponse> {
    const first = await this.#call('threeDS');
    if (first.result?.status !== 'C' || typeof first.result.challengeUrl !== 'string') return first;
    const transactionId = String(first.result.transactionId);
    // The challenge page is ours (the form's origin), in the form's language, framed or not.
    const u = new URL(first.result.challengeUrl);
    if (u.origin !== this.#origin) throw new CvvOpsError({ code: 'invalid_request', status: 0, message: 'unexpected challenge origin' });
    if (this.#locale !== 'en') u.searchParams.set('locale', this.#locale);
    this.#emit('challenge', { transactionId });
    if (opts.mode === 'redirect') return this.#redirect(u, transactionId, opts.returnUrl ?? location.href);
    return this.#challenge(u, transactionId);
  }

  /** The final result of the session's latest 3-D Secure transaction (409 precondition_failed while its challenge is open). */
  threeDSResult(): Promise<OperationResponse> {
    return this.#call('threeDSResult');
  }

  #redirect(u: URL, transactionId: string, returnUrl: string): Promise<OperationResponse> {
    const back = new URL(returnUrl, location.href);
    back.hash = '';
    u.searchParams.set('return', back.href);
    // What resume() needs, in this tab's storage for this origin only (never in a URL): the current token.
    sessionStorage.setItem(RESUME_KEY, JSON.stringify({ token: this.token, transactionId, locale: this.#locale }));
    location.assign(u.href);
    return new Promise<OperationResponse>(() => undefined);
  }

  /** Charges (at most the session amount) with the vaulted CVV. */
  charge(opts: { amount?: { value: number; currency: string } } = {}): Promise<OperationResponse> {
    return this.#call('charge', opts.amount ? { amount: opts.amount } : undefined);
  }

  /**
   * The challenge in an overlay frame (our origin), a modal dialog: focus
   * moves into it and stays there (it is given back when the dialog closes).
   * It ends when the challenge page says so (postMessage, exact origin and
   * source) or, for a page without script, when asking for the final result
   * stops answering 409 (asked every 2 s). The shopper may close it (the
   * close button, Escape, a click on the backdrop): threeDS() then rejects
   * with code `canceled`, and the same session can run threeDS() again.
   */
  #challenge(u: URL, transactionId: string): Promise<OperationResponse> {
    const previous = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    const t = strings(this.#locale);
    const overlay = document.createElement('div');
    overlay.setAttribute('role', 'dialog');
    overlay.setAttribute('aria-modal', 'true');
    overlay.setAttribute('aria-label', t.verification);
    overlay.style.cssText = 'position:fixed;inset:0;z-index:2147483647;background:rgba(0,0,0,.55);display:flex;align-items:center;justify-content:center';
    const box = document.createElement('div');
    box.style.cssText = 'position:relative;width:min(440px,96vw);height:min(560px,90vh)';
    const frame = document.createElement('iframe');
    frame.title = t.verification;
    frame.src = `${u.href}#origin=${encodeURIComponent(location.origin)}`;
    frame.referrerPolicy = 'no-referrer';
    frame.style.cssText = 'width:100%;height:100%;border:0;border-radius:8px;background:#fff';
    const close = document.createElement('button');
    close.type = 'button';
    close.textContent = '\u00d7';
    close.setAttribute('aria-label', t.cancelVerification);
    close.style.cssText =
      'position:absolute;top:6px;right:6px;width:36px;height:36px;border:0;border-radius:50%;background:#fff;color:#222;' +
      'font:24px/36px system-ui,sans-serif;cursor:pointer;box-shadow:0 1px 3px rgba(0,0,0,.3)';
    box.append(frame, close);
    overlay.appendChild(box);
    document.body.appendChild(overlay);
    this.#overlay = overlay;
    frame.addEventListener('load', () => frame.focus(), { once: true });
    return new Promise((resolve, reject) => {
      let settled = false;
      let asking = false;
      const cleanup = () => {
        settled = true;
        clearInterval(poll);
        this.off('challenge-complete' as EventName, onComplete);
        this.off('challenge-cancel' as EventName, onCancelMessage);
        document.removeEventListener('keydown', onKey, true);
        document.removeEventListener('focusin', onFocus, true);
        overlay.remove();
        this.#overlay = null;
        previous?.focus();
      };
      const cancel = () => {
        if (settled) return;
        cleanup();
        reject(new CvvOpsError({ code: 'canceled', status: 0, message: 'The verification was closed before it finished.' }));
      };
      const ask = async () => {
        if (settled || asking) return;
        asking = true;
        try {
          const r = await this.#call('threeDSResult');
          if (settled) return;
          cleanup();
          resolve(r);
        } catch (e) {
          if (!settled && !(e instanceof CvvOpsError && e.code === 'precondition_failed')) {
            cleanup();
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        } finally {
          asking = false;
        }
      };
      const onComplete = (m: FromChallenge) => {
        if (m.transactionId === transactionId) void ask();
      };
      const onCancelMessage = (m: FromChallenge) => {
        if (m.transactionId === transactionId) cancel();
      };
      const onKey = (e: KeyboardEvent) => {
        if (e.key === 'Escape') {
          e.preventDefault();
          cancel();
        } else if (e.key === 'Tab') {
          // Two stops in the dialog: the close button and the challenge frame.
          e.preventDefault();
          (document.activeElement === close ? frame : close).focus();
        }
      };
      // Focus that leaves the dialog (a Tab out of the frame's last field) comes back to it.
      const onFocus = (e: FocusEvent) => {
        if (e.target instanceof Node && !overlay.contains(e.target)) close.focus();
      };
      close.addEventListener('click', cancel);
      overlay.addEventListener('click', (e) => {
        if (e.target === overlay) cancel();
      });
      document.addEventListener('keydown', onKey, true);
      document.addEventListener('focusin', onFocus, true);
      this.on('challenge-complete' as EventName, onComplete);
      this.on('challenge-cancel' as EventName, onCancelMessage);
      const poll = setInterval(() => void ask(), 2000);
    });
  }

  /** Removes the iframe (and any open challenge) and stops listening. */
  destroy(): void {
    window.removeEventListener('message', this.#onMessage);
    this.iframe.remove();
    this.#overlay?.remove();
    for (const p of this.#pending.values()) p.reject(new CvvOpsError({ code: 'destroyed', status: 0, message: 'the form was destroyed' }));
    this.#pending.clear();
  }
}

const RESUME_KEY = 'cvvops:resume';

/**
 * Back from a challenge in redirect mode: mounts the form again with the session's token (kept in this tab's
 * sessionStorage, never in a URL) and asks for the challenge's final result. Null when there is nothing to
 * resume (no challenge was left for in this tab). `canceled`: the shopper chose to go back without finishing;
 * the same session can run threeDS() again.
 */
export async function resume(
  target: string | HTMLElement,
  options: Omit<MountOptions, 'token'> = {},
): Promise<{ form: CvvOpsForm; threeDS: OperationResponse | null; canceled: boolean } | null> {
  const saved = sessionStorage.getItem(RESUME_KEY);
  if (!saved) return null;
  sessionStorage.removeItem(RESUME_KEY);
  let state: { token?: unknown; locale?: unknown };
  try {
    state = JSON.parse(saved) as typeof state;
  } catch {
    return null;
  }
  if (typeof state.token !== 'string') return null;
  const outcome = new URLSearchParams(location.hash.slice(1)).get('cvvops');
  if (outcome) history.replaceState(null, '', location.pathname + location.search);
  const form = await mount(target, { ...options, token: state.token, locale: options.locale ?? (typeof state.locale === 'string' ? state.locale : undefined) });
  if (outcome === '3ds-canceled') return { form, threeDS: null, canceled: true };
  try {
    return { form, threeDS: await form.threeDSResult(), canceled: false };
  } catch (e) {
    // Still open: the shopper came back some other way (the browser's Back) without finishing.
    if (e instanceof CvvOpsError && e.code === 'precondition_failed') return { form, threeDS: null, canceled: true };
    throw e;
  }
}

/** Mounts the form into an element (or a selector) and resolves once it is ready. */
export function mount(target: string | HTMLElement, options: MountOptions): Promise<CvvOpsForm> {
  const el = typeof target === 'string' ? document.querySelector<HTMLElement>(target) : target;
  if (!el) return Promise.reject(new Error(`CvvOps.mount: no element ${typeof target === 'string' ? target : target.tagName}`));
  if (!options || typeof options.token !== 'string') return Promise.reject(new Error('CvvOps.mount: options.token is required'));
  const claims = decodeClaims(options.token);
  if (!claims || typeof claims.iss !== 'string' || typeof claims.sub !== 'string')
    return Promise.reject(new Error('CvvOps.mount: the token is not a cvvops session token'));
  const base = new URL(claims.iss);
  const formId = options.form ?? (typeof claims.form === 'string' && claims.form !== 'hosted' ? claims.form : null);
  const path = formId ? `/hosted/forms/${encodeURIComponent(formId)}` : '/hosted/cvv';
  const frag = new URLSearchParams({ token: options.token, origin: location.origin, locale: options.locale ?? '' });
  const theme = safeTheme(options.theme);
  if (Object.keys(theme).length) frag.set('theme', JSON.stringify(theme));
  if (options.appearance === 'dark') frag.set('appearance', 'dark');
  const texts = safeTexts(options.texts);
  if (Object.keys(texts).length) frag.set('texts', JSON.stringify(texts));
  const iframe = document.createElement('iframe');
  iframe.title = 'Card security code';
  iframe.referrerPolicy = 'no-referrer';
  iframe.setAttribute('allowtransparency', 'true');
  iframe.style.cssText = 'width:100%;height:128px;border:0;display:block;background:transparent';
  iframe.src = `${base.origin}${path}?session=${encodeURIComponent(claims.sub)}#${frag.toString()}`;
  const form = new CvvOpsForm(iframe, base.origin, options.token, pickLocale(options.locale));
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (e: CvvOpsError) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      form.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new CvvOpsError({ code: 'timeout', status: 0, message: 'the form did not become ready' })), options.timeoutMs ?? 15000);
    form.on('ready', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(form);
    });
    el.appendChild(iframe);
    // A page whose origin the merchant does not allow cannot frame the form, and a refused frame tells the page
    // nothing: ask the server at once, so mount() fails in a moment with the reason and the fix, not at the timeout.
    // (Unanswered, e.g. under a connect-src that leaves the server out, the timeout still applies.)
    if (base.origin === location.origin) return; // the server's own pages are always allowed
    void originCheck(base.origin, claims.sub as string).then((check) => {
      if (check && !check.allowed)
        fail(
          new CvvOpsError({
            code: 'origin_not_allowed',
            status: 403,
            message:
              `This page's origin, ${location.origin}, is not allowed to show this merchant's payment form. ` +
              `Add it to the merchant's allowed origins in the session's mode (PATCH /Merchant {"allowedOrigins": [...]}, ` +
              `or cvvops merchant update --origin ${location.origin}).`,
          }),
        );
    });
  });
}

/** The server's answer to "may this page's origin frame the form?", or null when it cannot be had. */
async function originCheck(server: string, session: string): Promise<{ allowed: boolean } | null> {
  try {
    const r = await fetch(`${server}/hosted/origin-check?session=${encodeURIComponent(session)}`, {
      mode: 'cors',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
      cache: 'no-store',
    });
    if (!r.ok) return null;
    const body = (await r.json()) as unknown;
    return body !== null && typeof body === 'object' && typeof (body as { allowed?: unknown }).allowed === 'boolean' ? (body as { allowed: boolean }) : null;
  } catch {
    return null;
  }
}

export const CvvOps = { mount, resume, CvvOpsError, version: '1' };
export default CvvOps;
