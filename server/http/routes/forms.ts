import type { Deps } from '../../deps.js';
import type { Api } from '../api.js';
import { CustomForm, CustomFormBody, z } from '../schemas.js';

/** Section 7: custom forms, for the merchant's server. */
export function formRoutes(api: Api, d: Pick<Deps, 'forms'>): void {
  api.add({
    method: 'post',
    path: '/CustomForms',
    description:
      'Stores a custom CVV form: your HTML and CSS, sanitized (scripts, event handlers, external URLs and @import removed; what was removed is reported) and served from this server under a strict CSP, with our runtime doing the work. The HTML must mark its CVV field with `data-cvvops="cvv"`.',
    tag: 'Custom forms',
    auth: 'merchant',
    summary: 'Store a custom CVV form (sanitized; what was removed is reported)',
    body: CustomFormBody,
    responses: { 201: { description: 'The stored form.', schema: CustomForm } },
    handler: async (_req, res, { merchant, body }) => {
      res.status(201).json(await d.forms.create(merchant.merchant.id, merchant.mode, body));
    },
  });
  api.add({
    method: 'get',
    path: '/CustomForms',
    description: "Your custom forms in the calling key's mode.",
    tag: 'Custom forms',
    auth: 'merchant',
    summary: "The merchant's custom forms",
    responses: { 200: { description: 'The forms.', schema: z.object({ data: z.array(CustomForm) }) } },
    handler: async (_req, res, { merchant }) => {
      res.json({ data: (await d.forms.list(merchant.merchant.id, merchant.mode)).map((f) => d.forms.view(f)) });
    },
  });
  api.add({
    method: 'get',
    path: '/CustomForms/{id}',
    description: 'One custom form, as stored (sanitized).',
    tag: 'Custom forms',
    auth: 'merchant',
    summary: 'One custom form',
    responses: { 200: { description: 'The form.', schema: CustomForm } },
    handler: async (_req, res, { merchant, params }) => {
      res.json(d.forms.view(await d.forms.get(merchant.merchant.id, merchant.mode, params.id!)));
    },
  });
  api.add({
    method: 'put',
    path: '/CustomForms/{id}',
    description: "Replaces a custom form's name, HTML and CSS (sanitized again). Sessions created with it use the new version from now on.",
    tag: 'Custom forms',
    auth: 'merchant',
    summary: 'Replace a custom form',
    body: CustomFormBody,
    responses: { 200: { description: 'The form as stored.', schema: CustomForm } },
    handler: async (_req, res, { merchant, params, body }) => {
      res.json(await d.forms.update(merchant.merchant.id, merchant.mode, params.id!, body));
    },
  });
  api.add({
    method: 'delete',
    path: '/CustomForms/{id}',
    description: 'Deletes a custom form. Sessions that name it can no longer load it.',
    tag: 'Custom forms',
    auth: 'merchant',
    summary: 'Delete a custom form',
    responses: { 204: { description: 'Deleted.' } },
    handler: async (_req, res, { merchant, params }) => {
      await d.forms.delete(merchant.merchant.id, merchant.mode, params.id!);
      res.status(204).end();
    },
  });
}
