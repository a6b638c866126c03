// header_token: slot header `settings.header` = `settings.prefix` + secret.
import type { Credential } from "../policy/types.ts";
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

function headerName(cred: Credential): string {
  const h = cred.settings.header;
  // The loader requires `header`; reaching here without one is a bug.
  if (!h) throw new Error(`credential ${cred.ref}: header_token without a header setting`);
  return h;
}

export const headerToken: CredentialPlugin = {
  type: "header_token",
  inject(req, secret, cred) {
    setHeaderSlot(req.headers, headerName(cred), (cred.settings.prefix ?? "") + secret);
  },
  // The token part only: the agent's tool adds the prefix itself, if any.
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret, cred) => {
    const prefix = cred.settings.prefix ?? "";
    return prefix === "" ? echoForms(secret) : echoForms(secret, prefix + secret);
  },
};
