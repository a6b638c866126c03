// cookie_token: slot = the cookie `settings.cookie` inside the Cookie header.
//
// 1. All Cookie headers are merged into the first one, joined with "; "
//    (RFC 6265 §5.4: a user agent sends one Cookie header).
// 2. The first pair named `settings.cookie` (names are case-sensitive) takes
//    the secret; later pairs of that name are dropped (the agent's stale
//    placeholders). Other pairs keep their text and order.
// 3. When no such pair exists it is appended; with no Cookie header at all
//    one is added.
import type { Credential } from "../policy/types.ts";
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

function cookieName(cred: Credential): string {
  const c = cred.settings.cookie;
  if (!c) throw new Error(`credential ${cred.ref}: cookie_token without a cookie setting`);
  return c;
}

/** The Cookie header's pairs after setting `name` to `value`. */
export function setCookiePair(cookieValues: string[], name: string, value: string): string {
  const out: string[] = [];
  let found = false;
  for (const v of cookieValues) {
    for (const raw of v.split(";")) {
      const pair = raw.trim();
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const n = (eq < 0 ? pair : pair.slice(0, eq)).trim();
      if (n !== name) {
        out.push(pair);
      } else if (!found) {
        found = true;
        out.push(`${name}=${value}`);
      }
    }
  }
  if (!found) out.push(`${name}=${value}`);
  return out.join("; ");
}

export const cookieToken: CredentialPlugin = {
  type: "cookie_token",
  inject(req, secret, cred) {
    const values: string[] = [];
    for (const [n, v] of req.headers) if (n.toLowerCase() === "cookie") values.push(v);
    setHeaderSlot(req.headers, "Cookie", setCookiePair(values, cookieName(cred), secret));
  },
  // Only cookie-octets (no ; , space, quote or backslash), so it can be stored
  // in a cookie jar as is.
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret, cred) => echoForms(secret, `${cookieName(cred)}=${secret}`),
};
