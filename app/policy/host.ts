// Host names as the policy compares them.

/** `API.GitHub.com.:443` -> `api.github.com`; `[::1]:443` -> `::1`. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const close = h.indexOf("]");
    return close > 0 ? h.slice(1, close) : h;
  }
  const colon = h.lastIndexOf(":");
  // One colon is host:port; more than one is a bare IPv6 address.
  if (colon >= 0 && h.indexOf(":") === colon) h = h.slice(0, colon);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}
