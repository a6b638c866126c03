// clickhouse_password: the user and password the gateway logs in to
// ClickHouse with (`user` in the block, the secret from the gateway's store).
// Native (clickhouse_native): the session replaces the user and password of
// the client's Hello; `inject` is not used there. HTTPS (clickhouse_https):
// the credential goes into the one slot the client used, replacing its
// placeholder, and any other slot is removed (ClickHouse refuses a request
// that authenticates two ways):
//   X-ClickHouse-User / X-ClickHouse-Key headers, when the client sent either;
//   else ?user= / ?password= URL parameters, when the client sent either;
//   else Authorization: Basic base64(user:password).
import type { CredentialPlugin } from "./plugin.ts";
import { getHeader, removeHeader, setHeader } from "../endpoints/http1/headers.ts";
import { echoForms, placeholderFor } from "./slot.ts";

const URL_SLOTS = new Set(["user", "password"]);

function paramName(p: string): string {
  const eq = p.indexOf("=");
  const raw = eq < 0 ? p : p.slice(0, eq);
  try {
    return decodeURIComponent(raw.replaceAll("+", " "));
  } catch {
    return raw;
  }
}

/** `target` without user/password parameters, and whether it had any. */
function withoutUrlSlots(target: string): { target: string; had: boolean } {
  const q = target.indexOf("?");
  if (q < 0) return { target, had: false };
  const params = target.slice(q + 1).split("&");
  const kept = params.filter((p) => !URL_SLOTS.has(paramName(p)));
  if (kept.length === params.length) return { target, had: false };
  return { target: kept.length > 0 ? `${target.slice(0, q)}?${kept.join("&")}` : target.slice(0, q), had: true };
}

export const clickhousePassword: CredentialPlugin = {
  type: "clickhouse_password",
  inject(req, secret, cred) {
    const user = cred.settings.user ?? "default";
    const headerSlot = getHeader(req.headers, "x-clickhouse-user") !== undefined || getHeader(req.headers, "x-clickhouse-key") !== undefined;
    const url = withoutUrlSlots(req.target);
    req.target = url.target;
    removeHeader(req.headers, "x-clickhouse-user");
    removeHeader(req.headers, "x-clickhouse-key");
    removeHeader(req.headers, "authorization");
    if (headerSlot) {
      setHeader(req.headers, "X-ClickHouse-User", user);
      setHeader(req.headers, "X-ClickHouse-Key", secret);
    } else if (url.had) {
      const sep = req.target.includes("?") ? "&" : "?";
      req.target = `${req.target}${sep}user=${encodeURIComponent(user)}&password=${encodeURIComponent(secret)}`;
    } else {
      setHeader(req.headers, "Authorization", `Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`);
    }
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret, cred) => {
    const user = cred.settings.user ?? "default";
    return [...echoForms(secret), Buffer.from(`${user}:${secret}`).toString("base64"), encodeURIComponent(secret)];
  },
};
