// gemini_api_key: slot `x-goog-api-key: <secret>`, plus its URL form: when
// the request target carries a `key=` query parameter (the other way the
// Gemini API takes a key), its value is replaced with the URL-encoded secret.
// Like a header slot, a repeated `key` parameter keeps its first position and
// loses its duplicates. Without a `key` parameter the target is untouched.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

function isKeyParam(name: string): boolean {
  if (name === "key") return true;
  if (!name.includes("%")) return false;
  try {
    return decodeURIComponent(name) === "key";
  } catch {
    return false;
  }
}

/** `target` with its `key` query parameter set to `value` (URL-encoded), if it has one. */
export function replaceKeyParam(target: string, value: string): string {
  const q = target.indexOf("?");
  if (q < 0) return target;
  const params = target.slice(q + 1).split("&");
  const out: string[] = [];
  let found = false;
  for (const p of params) {
    const eq = p.indexOf("=");
    const name = eq < 0 ? p : p.slice(0, eq);
    if (!isKeyParam(name)) out.push(p);
    else if (!found) {
      found = true;
      out.push(`${name}=${encodeURIComponent(value)}`);
    }
  }
  return found ? `${target.slice(0, q)}?${out.join("&")}` : target;
}

export const geminiApiKey: CredentialPlugin = {
  type: "gemini_api_key",
  inject(req, secret) {
    setHeaderSlot(req.headers, "x-goog-api-key", secret);
    req.target = replaceKeyParam(req.target, secret);
  },
  // The `AIza` start of a Google API key, for clients that look at it.
  placeholder: (cred) => placeholderFor("AIza-clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret),
};
