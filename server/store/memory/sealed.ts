import type { Sealed } from '../../types/shared.js';
import type { LongLivedKind, Mode, SealedItem, SealedStore } from '../store.js';
import type { Tables } from './tables.js';

const same = (a: Sealed, b: Sealed) => a.keyVersion === b.keyVersion && a.blob.equals(b.blob);
interface SealedProcessor {
  sealed: string;
  keyVersion: number;
  scope?: unknown;
}
const sealedProcessor = (p: unknown): SealedProcessor | null => {
  const x = p as Partial<SealedProcessor>;
  return typeof x.sealed === 'string' && typeof x.keyVersion === 'number' ? (x as SealedProcessor) : null;
};

export class MemorySealedStore implements SealedStore {
  constructor(private readonly t: Tables) {}

  async versionCounts(purposes?: readonly string[]): Promise<Array<{ purpose: string; version: number; count: number }>> {
    const t = this.t;
    const counts = new Map<string, number>();
    const add = (purpose: string, s: Sealed | null | undefined) => {
      if (s && (!purposes || purposes.includes(purpose))) counts.set(`${purpose}:${s.keyVersion}`, (counts.get(`${purpose}:${s.keyVersion}`) ?? 0) + 1);
    };
    for (const c of t.cards.values()) {
      add('card', c.numberSealed);
      add('card', c.holderSealed);
    }
    for (const c of t.cvc.values()) add('cvv', c.sealed);
    for (const k of t.signingKeys.values()) add('signing-key', k.privateSealed);
    for (const e of t.endpoints.values()) add('webhook-secret', e.secretSealed);
    for (const s of t.sessions.values()) add('replay', s.replay?.sealed);
    for (const c of t.charges.values()) add('replay', c.rec.responseSealed);
    for (const i of t.idempotency.values()) add('idempotency', i.responseSealed);
    for (const x of t.tds.values()) add('cavv', x.result?.cavvSealed);
    for (const s of t.settings.values()) {
      const p = sealedProcessor(s.processor);
      if (p) add('settings', { keyVersion: p.keyVersion, blob: Buffer.alloc(0) });
    }
    const kc = t.meta.get('key_check');
    if (kc) add('key-check', { keyVersion: (JSON.parse(kc) as { v: number }).v, blob: Buffer.alloc(0) });
    return [...counts].map(([k, count]) => {
      const i = k.lastIndexOf(':');
      return { purpose: k.slice(0, i), version: Number(k.slice(i + 1)), count };
    });
  }

  async listBelow(kind: LongLivedKind, version: number, limit: number): Promise<SealedItem[]> {
    const t = this.t;
    let out: SealedItem[];
    if (kind === 'cvv') {
      out = [...t.cvc.values()].map((c) => ({ kind, ref: c.id, merchantId: c.merchantId, mode: c.mode, scope: null, sealed: c.sealed }));
    } else if (kind === 'signing-key') {
      out = [...t.signingKeys.values()].map((k) => ({ kind, ref: k.kid, merchantId: null, mode: null, scope: null, sealed: k.privateSealed }));
    } else if (kind === 'webhook-secret') {
      out = [...t.endpoints.values()].map((e) => ({ kind, ref: e.id, merchantId: e.merchantId, mode: e.mode, scope: null, sealed: e.secretSealed }));
    } else {
      out = [...t.settings].flatMap(([key, s]) => {
        const p = sealedProcessor(s.processor);
        const [merchantId, mode] = key.split('|') as [string, Mode];
        return p
          ? [
              {
                kind,
                ref: key,
                merchantId,
                mode,
                scope: typeof p.scope === 'string' ? p.scope : null,
                sealed: { keyVersion: p.keyVersion, blob: Buffer.from(p.sealed, 'base64') },
              },
            ]
          : [];
      });
    }
    return out
      .filter((i) => i.sealed.keyVersion < version)
      .sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0))
      .slice(0, limit);
  }

  async reseal(item: SealedItem, next: Sealed): Promise<boolean> {
    const t = this.t;
    if (item.kind === 'signing-key') {
      const k = t.signingKeys.get(item.ref);
      if (!k || !same(k.privateSealed, item.sealed)) return false;
      t.signingKeys.set(item.ref, { ...k, privateSealed: next });
      return true;
    }
    if (item.kind === 'cvv') {
      const c = t.cvc.get(item.ref);
      if (!c || !same(c.sealed, item.sealed)) return false;
      t.cvc.set(item.ref, { ...c, sealed: next });
      return true;
    }
    if (item.kind === 'webhook-secret') {
      const e = t.endpoints.get(item.ref);
      if (!e || !same(e.secretSealed, item.sealed)) return false;
      t.endpoints.set(item.ref, { ...e, secretSealed: next });
      return true;
    }
    const s = t.settings.get(item.ref);
    const p = s ? sealedProcessor(s.processor) : null;
    if (!s || !p || !same({ keyVersion: p.keyVersion, blob: Buffer.from(p.sealed, 'base64') }, item.sealed)) return false;
    t.settings.set(item.ref, { ...s, processor: { ...s.processor, sealed: next.blob.toString('base64'), keyVersion: next.keyVersion } });
    return true;
  }
}
