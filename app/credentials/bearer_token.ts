// bearer_token: slot `Authorization: Bearer <secret>` (RFC 6750 §2.1).
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

export const bearerToken: CredentialPlugin = {
  type: "bearer_token",
  inject(req, secret) {
    setHeaderSlot(req.headers, "Authorization", `Bearer ${secret}`);
  },
  // Hyphens, not a colon: token68 has no ':' and some clients check it.
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret, `Bearer ${secret}`),
};
