// The HTTPS exchange decider on kubernetes endpoints (the real loader and
// engine): refusals as Status objects, the k8s event fields, the client
// certificate handed to the forward, SPDY/3.1 upgrades taken only here, and
// two endpoints on one host told apart by port.
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { tempDir } from "../policy/helpers.ts";
import { ExchangeDecider, type DeciderCommand, type DeciderContext } from "../../../app/endpoints/https/decider.ts";
import type { RequestHead } from "../../../app/endpoints/http1/parser.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import type { Policy } from "../../../app/policy/types.ts";

const TOKEN = "k8s-real-token-0123456789";
const KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----";
const CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";

let policy: Policy;

beforeAll(async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "alice.crt"), CERT);
  const file = join(dir, "gateway.hcl");
  writeFileSync(
    file,
    `schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "kubernetes" "tokens" {
  server = "https://k8s.test:6443"
  credential = bearer_token.k8s
}
endpoint "kubernetes" "certs" {
  server = "https://k8s.test:7443"
  credential = k8s_client_cert.alice
}
endpoint "https" "web" {
  hosts = ["web.test"]
}
credential "bearer_token" "k8s" {}
credential "k8s_client_cert" "alice" {
  certificate = "alice.crt"
}
profile "agents" {
  credentials = [bearer_token.k8s, k8s_client_cert.alice]
}
rule "no-deletes" {
  endpoints = [kubernetes.tokens, kubernetes.certs]
  condition = "k8s.verb == 'delete'"
  verdict = "deny"
  reason = "no deletes"
}
`,
  );
  const r = await loadPolicy(file, { env: {} });
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  policy = r.policy;
});

function decider(sni: string, port: number): ExchangeDecider {
  const ctx: DeciderContext = {
    policy,
    device: { name: "laptop", profile: "agents" },
    sni,
    port,
    now: 0,
    secretFor: (cred) => (cred.ref === "bearer_token.k8s" ? { ok: true, value: TOKEN, needles: [TOKEN] } : { ok: true, value: KEY, needles: [KEY] }),
    redact: (t) => t,
    approvals: false,
  };
  return new ExchangeDecider(ctx);
}

function head(method: string, target: string, host: string, headers: HeaderList = [], upgrade?: string): RequestHead {
  return {
    method,
    target,
    version: "1.1",
    headers: [["Host", host], ["Authorization", "Bearer clawpatrol-placeholder-k8s"], ...headers],
    bodyKind: { kind: "none" },
    keepAlive: true,
    expectContinue: false,
    ...(upgrade ? { upgrade } : {}),
  };
}

function only(commands: DeciderCommand[]): DeciderCommand {
  const c = commands.filter((x) => x.type !== "log");
  expect(c.length).toBe(1);
  return c[0]!;
}

const body = (data: Uint8Array) => JSON.parse(new TextDecoder().decode(data).split("\r\n\r\n")[1]!);

describe("kubernetes endpoints in the HTTPS decider", () => {
  test("a denial is a Status and the event carries the k8s facets", () => {
    const c = only(decider("k8s.test", 6443).handle({ type: "head", head: head("DELETE", "/api/v1/namespaces/dev/pods/web", "k8s.test:6443") }));
    if (c.type !== "reply") throw new Error(c.type);
    expect(body(c.data)).toMatchObject({ kind: "Status", status: "Failure", reason: "Forbidden", code: 403, message: 'pods "web" is forbidden: clawpatrol rule "no-deletes": no deletes' });
    expect(c.event).toMatchObject({ family: "k8s", summary: "delete pods web -n dev", verdict: "deny", status: 403, rule: "no-deletes", endpoint: "kubernetes.tokens" });
    expect(c.event.action).toMatchObject({ verb: "delete", resource: "pods", namespace: "dev", name: "web" });
  });

  test("bearer: the token replaces the placeholder; no client certificate", () => {
    const c = only(decider("k8s.test", 6443).handle({ type: "head", head: head("GET", "/api/v1/namespaces/dev/pods", "k8s.test:6443") }));
    if (c.type !== "forward") throw new Error(c.type);
    expect(c.endpoint?.ref).toBe("kubernetes.tokens");
    expect(c.head.headers).toContainEqual(["Authorization", `Bearer ${TOKEN}`]);
    expect(c.clientCert).toBeUndefined();
  });

  test("the same host on another port is the other endpoint: the client certificate goes to the forward, the placeholder token does not", () => {
    const c = only(decider("k8s.test", 7443).handle({ type: "head", head: head("GET", "/api/v1/namespaces/dev/pods", "k8s.test:7443") }));
    if (c.type !== "forward") throw new Error(c.type);
    expect(c.endpoint?.ref).toBe("kubernetes.certs");
    expect(c.clientCert).toEqual({ ref: "k8s_client_cert.alice", certPem: CERT, keyPem: KEY });
    expect(c.head.headers.some(([k]) => k.toLowerCase() === "authorization")).toBe(false);
    expect(c.needles).toContain(KEY);
  });

  test("SPDY/3.1 upgrades are judged on kubernetes endpoints and refused elsewhere", () => {
    const exec = only(decider("k8s.test", 6443).handle({ type: "head", head: head("POST", "/api/v1/namespaces/dev/pods/web/exec?command=ls", "k8s.test:6443", [["Connection", "Upgrade"], ["Upgrade", "SPDY/3.1"]], "SPDY/3.1") }));
    if (exec.type !== "forward") throw new Error(exec.type);
    expect(exec.head.headers).toContainEqual(["Upgrade", "SPDY/3.1"]);
    expect(exec.event.summary).toBe("exec pods/exec web -n dev -- ls");
    const web = only(decider("web.test", 443).handle({ type: "head", head: head("GET", "/", "web.test", [["Connection", "Upgrade"], ["Upgrade", "SPDY/3.1"]], "SPDY/3.1") }));
    if (web.type !== "reply") throw new Error(web.type);
    expect(web.event.status).toBe(400);
  });
});
