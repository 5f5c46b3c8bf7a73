import type { Logger } from '../log.js';
import type { MetaStore, SigningKeyStore } from '../store/store.js';
import type { Keyring } from './keyring.js';
import { KeyProviderError } from './key-provider.js';

/** The master key does not open what this database holds: the server must not start with it. */
export class MasterKeyMismatch extends KeyProviderError {
  constructor() {
    super(
      'CVVOPS_MASTER_KEY is not the key this database was created with: it cannot open what the database holds ' +
        '(cards, signing keys, processor settings). Start with the right key (from your secret store or its backup); ' +
        'nothing was changed.',
    );
    this.name = 'MasterKeyMismatch';
  }
}

const NAME = 'key_check';
const AAD = 'cvvops/key-check';
const TEXT = 'cvvops key check';

/**
 * The key check at start: a wrong master key stops the server with one clear message, before it answers
 * anything, instead of failing at the first decryption (a 500 on the first card, or tokens that never verify).
 * The database keeps a value sealed with the key it was first used with; a database from before the check
 * is tested with its newest signing key, then given the value.
 */
export async function checkMasterKey(store: { meta: MetaStore; signingKeys: SigningKeyStore }, keyring: Keyring, log?: Logger): Promise<void> {
  const opens = (stored: string): boolean => {
    try {
      const { v, b } = JSON.parse(stored) as { v: number; b: string };
      return keyring.open('key-check', { keyVersion: v, blob: Buffer.from(b, 'base64') }, AAD).toString('utf8') === TEXT;
    } catch {
      return false;
    }
  };
  const refuse = (what: string): never => {
    log?.error({ audit: true, event: 'key.unwrap_failed', what }, 'the master key does not open this database');
    throw new MasterKeyMismatch();
  };
  const existing = await store.meta.get(NAME);
  if (existing !== null) {
    if (!opens(existing)) refuse('key check');
    return;
  }
  const newest = (await store.signingKeys.list()).sort((a, b) => b.activatedAt - a.activatedAt)[0];
  if (newest) {
    try {
      keyring.open('signing-key', newest.privateSealed, `signing-key|${newest.kid}`);
    } catch {
      refuse('signing key');
    }
  }
  const sealed = keyring.seal('key-check', TEXT, AAD);
  const stored = await store.meta.putIfAbsent(NAME, JSON.stringify({ v: sealed.keyVersion, b: sealed.blob.toString('base64') }));
  // Another instance started first, perhaps with another key: its value decides.
  if (!opens(stored)) refuse('key check');
}
