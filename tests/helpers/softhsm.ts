import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Where distributions put SoftHSM2's PKCS#11 library (Debian/Ubuntu `softhsm2`, Fedora, Homebrew). */
const LIBRARY_PATHS = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
  '/opt/homebrew/lib/softhsm/libsofthsm2.so',
];
const UTIL_PATHS = ['/usr/bin/softhsm2-util', '/usr/local/bin/softhsm2-util', '/opt/homebrew/bin/softhsm2-util'];
const MISSING = 'SoftHSM2 is missing: apt-get install -y softhsm2';

export interface SoftHsmToken {
  /** Path to libsofthsm2.so. */
  library: string;
  tokenLabel: string;
  /** The user PIN. */
  pin: string;
  /** The softhsm2.conf this token lives under (also in process.env.SOFTHSM2_CONF). */
  conf: string;
  /** The temporary directory holding the conf and the token. */
  dir: string;
  /** Deletes the token and restores SOFTHSM2_CONF. */
  cleanup(): void;
}

/**
 * A fresh, empty SoftHSM2 token in a temporary directory. SoftHSM2 reads SOFTHSM2_CONF when the library is
 * initialized (C_Initialize), so everything that had it initialized must have finalized it before a test makes
 * the next token. Throws (the test fails, it is not skipped) when SoftHSM2 is not installed.
 */
export function freshSoftHsmToken(opts: { label?: string; pin?: string; soPin?: string } = {}): SoftHsmToken {
  const library = LIBRARY_PATHS.find((p) => existsSync(p));
  const util = UTIL_PATHS.find((p) => existsSync(p));
  if (!library || !util) throw new Error(MISSING);
  const tokenLabel = opts.label ?? 'cvvops-test';
  const pin = opts.pin ?? '4711-test-pin';
  const soPin = opts.soPin ?? '0815-test-so-pin';
  const dir = mkdtempSync(join(tmpdir(), 'cvvops-softhsm-'));
  const conf = join(dir, 'softhsm2.conf');
  mkdirSync(join(dir, 'tokens'));
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const previous = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  const cleanup = () => {
    if (previous === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = previous;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    execFileSync(util, ['--init-token', '--free', '--label', tokenLabel, '--pin', pin, '--so-pin', soPin], {
      env: { ...process.env, SOFTHSM2_CONF: conf },
      stdio: 'pipe',
    });
  } catch (e) {
    cleanup();
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`softhsm2-util --init-token failed${stderr ? `: ${stderr}` : ''}`);
  }
  return { library, tokenLabel, pin, conf, dir, cleanup };
}
