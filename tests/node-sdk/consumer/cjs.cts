// A consumer in CommonJS: resolves @cvvops/node's "require" condition (dist/cjs/index.d.ts).
import sdk = require('@cvvops/node');

const cvvops = new sdk.CvvOps('sk_live_x', { baseUrl: 'https://cvv.example' });

export async function check(token: string): Promise<sdk.SessionClaims | string> {
  try {
    return await cvvops.verifyToken(token);
  } catch (err) {
    if (err instanceof sdk.CvvOpsError && err.reason) return err.reason;
    throw err;
  }
}
