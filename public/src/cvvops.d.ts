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
  /** Runs 3-D Secure; a challenge opens in a modal overlay. Rejects with code `canceled` when the shopper closes it (the session can try again). */
  threeDS(): Promise<OperationResponse>;
  charge(opts?: { amount?: { value: number; currency: string } }): Promise<OperationResponse>;
  destroy(): void;
}

export declare function mount(target: string | HTMLElement, options: MountOptions): Promise<CvvOpsForm>;

export declare const CvvOps: { mount: typeof mount; CvvOpsError: typeof CvvOpsError; version: string };
export default CvvOps;

declare global {
  interface Window {
    CvvOps: typeof CvvOps;
  }
}
