// github_token: slot `Authorization: Bearer <secret>`. GitHub accepts both
// `Bearer` and the older `token` scheme; when the agent used `token` (as gh
// and some libraries do) its scheme word is kept, spelling and all.
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, firstHeader, placeholderFor, setHeaderSlot } from "./slot.ts";

const TOKEN_SCHEME = /^\s*(token)(?:\s|$)/i;

export const githubToken: CredentialPlugin = {
  type: "github_token",
  inject(req, secret) {
    const sent = firstHeader(req.headers, "Authorization");
    const scheme = (sent !== undefined && TOKEN_SCHEME.exec(sent)?.[1]) || "Bearer";
    setHeaderSlot(req.headers, "Authorization", `${scheme} ${secret}`);
  },
  // The `ghp_` shape of a personal access token, which GitHub tools accept.
  placeholder: (cred) => placeholderFor("ghp_clawpatrol_placeholder_", cred.name),
  revealingForms: (secret) => echoForms(secret, `Bearer ${secret}`, `token ${secret}`),
};
