/** Messages between the SDK (merchant page) and the hosted form (iframe). Always posted to one exact origin. */
export type Method = 'collectCvv' | 'threeDS' | 'threeDSResult' | 'charge';

export interface ApiErrorShape {
  code: string;
  status: number;
  message: string;
}

export type ToForm = { type: 'cvvops:call'; id: number; method: Method; args?: { amount?: { value: number; currency: string } } };

export type FromForm =
  | { type: 'cvvops:ready' }
  | { type: 'cvvops:event'; name: 'change'; data: { valid: boolean; empty: boolean; brand: string } }
  | { type: 'cvvops:event'; name: 'focus' | 'blur'; data: Record<string, never> }
  | { type: 'cvvops:event'; name: 'error'; data: ApiErrorShape }
  | { type: 'cvvops:event'; name: 'submit'; data: Record<string, never> }
  | { type: 'cvvops:token'; token: string }
  /** The form's content height in CSS pixels: the SDK sizes the iframe to it (no gap, nothing cut off). */
  | { type: 'cvvops:resize'; height: number }
  | { type: 'cvvops:result'; id: number; ok: true; response: unknown }
  | { type: 'cvvops:result'; id: number; ok: false; error: ApiErrorShape };

export type FromChallenge =
  | { type: 'cvvops:3ds-complete'; transactionId: string; status: string }
  /** The shopper pressed Escape inside the challenge frame (keys there never reach the merchant page). */
  | { type: 'cvvops:3ds-cancel'; transactionId: string };

/** The claims the browser code reads from a session token (display hints only), each unknown until checked. */
export interface TokenHints extends Record<string, unknown> {
  iss?: unknown;
  sub?: unknown;
  form?: unknown;
  seq?: unknown;
  card?: { cvvLength?: unknown; brand?: unknown };
}

/** The payload of a compact JWS, without verification (the server verifies; this only reads display hints). */
export function decodeClaims(token: string): TokenHints | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const claims: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0))));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? (claims as TokenHints) : null;
  } catch {
    return null;
  }
}

/** The theme variables the SDK may pass; values are checked so no CSS can be injected through them. */
export const THEME_VARIABLES = [
  '--cvvops-accent',
  '--cvvops-text',
  '--cvvops-background',
  '--cvvops-border',
  '--cvvops-error',
  '--cvvops-radius',
  '--cvvops-font-size',
  '--cvvops-font-family',
] as const;
const SAFE_VALUE = /^[#(),.%\w\s-]{1,64}$/;

/**
 * The font stacks a form may use, by name: fonts installed with the system only (a web font would be a
 * request from the form to somewhere, and a font name is a fingerprinting channel the merchant's page
 * does not need). `--cvvops-font-family` takes one of these names.
 */
export const FONT_STACKS = {
  system: 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
  'sans-serif': '"Helvetica Neue", Helvetica, Arial, "Liberation Sans", sans-serif',
  serif: 'Georgia, "Times New Roman", "Liberation Serif", serif',
  monospace: 'ui-monospace, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace',
  rounded: 'ui-rounded, "SF Pro Rounded", "Nunito", system-ui, sans-serif',
} as const;

export function safeTheme(theme: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!theme || typeof theme !== 'object') return out;
  for (const [k, v] of Object.entries(theme as Record<string, unknown>)) {
    if (k === '--cvvops-font-family') {
      if (typeof v === 'string' && Object.hasOwn(FONT_STACKS, v)) out[k] = FONT_STACKS[v as keyof typeof FONT_STACKS];
      continue;
    }
    if ((THEME_VARIABLES as readonly string[]).includes(k) && typeof v === 'string' && SAFE_VALUE.test(v) && !/url|expression|image|attr/i.test(v)) out[k] = v;
  }
  return out;
}

/** The texts a merchant may put in the hosted form instead of the locale's: plain text, short, no controls. */
export type TextOverrides = { label?: string; placeholder?: string; hint?: string };
export function safeTexts(texts: unknown): TextOverrides {
  const out: TextOverrides = {};
  if (!texts || typeof texts !== 'object') return out;
  for (const k of ['label', 'placeholder', 'hint'] as const) {
    const v = (texts as Record<string, unknown>)[k];
    if (typeof v === 'string' && v.trim() !== '' && v.length <= 120 && !/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(v)) out[k] = v.trim();
  }
  return out;
}
