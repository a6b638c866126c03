// openai_api_key: slot `Authorization: Bearer <secret>`, as the OpenAI API
// expects. Same slot as bearer_token; a separate type so the placeholder has
// the `sk-` shape OpenAI SDKs accept without complaint.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

export const openaiApiKey: CredentialPlugin = {
  type: "openai_api_key",
  inject(req, secret) {
    setHeaderSlot(req.headers, "Authorization", `Bearer ${secret}`);
  },
  placeholder: (cred) => placeholderFor("sk-clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret, `Bearer ${secret}`),
};
