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
export function safeTheme(theme: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!theme || typeof theme !== 'object') return out;
  for (const [k, v] of Object.entries(theme as Record<string, unknown>)) {
    if ((THEME_VARIABLES as readonly string[]).includes(k) && typeof v === 'string' && SAFE_VALUE.test(v) && !/url|expression|image|attr/i.test(v)) out[k] = v;
  }
  return out;
}
