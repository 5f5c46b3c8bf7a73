import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
// sanitize-html's own parser (a dependency of it): the ground truth reads the HTML exactly as the sanitizer does.
import { DomUtils, parseDocument } from 'htmlparser2';
import { sanitizeForm } from '../../server/domain/forms.js';

/**
 * Security review, point 10: what the custom-form sanitizer reports as
 * removed (`sanitized: [{removed, count}]`, API.md section 7) is exactly what
 * it removed. The ground truth here does not trust the sanitizer: it parses
 * the input and the output and takes the difference. Every element of the
 * inputs carries a unique `id` (an allowed attribute), so an element of the
 * output is paired with the one it came from.
 *
 * The report's vocabulary: a removed element by its tag name (its
 * descendants are removed elements too, each counted); on an element that
 * stays, a removed attribute as `event-handler attribute` (on…), `javascript:
 * URL` (its value was one), `unknown data-cvvops marker`, or `<name>
 * attribute`; in the CSS, each construct taken out (`css url()`, `css
 * @import`, …).
 */
type Report = Array<{ removed: string; count: number }>;

const parse = (html: string) => DomUtils.findAll(() => true, parseDocument(html, { decodeEntities: true }).children);

function attributeCategory(name: string, value: string): string {
  if (/^on/i.test(name)) return 'event-handler attribute';
  if (/^javascript:/i.test(value.replace(/[\u0000-\u0020]/g, ''))) return 'javascript: URL';
  if (name === 'data-cvvops') return 'unknown data-cvvops marker';
  return `${name} attribute`;
}

/** What was removed, from the input and the output alone. */
function actualDifference(input: string, output: string): Report {
  const before = parse(input);
  const ids = before.map((e) => e.attribs.id);
  assert.ok(
    ids.every((id) => id),
    `test input: every element needs an id: ${before
      .filter((e) => !e.attribs.id)
      .map((e) => e.name)
      .join(', ')}`,
  );
  assert.equal(new Set(ids).size, ids.length, 'test input: ids are unique');
  const after = new Map(parse(output).map((e) => [e.attribs.id, e]));
  const counts = new Map<string, number>();
  const add = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);
  for (const el of before) {
    const kept = after.get(el.attribs.id);
    if (!kept) {
      add(el.name);
      continue;
    }
    assert.equal(kept.name, el.name, 'an element keeps its tag');
    for (const [name, value] of Object.entries(el.attribs)) if (!(name in kept.attribs)) add(attributeCategory(name, value));
  }
  return sorted([...counts].map(([removed, count]) => ({ removed, count })));
}

const sorted = (r: Report): Report => [...r].sort((a, b) => a.removed.localeCompare(b.removed));
const htmlPart = (r: Report): Report => sorted(r.filter((x) => !x.removed.startsWith('css ') && x.removed !== 'markup in css'));

const HOSTILE: Array<[string, string]> = [
  [
    'nested scripts',
    '<div id="a"><script id="s1">document.write("<script>alert(1)<\\/script>")</script><scr<script id="s2">ipt>alert(2)</script></div><input id="c" data-cvvops="cvv">',
  ],
  [
    'a script inside an svg (and an allowed tag inside it)',
    '<svg id="v" onload="alert(1)"><script id="s">alert(1)</script><div id="d" onclick="x()">y</div><a id="l" href="javascript:alert(1)">z</a></svg><input id="c" data-cvvops="cvv">',
  ],
  [
    'attributes removed, tags kept',
    '<img id="i" src="data:image/png;base64,AAAA" onerror="alert(1)" style="x"><input id="c" data-cvvops="cvv" name="cvv" ONFOCUS="alert(1)" form="f"><button id="b" type="submit" formaction="javascript:alert(1)" data-cvvops="submit">Pay</button>',
  ],
  [
    'a link and a form, dropped with their attributes; their children stay',
    '<a id="l" href="javascript:alert(1)" onclick="x()"><span id="s" onmouseover="y()">hi</span></a><form id="f" action="https://evil.example/" method="get"><input id="c" data-cvvops="cvv"></form>',
  ],
  [
    'what is kept is not reported',
    '<div id="d" title="javascript: is what they teach" class="k" data-cvvops="message"></div><input id="c" data-cvvops="cvv" type="email" placeholder="CVV"><img id="i" src="data:image/svg+xml;base64,PHN2Zy8+" alt="logo">',
  ],
  [
    'an unknown marker, an external image, an empty attribute',
    '<p id="p" data-cvvops="steal">x</p><img id="i" src="https://evil.example/p.gif"><img id="j"><input id="c" data-cvvops="cvv" placeholder="">',
  ],
  [
    'iframes, objects, templates, math, noscript, style, textarea',
    '<iframe id="f" src="https://evil.example/"><p id="p">x</p></iframe><object id="o" data="x"><embed id="e" src="y"></object><template id="t"><img id="i" src="x" onerror="z()"></template><math id="m"><mi id="mi">x</mi></math><noscript id="n"><p id="np">n</p></noscript><style id="st">input{}</style><textarea id="ta"><b>x</b></textarea><input id="c" data-cvvops="cvv">',
  ],
  [
    'messy markup: unclosed and stray tags, upper case, entities, duplicates',
    '<DIV id="a" ONCLICK="x()" onclick="y()"><span id="b" data-x="&#106;ava&#x09;script:alert(1)" value="1">t</div></span><SCRIPT id="s">x</SCRIPT><img id="i" src=" javascript:alert(1)"><br id="br" clear="all"><input id="c" data-cvvops="cvv" value="123" autofocus>',
  ],
];

describe('the custom-form sanitizer reports exactly what it removed', () => {
  for (const [what, html] of HOSTILE) {
    it(what, () => {
      const s = sanitizeForm(html, '');
      assert.deepEqual(htmlPart(s.sanitized), actualDifference(html, s.html), `report for: ${html}\noutput: ${s.html}`);
      // No zero or negative counts, no duplicate entries.
      assert.ok(s.sanitized.every((r) => Number.isInteger(r.count) && r.count > 0));
      assert.equal(new Set(s.sanitized.map((r) => r.removed)).size, s.sanitized.length);
    });
  }

  it('a clean form reports nothing', () => {
    const s = sanitizeForm(
      '<label id="l" for="c" data-cvvops="label">Code</label><input id="c" data-cvvops="cvv" type="text" maxlength="4"><button id="b" type="button" data-cvvops="submit">Pay</button><p id="m" data-cvvops="message"></p>',
      '.x { color: red }',
    );
    assert.deepEqual(s.sanitized, []);
  });

  it('no named field survives (a native submission would carry it): the name is reported as removed', () => {
    const s = sanitizeForm('<input id="c" name="cvv" data-cvvops="cvv"><input id="o" name="other">', '');
    assert.doesNotMatch(s.html, /\sname=/);
    assert.deepEqual(s.sanitized, [{ removed: 'name attribute', count: 2 }]);
  });

  it('the CSS report counts each construct taken out, and none is left', () => {
    const css = [
      '.a{background:url(https://evil.example/1)}',
      '.b{background-image:URL( "https://evil.example/2" )}',
      '@import url(https://evil.example/i.css);',
      '@import "https://evil.example/j.css";',
      '@font-face{font-family:x;src:url(https://evil.example/f.woff)}',
      '.c{content:"\\75 rl(x)"}',
      '.d{background:image-set("https://evil.example/3.png" 1x)}',
      '</style><script>alert(1)</script>',
    ].join('\n');
    const s = sanitizeForm('<input id="c" data-cvvops="cvv">', css);
    assert.doesNotMatch(s.css, /url\s*\(|@import|@font-face|image-set|\\|<|>/i);
    const report = Object.fromEntries(s.sanitized.map((r) => [r.removed, r.count]));
    assert.deepEqual(report, {
      'css url()': 2,
      'css @import': 2,
      'css @font-face': 1,
      'css escape': 1,
      'css image-set()': 1,
      'markup in css': 3,
    });
  });
});
