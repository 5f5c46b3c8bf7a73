/** Type declarations for the cvvops browser SDK (`/sdk/v1/cvvops.js`, also `/sdk/v1/cvvops.mjs`). */
export interface MountOptions {
  /** The session token from POST /CvvOperations. */
  token: string;
  /** en (default), fr, de or es. */
  locale?: string;
  /**
   * CSS variables: --cvvops-accent, --cvvops-text, --cvvops-background, --cvvops-border, --cvvops-error,
   * --cvvops-radius, --cvvops-font-size, and --cvvops-font-family by name from a fixed list of system
   * font stacks: 'system' (default), 'sans-serif', 'serif', 'monospace', 'rounded'.
   */
  theme?: Record<string, string>;
  /** 'light' (default) or 'dark': a dark field for a dark page, its colours checked for contrast. */
  appearance?: 'light' | 'dark';
  /** Your words instead of the locale's, for the hosted form: plain text, at most 120 characters each. */
  texts?: { label?: string; placeholder?: string; hint?: string };
  /** A custom form id (frm_…) instead of the hosted form. */
  form?: string;
  /** Milliseconds to wait for the form to be ready (default 15000). */
  timeoutMs?: number;
}

export interface OperationResponse {
  result: Record<string, any>;
  token: string;
  session: { status: 'active' | 'completed' | 'canceled' | 'expired' };
}

/** `challenge`: threeDS() is opening the bank's challenge in its overlay ({ transactionId }). */
export type EventName = 'ready' | 'change' | 'focus' | 'blur' | 'error' | 'token' | 'submit' | 'challenge';

export interface ChangeEvent {
  valid: boolean;
  empty: boolean;
  brand: string;
}

export declare class CvvOpsError extends Error {
  readonly code: string;
  readonly status: number;
}

export interface CvvOpsForm {
  /** The latest session token. */
  readonly token: string;
  readonly iframe: HTMLIFrameElement;
  on(name: 'change', fn: (e: ChangeEvent) => void): this;
  on(name: 'token', fn: (e: { token: string }) => void): this;
  on(name: 'error', fn: (e: { code: string; status: number; message: string }) => void): this;
  on(name: EventName, fn: (data: any) => void): this;
  off(name: EventName, fn: (data: any) => void): this;
  collectCvv(): Promise<OperationResponse>;
  /**
   * Runs 3-D Secure; a challenge opens in a modal overlay. Rejects with code `canceled` when the shopper closes
   * it (the session can try again). `mode: 'redirect'`: the shopper goes to the challenge page and back to
   * `returnUrl` (default this page; on one of the merchant's allowed origins), where `CvvOps.resume()` goes on.
   */
  threeDS(opts?: { mode?: 'overlay' | 'redirect'; returnUrl?: string }): Promise<OperationResponse>;
  /** The final result of the session's latest 3-D Secure transaction (409 `precondition_failed` while its challenge is open). */
  threeDSResult(): Promise<OperationResponse>;
  charge(opts?: { amount?: { value: number; currency: string } }): Promise<OperationResponse>;
  destroy(): void;
}

export declare function mount(target: string | HTMLElement, options: MountOptions): Promise<CvvOpsForm>;

/**
 * Back from a challenge in redirect mode: mounts the form again (the token was kept in this tab's
 * sessionStorage, never in a URL) and fetches the challenge's final result. Null when there is nothing to resume.
 */
export declare function resume(
  target: string | HTMLElement,
  options?: Omit<MountOptions, 'token'>,
): Promise<{ form: CvvOpsForm; threeDS: OperationResponse | null; canceled: boolean } | null>;

export declare const CvvOps: { mount: typeof mount; resume: typeof resume; CvvOpsError: typeof CvvOpsError; version: string };
export default CvvOps;

declare global {
  interface Window {
    CvvOps: typeof CvvOps;
  }
}
