// clickhouse_password: the password the gateway logs in to ClickHouse with,
// as the credential's `user`. Native: it replaces the user and password of
// the client's Hello. HTTPS: it replaces the placeholder wherever the client
// put it (Authorization: Basic, X-ClickHouse-User/Key, ?user=&password=);
// that endpoint writes the slot itself, so there is no generic inject.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor } from "./slot.ts";

export const clickhousePassword: CredentialPlugin = {
  type: "clickhouse_password",
  inject() {
    throw new Error("clickhouse_password has no generic HTTP slot (the loader keeps it to clickhouse endpoints)");
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret, cred) => {
    const user = cred.settings.user ?? "";
    return [...echoForms(secret), Buffer.from(`${user}:${secret}`).toString("base64")];
  },
};
