// basic_auth: slot `Authorization: Basic base64(username:password)`
// (RFC 7617). With a `username` setting the secret is the password; without
// one the secret is the whole `user:password` pair.
import type { Credential } from "../policy/types.ts";
import type { CredentialPlugin } from "./plugin.ts";
import { base64, echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

function userPass(secret: string, cred: Credential): string {
  const user = cred.settings.username;
  return user === undefined ? secret : `${user}:${secret}`;
}

export const basicAuth: CredentialPlugin = {
  type: "basic_auth",
  inject(req, secret, cred) {
    setHeaderSlot(req.headers, "Authorization", `Basic ${base64(userPass(secret, cred))}`);
  },
  // With a username the device gets a password placeholder; without one it
  // gets a `user:password` pair whose user names the placeholder.
  placeholder: (cred) =>
    cred.settings.username === undefined
      ? placeholderFor("clawpatrol-placeholder:", cred.name)
      : placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret, cred) => {
    const pair = userPass(secret, cred);
    const encoded = base64(pair);
    // Without a username the password half alone is still a secret; the
    // username half is not (it is usually public).
    const colon = secret.indexOf(":");
    const password = cred.settings.username === undefined && colon >= 0 ? secret.slice(colon + 1) : secret;
    return echoForms(password, pair, encoded, `Basic ${encoded}`);
  },
};
