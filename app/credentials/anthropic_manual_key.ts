// anthropic_manual_key: slot `x-api-key: <secret>`.
//
// Only x-api-key is touched. An `Authorization` header the agent sends (for
// instance an OAuth token of its own) is not this plugin's slot, so it passes
// as sent: rewriting or dropping it would make this plugin a second writer of
// the Authorization slot, which belongs to the bearer-shaped types. If that
// header carries a placeholder the upstream rejects it, which fails closed.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor, setHeaderSlot } from "./slot.ts";

export const anthropicManualKey: CredentialPlugin = {
  type: "anthropic_manual_key",
  inject(req, secret) {
    setHeaderSlot(req.headers, "x-api-key", secret);
  },
  // The `sk-ant-` shape that Anthropic clients (Claude Code, the SDKs) accept.
  placeholder: (cred) => placeholderFor("sk-ant-clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret),
};
