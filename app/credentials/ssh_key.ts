// ssh_key: an OpenSSH private key the gateway authenticates upstream with,
// as the credential's `user` (`passphrase_file` when it is encrypted). The
// agent never holds it: the gateway's SSH server accepts the agent's own
// (placeholder) key, and replays this one on the upstream connection. It has
// no HTTP slot; the loader only lets ssh endpoints use it.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor } from "./slot.ts";

/** Base64 lines shorter than this would mask unrelated text. */
const MIN_LINE = 24;

export const sshKey: CredentialPlugin = {
  type: "ssh_key",
  inject() {
    throw new Error("ssh_key has no HTTP slot (the loader keeps it to ssh endpoints)");
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  // The key whole, and each line of its body: a log that quotes part of it is masked too.
  revealingForms: (secret) => {
    const lines = secret.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length >= MIN_LINE && !l.startsWith("-----"));
    return echoForms(secret, ...lines);
  },
};
