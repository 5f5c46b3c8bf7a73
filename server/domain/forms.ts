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

const TAGS = ['div', 'span', 'p', 'label', 'input', 'button', 'fieldset', 'legend', 'h1', 'h2', 'h3', 'h4', 'strong', 'em', 'small', 'br', 'img', 'ul', 'ol', 'li', 'section', 'header', 'footer'];
const GLOBAL_ATTRS = ['class', 'id', 'data-cvvops', 'role', 'title', 'lang', 'dir', 'aria-label', 'aria-describedby', 'aria-labelledby', 'aria-live', 'aria-hidden'];
const TAG_ATTRS: Record<string, string[]> = {
  input: ['type', 'name', 'placeholder', 'maxlength', 'inputmode', 'autocomplete'],
  label: ['for'],
  button: ['type'],
  img: ['src', 'alt', 'width', 'height'],
};
const MARKERS = new Set(['cvv', 'submit', 'message', 'label', 'hint', 'toggle']);

/**
 * Custom forms: merchant HTML and CSS, sanitized with an allowlist
 * (sanitize-html): no script, no event handlers, no javascript: URLs, no
 * external resources (images only as data: URIs; CSS without url(), @import
 * or escapes), served under a CSP with only our nonce'd runtime.
 */
export function sanitizeForm(html: string, css: string): { html: string; css: string; sanitized: Removed[] } {
  const removed = new Map<string, number>();
  const note = (what: string) => removed.set(what, (removed.get(what) ?? 0) + 1);
  const clean = sanitizeHtml(html, {
    allowedTags: TAGS,
    allowedAttributes: { '*': GLOBAL_ATTRS, ...TAG_ATTRS },
    allowedSchemes: [],
    allowedSchemesByTag: { img: ['data'] },
    allowProtocolRelative: false,
    disallowedTagsMode: 'discard',
    nonTextTags: ['script', 'style', 'textarea', 'option', 'noscript', 'template', 'iframe', 'object', 'embed', 'svg', 'math'],
    onOpenTag: (tag, attribs) => {
      if (!TAGS.includes(tag)) note(tag);
      for (const [name, value] of Object.entries(attribs)) {
        const ok = GLOBAL_ATTRS.includes(name) || (TAG_ATTRS[tag] ?? []).includes(name);
        if (!ok) note(/^on/i.test(name) ? 'event-handler attribute' : `${name} attribute`);
        else if (name === 'src' && !/^data:image\/(png|gif|jpeg|webp);base64,/i.test(value)) note('external resource');
        else if (name === 'data-cvvops' && !MARKERS.has(value)) note('unknown data-cvvops marker');
      }
      if (/javascript:/i.test(Object.values(attribs).join(' '))) note('javascript: URL');
    },
    transformTags: {
      input: (tagName, attribs) => ({ tagName, attribs: { ...attribs, type: attribs.type === 'text' ? 'text' : 'password' } }),
      button: (tagName, attribs) => ({ tagName, attribs: { ...attribs, type: attribs.type === 'submit' ? 'submit' : 'button' } }),
    },
    exclusiveFilter: (frame) => frame.tag === 'img' && !/^data:image\//i.test(frame.attribs.src ?? ''),
  });
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
  constructor(private readonly store: Store, private readonly clock: Clock, private readonly opts: { publicBaseUrl: string; log?: Logger }) {}

  view(f: CustomFormRecord, sanitized?: Removed[]) {
    return {
      id: f.id, name: f.name, html: f.html, css: f.css, previewUrl: `${this.opts.publicBaseUrl}/hosted/forms/${f.id}`,
      createdAt: isoTime(f.createdAt), updatedAt: isoTime(f.updatedAt), ...(sanitized ? { sanitized } : {}),
    };
  }

  async create(merchantId: string, mode: Mode, p: { name: string; html: string; css?: string }) {
    const s = sanitizeForm(p.html, p.css ?? '');
    if (!/data-cvvops="cvv"/.test(s.html)) throw new AppError('invalid_request', 'The form must mark its CVV field with data-cvvops="cvv".');
    const now = this.clock.now();
    const f: CustomFormRecord = { id: newId('frm'), merchantId, mode, name: p.name, html: s.html, css: s.css, createdAt: now, updatedAt: now };
    await this.store.insertCustomForm(f);
    this.opts.log?.info({ audit: true, event: 'custom_form.created', merchantId, form: f.id, sanitized: s.sanitized }, 'custom form stored');
    return this.view(f, s.sanitized);
  }

  async get(merchantId: string, mode: Mode, id: string): Promise<CustomFormRecord> {
    const f = await this.store.getCustomForm(id);
    if (!f || f.merchantId !== merchantId || f.mode !== mode) throw new AppError('not_found', 'No such custom form.');
    return f;
  }

  async update(merchantId: string, mode: Mode, id: string, p: { name: string; html: string; css?: string }) {
    await this.get(merchantId, mode, id);
    const s = sanitizeForm(p.html, p.css ?? '');
    if (!/data-cvvops="cvv"/.test(s.html)) throw new AppError('invalid_request', 'The form must mark its CVV field with data-cvvops="cvv".');
    await this.store.updateCustomForm(merchantId, mode, id, { name: p.name, html: s.html, css: s.css, now: this.clock.now() });
    this.opts.log?.info({ audit: true, event: 'custom_form.updated', merchantId, form: id, sanitized: s.sanitized }, 'custom form updated');
    return this.view(await this.get(merchantId, mode, id), s.sanitized);
  }

  async delete(merchantId: string, mode: Mode, id: string): Promise<void> {
    if (!(await this.store.deleteCustomForm(merchantId, mode, id))) throw new AppError('not_found', 'No such custom form.');
  }
}
