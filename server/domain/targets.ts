/**
 * Whether an outbound URL is within a merchant's allowed targets: the same
 * origin as an entry, and a path under the entry's path. Entries are https
 * URLs like `https://psp.example/v1/` (or just an origin for the whole host).
 */
export function targetAllowed(url: string, allowed: readonly string[]): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return allowed.some((entry) => {
    let a: URL;
    try {
      a = new URL(entry);
    } catch {
      return false;
    }
    if (a.origin !== u.origin) return false;
    const base = a.pathname.endsWith('/') ? a.pathname : `${a.pathname}/`;
    return a.pathname === '/' || u.pathname === a.pathname || u.pathname.startsWith(base);
  });
}
