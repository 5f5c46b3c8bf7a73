import sanitizeHtml from 'sanitize-html';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CustomFormRecord, Mode, Store } from '../store/store.js';
import { type Clock, isoTime } from './clock.js';
import { newId } from './ids.js';

export interface Removed {
  removed: string;
  count: number;
}

const TAGS = [
  'div',
  'span',
  'p',
  'label',
  'input',
  'button',
  'fieldset',
  'legend',
  'h1',
  'h2',
  'h3',
  'h4',
  'strong',
  'em',
  'small',
  'br',
  'img',
  'ul',
  'ol',
  'li',
  'section',
  'header',
  'footer',
];
const GLOBAL_ATTRS = [
  'class',
  'id',
  'data-cvvops',
  'role',
  'title',
  'lang',
  'dir',
  'aria-label',
  'aria-describedby',
  'aria-labelledby',
  'aria-live',
  'aria-hidden',
];
const TAG_ATTRS: Record<string, string[]> = {
  input: ['type', 'placeholder', 'maxlength', 'inputmode', 'autocomplete'],
  label: ['for'],
  button: ['type'],
  img: ['src', 'alt', 'width', 'height'],
};
const MARKERS = new Set(['cvv', 'submit', 'message', 'label', 'hint', 'toggle']);
/** Images only as data: URIs (no request leaves the page); an img without one is removed. */
const DATA_IMAGE = /^data:image\//i;
// Tags whose content goes with them when they are removed (sanitize-html's nonTextTags).
const NON_TEXT_TAGS = ['script', 'style', 'textarea', 'option', 'noscript', 'template', 'iframe', 'object', 'embed', 'svg', 'math', 'xmp'];

/** The report's name for an attribute removed from an element that stays. */
function attributeRemoved(name: string, value: string): string {
  if (/^on/i.test(name)) return 'event-handler attribute';
  // As a browser reads a URL: C0 controls and spaces around and inside the scheme do not count.
  if (/^javascript:/i.test(value.replace(/[\u0000-\u0020]/g, ''))) return 'javascript: URL';
  if (name === 'data-cvvops') return 'unknown data-cvvops marker';
  return `${name} attribute`;
}

/**
 * Custom forms: merchant HTML and CSS, sanitized with an allowlist
 * (sanitize-html): no script, no event handlers, no javascript: URLs, no
 * external resources (images only as data: URIs; CSS without url(), @import
 * or escapes), no form of its own and no named field (the page's form never
 * submits the CVV natively: views/custom-form.ejs), served under a CSP with
 * only our nonce'd runtime.
 *
 * The report (`sanitized`) says what was removed, and nothing else: it is
 * taken from what sanitize-html did, not from what we expect it to do.
 * - Elements: every element the parser opened, minus those in the output, by
 *   tag name. An element removed with its content (svg, script, template…)
 *   takes its descendants with it, and each of them counts (a script in an
 *   svg is a removed script). The attributes of a removed element are gone
 *   with it and are not counted again.
 * - Attributes: on each element that stays, those it came in with and left
 *   without (sanitize-html deletes refused attributes from the very object
 *   our transform hands it, which exclusiveFilter sees when the element
 *   closes). A value that is changed, not removed (an input's type made
 *   password), is not reported.
 * - CSS: each construct taken out (sanitizeCss).
 * Comments and doctype-like declarations, which never reach the page, are
 * dropped without a report.
 */
export function sanitizeForm(html: string, css: string): { html: string; css: string; sanitized: Removed[] } {
  const removed = new Map<string, number>();
  const note = (what: string, n = 1) => removed.set(what, (removed.get(what) ?? 0) + n);
  /** Every element the parser opened, by tag, including those inside removed elements. */
  const opened = new Map<string, number>();
  /** The attributes object handed to sanitize-html for an element → its order and the attributes it came with. */
  const handed = new WeakMap<Record<string, string>, { order: number; original: Record<string, string> }>();
  let order = 0;
  /** Elements in the output: tag, attributes before and after. */
  let kept: Array<{ order: number; tag: string; original: Record<string, string>; final: Record<string, string> }> = [];

  const clean = sanitizeHtml(html, {
    allowedTags: TAGS,
    allowedAttributes: { '*': GLOBAL_ATTRS, ...TAG_ATTRS },
    allowedSchemes: [],
    allowedSchemesByTag: { img: ['data'] },
    allowProtocolRelative: false,
    disallowedTagsMode: 'discard',
    nonTextTags: NON_TEXT_TAGS,
    onOpenTag: (tag) => {
      opened.set(tag, (opened.get(tag) ?? 0) + 1);
    },
    // Runs for every element outside a removed element's content, before sanitize-html's own attribute filter.
    transformTags: {
      '*': (tagName, attribs) => {
        const out: Record<string, string> = { ...attribs };
        if (out['data-cvvops'] !== undefined && !MARKERS.has(out['data-cvvops'])) delete out['data-cvvops'];
        if (tagName === 'input') out.type = attribs.type === 'text' ? 'text' : 'password';
        if (tagName === 'button') out.type = attribs.type === 'submit' ? 'submit' : 'button';
        handed.set(out, { order: order++, original: { ...attribs } });
        return { tagName, attribs: out };
      },
    },
    // Called when an allowed element closes, with its attributes as they will be written out.
    exclusiveFilter: (frame) => {
      const h = handed.get(frame.attribs);
      const drop = frame.tag === 'img' && !DATA_IMAGE.test(frame.attribs.src ?? '');
      if (drop) {
        // Its descendants (none for a void img, but the rule is general) go with it.
        if (h) kept = kept.filter((k) => k.order < h.order);
      } else if (h) {
        kept.push({ order: h.order, tag: frame.tag, original: h.original, final: { ...frame.attribs } });
      }
      return drop;
    },
  });

  const keptByTag = new Map<string, number>();
  for (const k of kept) keptByTag.set(k.tag, (keptByTag.get(k.tag) ?? 0) + 1);
  for (const [tag, n] of opened) {
    const gone = n - (keptByTag.get(tag) ?? 0);
    if (gone > 0) note(tag, gone);
  }
  for (const k of kept) {
    for (const [name, value] of Object.entries(k.original)) if (!Object.hasOwn(k.final, name)) note(attributeRemoved(name, value));
  }
  const cssOut = sanitizeCss(css, note);
  return { html: clean, css: cssOut, sanitized: [...removed].map(([what, count]) => ({ removed: what, count })) };
}

/** CSS without any way to load, exfiltrate or break out: no url(), @import, @font-face, escapes, expressions or markup. */
function sanitizeCss(css: string, note: (what: string) => void): string {
  let out = css;
  const drop = (re: RegExp, what: string, repl = '') => {
    out = out.replace(re, () => {
      note(what);
      return repl;
    });
  };
  drop(/<\/?[a-z!][^>]*>?/gi, 'markup in css');
  drop(/[<>]/g, 'markup in css');
  drop(/\\/g, 'css escape');
  drop(/@import[^;]*;?/gi, 'css @import');
  drop(/@font-face\s*\{[^}]*\}/gi, 'css @font-face');
  drop(/@namespace[^;]*;?/gi, 'css @namespace');
  drop(/url\s*\([^)]*\)?/gi, 'css url()', 'none');
  drop(/image-set\s*\([^)]*\)?/gi, 'css image-set()', 'none');
  drop(/expression\s*\([^)]*\)?/gi, 'css expression()');
  drop(/(-moz-binding|behavior)\s*:[^;}]*/gi, 'css binding');
  return out;
}

export class FormService {
  constructor(
    private readonly store: Pick<Store, 'forms'>,
    private readonly clock: Clock,
    private readonly opts: { publicBaseUrl: string; log?: Logger },
  ) {}

  view(f: CustomFormRecord, sanitized?: Removed[]) {
    return {
      id: f.id,
      name: f.name,
      html: f.html,
      css: f.css,
      previewUrl: `${this.opts.publicBaseUrl}/hosted/forms/${f.id}`,
      createdAt: isoTime(f.createdAt),
      updatedAt: isoTime(f.updatedAt),
      ...(sanitized ? { sanitized } : {}),
    };
  }

  async create(merchantId: string, mode: Mode, p: { name: string; html: string; css?: string }) {
    const s = sanitizeForm(p.html, p.css ?? '');
    if (!/data-cvvops="cvv"/.test(s.html)) throw new AppError('invalid_request', 'The form must mark its CVV field with data-cvvops="cvv".');
    const now = this.clock.now();
    const f: CustomFormRecord = { id: newId('frm'), merchantId, mode, name: p.name, html: s.html, css: s.css, createdAt: now, updatedAt: now };
    await this.store.forms.insert(f);
    this.opts.log?.info({ audit: true, event: 'custom_form.created', merchantId, form: f.id, sanitized: s.sanitized }, 'custom form stored');
    return this.view(f, s.sanitized);
  }

  /** The merchant's forms in this mode. */
  list(merchantId: string, mode: Mode): Promise<CustomFormRecord[]> {
    return this.store.forms.list(merchantId, mode);
  }

  /** A form by its id alone (its page, /hosted/forms/{id}, is public: the id is in the URL), or null. */
  byId(id: string): Promise<CustomFormRecord | null> {
    return this.store.forms.get(id);
  }

  async get(merchantId: string, mode: Mode, id: string): Promise<CustomFormRecord> {
    const f = await this.store.forms.get(id);
    if (!f || f.merchantId !== merchantId || f.mode !== mode) throw new AppError('not_found', 'No such custom form.');
    return f;
  }

  async update(merchantId: string, mode: Mode, id: string, p: { name: string; html: string; css?: string }) {
    await this.get(merchantId, mode, id);
    const s = sanitizeForm(p.html, p.css ?? '');
    if (!/data-cvvops="cvv"/.test(s.html)) throw new AppError('invalid_request', 'The form must mark its CVV field with data-cvvops="cvv".');
    await this.store.forms.update(merchantId, mode, id, { name: p.name, html: s.html, css: s.css, now: this.clock.now() });
    this.opts.log?.info({ audit: true, event: 'custom_form.updated', merchantId, form: id, sanitized: s.sanitized }, 'custom form updated');
    return this.view(await this.get(merchantId, mode, id), s.sanitized);
  }

  async delete(merchantId: string, mode: Mode, id: string): Promise<void> {
    if (!(await this.store.forms.delete(merchantId, mode, id))) throw new AppError('not_found', 'No such custom form.');
  }
}
