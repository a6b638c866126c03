// passthrough: no slot. The agent's own credential passes through untouched,
// so there is no placeholder to hand out and no secret of ours to scrub.
import type { CredentialPlugin } from "./plugin.ts";

export const passthrough: CredentialPlugin = {
  type: "passthrough",
  inject() {},
  placeholder: () => "",
  revealingForms: () => [],
};
