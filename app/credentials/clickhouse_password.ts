// clickhouse_password: the password of the ClickHouse user named by the
// credential's `user`. The audit export (app/events/export/) signs in with it;
// the ClickHouse endpoints swap it in for the agent's placeholder. Declared
// here without an HTTP slot: the endpoints that inject it own that code.
import type { CredentialPlugin } from "./plugin.ts";
import { base64, echoForms, placeholderFor } from "./slot.ts";

export const clickhousePassword: CredentialPlugin = {
  type: "clickhouse_password",
  inject() {
    throw new Error("clickhouse_password has no generic HTTP slot (the loader keeps it to ClickHouse uses)");
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  // HTTP Basic (what @clickhouse/client sends) carries base64(user:password).
  revealingForms: (secret, cred) => {
    const pair = `${cred.settings.user ?? ""}:${secret}`;
    return echoForms(secret, pair, base64(pair), `Basic ${base64(pair)}`);
  },
};
