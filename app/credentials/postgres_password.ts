// postgres_password: the password the gateway authenticates to PostgreSQL
// with, as the credential's `user` (SCRAM-SHA-256, or md5/cleartext where the
// endpoint allows). The agent never needs it: the gateway answers the agent's
// authentication itself, so its placeholder is only what the agent may type.
// It has no HTTP slot; the loader only lets postgres endpoints use it.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor } from "./slot.ts";

export const postgresPassword: CredentialPlugin = {
  type: "postgres_password",
  inject() {
    throw new Error("postgres_password has no HTTP slot (the loader keeps it to postgres endpoints)");
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret),
};
