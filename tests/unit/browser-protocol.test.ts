import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FONT_STACKS, safeTexts, safeTheme } from '../../public/src/protocol.js';

/** What a merchant page may pass to the hosted form (theme, texts): checked by the SDK and again inside the frame. */
describe('the hosted form takes only safe styling and text from the merchant page', () => {
  it('fonts come by name from a fixed list of system stacks; a font name, a URL or an unknown name is dropped', () => {
    assert.deepEqual(safeTheme({ '--cvvops-font-family': 'serif' }), { '--cvvops-font-family': FONT_STACKS.serif });
    for (const bad of ['Comic Sans MS', 'url(https://evil.example/f.woff)', 'constructor', '__proto__', 'system ', 42])
      assert.deepEqual(safeTheme({ '--cvvops-font-family': bad }), {}, String(bad));
    assert.deepEqual(safeTheme({ '--cvvops-accent': '#0a7d4f', '--cvvops-accent2': 'red', '--cvvops-text': 'url(x)' }), { '--cvvops-accent': '#0a7d4f' });
  });

  it('texts: label, placeholder and hint only, plain and short; controls and bidi overrides refused', () => {
    assert.deepEqual(safeTexts({ label: ' Card code ', placeholder: 'CVC', hint: 'On the back.', other: 'x' }), {
      label: 'Card code',
      placeholder: 'CVC',
      hint: 'On the back.',
    });
    assert.deepEqual(safeTexts({ label: 'a'.repeat(121) }), {});
    assert.deepEqual(safeTexts({ label: 'Pay\u202enow' }), {});
    assert.deepEqual(safeTexts({ label: 'line\nbreak' }), {});
    assert.deepEqual(safeTexts({ label: '   ' }), {});
    assert.deepEqual(safeTexts('label'), {});
    // Markup is text: the form sets it with textContent, so it shows as written and runs nothing.
    assert.deepEqual(safeTexts({ hint: '<img src=x onerror=alert(1)>' }), { hint: '<img src=x onerror=alert(1)>' });
  });
});
