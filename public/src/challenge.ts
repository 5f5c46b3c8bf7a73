/**
 * Enhances the 3-D Secure challenge page (which works without script): it
 * carries the SDK's origin (from the URL fragment) through the form post, and
 * on the finished page tells that origin, exactly, that the challenge is over.
 */
import type { FromChallenge } from './protocol';

const root = document.querySelector<HTMLElement>('[data-cvvops-challenge]');
if (root) {
  const allowed = JSON.parse(root.dataset.allowedOrigins ?? '[]') as string[];
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('origin');
  const field = document.querySelector<HTMLInputElement>('input[name="origin"]');
  if (field && fromHash && allowed.includes(fromHash)) field.value = fromHash;
  const target = root.dataset.parentOrigin || (fromHash && allowed.includes(fromHash) ? fromHash : '');
  const status = root.dataset.status;
  if (status && target && allowed.includes(target) && window.parent !== window) {
    const msg: FromChallenge = { type: 'cvvops:3ds-complete', transactionId: root.dataset.transactionId ?? '', status };
    window.parent.postMessage(msg, target);
  }
  document.querySelector<HTMLInputElement>('#code')?.focus();
  // Redirect mode (a whole page, not a frame): once finished, straight back to the shop (the link stays for a page without script).
  const back = document.querySelector<HTMLAnchorElement>('a[data-cvvops-3ds-back]');
  if (back && window.parent === window) location.replace(back.href);
  // Escape closes the SDK's overlay: keys pressed in this frame never reach the page around it, so it is told.
  if (target && allowed.includes(target) && window.parent !== window) {
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      const msg: FromChallenge = { type: 'cvvops:3ds-cancel', transactionId: root.dataset.transactionId ?? '' };
      window.parent.postMessage(msg, target);
    });
  }
}
