import type { SigningKeyRecord, SigningKeyStore } from '../store.js';
import { pack, unpack, KyselyEngine } from './engine.js';

export class KyselySigningKeyStore implements SigningKeyStore {
  constructor(private readonly e: KyselyEngine) {}

  async insert(k: SigningKeyRecord): Promise<void> {
    await this.e.db
      .insertInto('signing_keys')
      .values({
        kid: k.kid,
        alg: k.alg,
        public_jwk: k.publicJwk,
        private_sealed: pack(k.privateSealed),
        key_version: k.privateSealed.keyVersion,
        created_at: k.createdAt,
        activated_at: k.activatedAt,
        retired_at: k.retiredAt,
      })
      .execute();
  }

  async list(): Promise<SigningKeyRecord[]> {
    const rows = await this.e.db.selectFrom('signing_keys').selectAll().orderBy('activated_at', 'desc').orderBy('created_at', 'desc').orderBy('kid').execute();
    return rows.map((r) => ({
      kid: r.kid,
      alg: r.alg,
      publicJwk: r.public_jwk,
      privateSealed: unpack(r.private_sealed),
      createdAt: Number(r.created_at),
      activatedAt: Number(r.activated_at),
      retiredAt: r.retired_at === null ? null : Number(r.retired_at),
    }));
  }

  async retireAllExcept(kid: string, now: number): Promise<void> {
    await this.e.db.updateTable('signing_keys').set({ retired_at: now }).where('kid', '!=', kid).where('retired_at', 'is', null).execute();
  }

  async deleteRetiredBefore(t: number): Promise<number> {
    const r = await this.e.db.deleteFrom('signing_keys').where('retired_at', 'is not', null).where('retired_at', '<', t).executeTakeFirst();
    return Number(r.numDeletedRows);
  }
}
