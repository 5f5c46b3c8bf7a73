import { Secret } from '../secret.js';
import type { Store } from '../store/store.js';
import type { Keyring } from './keyring.js';
import type { MerchantService } from './merchants.js';

/**
 * The test-mode demo merchant (CVVOPS_DEMO): created once, its test key kept
 * encrypted so it can be printed at every start and used by /demo.
 */
export async function ensureDemoMerchant(
  store: Store,
  keyring: Keyring,
  merchants: MerchantService,
  origins: string[],
): Promise<{ merchantId: string; testKey: Secret<string> }> {
  const existing = await store.getMeta('demo_merchant');
  if (existing) {
    const { merchantId, sealed } = JSON.parse(existing) as { merchantId: string; sealed: string };
    const key = keyring.open('demo', { keyVersion: 1, blob: Buffer.from(sealed, 'base64') }, `demo|${merchantId}`).toString('utf8');
    return { merchantId, testKey: new Secret(key) };
  }
  const { merchant, testKey } = await merchants.create({ name: 'Demo shop', origins });
  const sealed = keyring.seal('demo', testKey.expose(), `demo|${merchant.id}`);
  const stored = await store.putMetaIfAbsent('demo_merchant', JSON.stringify({ merchantId: merchant.id, sealed: sealed.blob.toString('base64') }));
  if ((JSON.parse(stored) as { merchantId?: string }).merchantId !== merchant.id) return ensureDemoMerchant(store, keyring, merchants, origins);
  return { merchantId: merchant.id, testKey };
}
