// The checkout page's script (a module: top-level await works here). CvvOps comes from the SDK's <script> tag.
// README:start
const { token } = await (await fetch('/api/session', { method: 'POST' })).json();
const form = await CvvOps.mount('#cvv', { token });
const pay = document.querySelector('#pay');
const outcome = document.querySelector('#outcome');
form.on('change', ({ valid }) => (pay.disabled = !valid));
pay.addEventListener('click', async () => {
  pay.disabled = true;
  let failed = null;
  try {
    await form.collectCvv(); // the CVV, into the vault
    await form.threeDS(); // opens the challenge in an overlay when the card needs one
    await form.charge(); // through your processor, at most the session's amount
  } catch (err) {
    failed = err.code; // e.g. canceled: the shopper closed the verification
  }
  // Only your server can tell whether the shopper paid: it validates the last token with its API key.
  const res = await fetch('/api/paid', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: form.token }) });
  const { paid, reason } = await res.json();
  outcome.textContent = paid ? 'Paid.' : `Not paid: ${failed ?? reason}`;
});
// README:end
