// ssh_password: the password the gateway authenticates upstream with, as the
// credential's `user` (SSH password or keyboard-interactive). The agent's own
// authentication is answered by the gateway, so it never needs it. No HTTP
// slot; the loader only lets ssh endpoints use it.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor } from "./slot.ts";

export const sshPassword: CredentialPlugin = {
  type: "ssh_password",
  inject() {
    throw new Error("ssh_password has no HTTP slot (the loader keeps it to ssh endpoints)");
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret),
};
