// The k8s family through the real loader and engine: rules over k8s.* and
// http.* together, impersonation denied unless a rule allows it, the Status
// a refusal is answered with, and the kubernetes endpoint block.
import { beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { policyFrom, tempDir } from "../policy/helpers.ts";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { decide, httpFactsFromRequest } from "../../../app/policy/engine.ts";
import { judgeKubernetes } from "../../../app/endpoints/kubernetes/judge.ts";
import { statusObject } from "../../../app/endpoints/kubernetes/status.ts";
import { parseServer } from "../../../app/endpoints/kubernetes/spec.ts";
import { k8sFamily } from "../../../app/families/k8s.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import type { Policy } from "../../../app/policy/types.ts";

let policy: Policy;

beforeAll(async () => {
  policy = await policyFrom(`schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "kubernetes" "prod" {
  server = "https://k8s.internal:6443"
  credential = bearer_token.prod
}
credential "bearer_token" "prod" {}
profile "agents" {
  credentials = [bearer_token.prod]
}
rule "no-deletes-in-prod-ns" {
  endpoint = kubernetes.prod
  condition = "k8s.verb in ['delete', 'deletecollection'] && k8s.namespace == 'prod'"
  verdict = "deny"
  reason = "deletes in prod need a human"
}
rule "no-rm" {
  endpoint = kubernetes.prod
  condition = "k8s.verb == 'exec' && k8s.command.exists(c, c == 'rm')"
  verdict = "deny"
  reason = "no rm in pods"
}
rule "no-secrets-by-path" {
  endpoint = kubernetes.prod
  condition = "k8s.resource == 'secrets' && http.method == 'GET'"
  verdict = "deny"
  reason = "secrets are not for agents"
}
rule "ci-may-impersonate-viewer" {
  endpoint = kubernetes.prod
  condition = "'user' in k8s.impersonate && k8s.impersonate.user == 'viewer' && k8s.verb == 'list'"
  verdict = "allow"
}
`);
});

function judged(method: string, target: string, headers: HeaderList = []) {
  const endpoint = policy.endpoints.get("kubernetes.prod")!;
  const http = httpFactsFromRequest(method, "k8s.internal", target, [["Host", "k8s.internal:6443"], ...headers]);
  return judgeKubernetes(policy, { device: "laptop", profile: "agents", endpoint }, http, target);
}

describe("rules over k8s.* and http.*", () => {
  const CASES: [string, string, HeaderList, string, string | undefined][] = [
    ["GET", "/api/v1/namespaces/prod/pods", [], "allow", undefined],
    ["DELETE", "/api/v1/namespaces/prod/pods/web", [], "deny", "no-deletes-in-prod-ns"],
    ["DELETE", "/api/v1/namespaces/prod/pods", [], "deny", "no-deletes-in-prod-ns"],
    ["DELETE", "/api/v1/namespaces/dev/pods/web", [], "allow", undefined],
    ["POST", "/api/v1/namespaces/dev/pods/web/exec?command=rm&command=-rf&command=/&stdout=true", [], "deny", "no-rm"],
    ["GET", "/api/v1/namespaces/dev/pods/web/exec?command=ls&stdout=true", [], "allow", undefined],
    ["GET", "/api/v1/namespaces/dev/secrets", [], "deny", "no-secrets-by-path"],
    // impersonation: only where a rule allows it
    ["GET", "/api/v1/namespaces/dev/pods", [["Impersonate-User", "viewer"]], "allow", "ci-may-impersonate-viewer"],
    ["GET", "/api/v1/namespaces/dev/pods/web", [["Impersonate-User", "viewer"]], "deny", undefined],
    ["GET", "/api/v1/namespaces/dev/pods", [["Impersonate-User", "admin"], ["Impersonate-Group", "system:masters"]], "deny", undefined],
  ];
  test.each(CASES)("%s %s %j -> %s", (method, target, headers, verdict, rule) => {
    const { decision } = judged(method, target, headers);
    expect(decision.verdict as string).toBe(verdict);
    expect(decision.rule).toBe(rule);
  });

  test("an impersonating request no rule allowed is denied, naming the headers", () => {
    const { decision } = judged("GET", "/api/v1/namespaces/dev/pods", [["Impersonate-User", "admin"], ["Impersonate-Extra-Scopes", "x"]]);
    expect(decision.reason).toBe("impersonation (Impersonate-User, Impersonate-Extra-Scopes) needs a rule that allows it");
  });

  test("impersonate is a map of the headers present: a rule tests a key before reading it", () => {
    const { decision, facts } = judged("GET", "/api/v1/namespaces/dev/pods", [["Impersonate-Group", "devs"]]);
    expect(facts.impersonate).toEqual({ group: "devs" });
    expect(decision).toEqual({ verdict: "deny", reason: "impersonation (Impersonate-Group) needs a rule that allows it" });
  });
});

test("callers that judge plain HTTP facts (the rules API, policy fixtures) get the k8s facets derived", () => {
  const endpoint = policy.endpoints.get("kubernetes.prod")!;
  const ctx = { device: "laptop", profile: "agents", endpoint };
  const facts = (method: string, target: string) => httpFactsFromRequest(method, "k8s.internal", target, []);
  expect(decide(policy, ctx, facts("DELETE", "/api/v1/namespaces/prod/pods/web")).rule).toBe("no-deletes-in-prod-ns");
  expect(decide(policy, ctx, facts("POST", "/api/v1/namespaces/dev/pods/web/exec?command=rm")).rule).toBe("no-rm");
  expect(decide(policy, ctx, facts("GET", "/api/v1/namespaces/dev/pods")).verdict).toBe("allow");
});

describe("events", () => {
  test("the summary and action carry the k8s facets", () => {
    const { facts } = judged("POST", "/api/v1/namespaces/dev/pods/web/exec?command=ls&command=-la&container=app&stdout=true");
    expect(k8sFamily.summary(facts)).toBe("exec pods/exec web -n dev -- ls -la");
    expect(k8sFamily.action(facts)).toMatchObject({ verb: "exec", resource: "pods", subresource: "exec", namespace: "dev", name: "web", command: ["ls", "-la"], container: "app" });
    const meta = judged("GET", "/version").facts;
    expect(k8sFamily.summary(meta)).toBe("get /version");
    expect(k8sFamily.action(meta).meta).toBe(true);
  });
});

describe("Status", () => {
  test("a denial reads as the API server's Forbidden", () => {
    const { facts } = judged("DELETE", "/apis/apps/v1/namespaces/prod/deployments/web");
    expect(statusObject(403, "no-deletes-in-prod-ns", "deletes in prod need a human", facts.info)).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: 'deployments.apps "web" is forbidden: clawpatrol rule "no-deletes-in-prod-ns": deletes in prod need a human',
      reason: "Forbidden",
      details: { name: "web", group: "apps", kind: "deployments" },
      code: 403,
    });
    expect(statusObject(502, undefined, "credential has no value", undefined)).toMatchObject({ reason: "InternalError", code: 502, message: "the request is refused: clawpatrol: credential has no value" });
  });
});

describe("endpoint block", () => {
  test("server is https://HOST[:PORT]", () => {
    expect(parseServer("https://k8s.internal:6443")).toEqual({ host: "k8s.internal", port: 6443, server: "https://k8s.internal:6443" });
    expect(parseServer("https://10.0.0.1/")).toEqual({ host: "10.0.0.1", port: 443, server: "https://10.0.0.1" });
    expect(parseServer("http://k8s.internal")).toHaveProperty("error");
    expect(parseServer("https://k8s.internal:6443/prefix")).toHaveProperty("error");
    expect(parseServer("https://user@k8s.internal")).toHaveProperty("error");
  });

  test("hosts and ports come from server; credentials must fit; k8s_client_cert reads its certificate", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "admin.crt"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    const file = join(dir, "gateway.hcl");
    const base = `schema_version = 1
endpoint "kubernetes" "k" {
  server = "https://k8s.internal:6443"
  credential = k8s_client_cert.admin
}
credential "k8s_client_cert" "admin" {
  certificate = "admin.crt"
}
profile "p" {
  credentials = [k8s_client_cert.admin]
}
`;
    writeFileSync(file, base);
    const ok = await loadPolicy(file, { env: {} });
    if (!ok.ok) throw new Error(ok.errors.map(formatConfigError).join("\n"));
    const e = ok.policy.endpoints.get("kubernetes.k")!;
    expect(e.family).toBe("k8s");
    expect(e.hosts).toEqual(["k8s.internal"]);
    expect(e.ports).toEqual([6443]);
    expect(ok.policy.credentials.get("k8s_client_cert.admin")!.settings.certificate_pem).toContain("BEGIN CERTIFICATE");

    writeFileSync(file, base.replace('"admin.crt"', '"missing.crt"').replace("https://k8s.internal:6443", "k8s.internal") + 'credential "header_token" "h" {\n  header = "X"\n}\nendpoint "kubernetes" "bad" {\n  server = "https://b.internal"\n  credential = header_token.h\n}\n');
    const bad = await loadPolicy(file, { env: {} });
    expect(bad.ok).toBe(false);
    const messages = bad.ok ? [] : bad.errors.map((x) => x.message);
    expect(messages).toEqual([
      'endpoint kubernetes.k: server: "k8s.internal" is not https://HOST[:PORT] (no path, query or user)',
      "credential k8s_client_cert.admin: certificate: cannot read missing.crt: no such file",
      "endpoint kubernetes.bad: credential header_token.h does not fit this endpoint (it takes bearer_token, k8s_client_cert, passthrough)",
    ]);
  });

  test("a rule may read http.* and k8s.* but not sql.*", async () => {
    await expect(
      policyFrom(`schema_version = 1
endpoint "kubernetes" "k" {
  server = "https://k8s.internal"
}
rule "r" {
  endpoint = kubernetes.k
  condition = "sql.verb == 'delete'"
  verdict = "deny"
}
`),
    ).rejects.toThrow("condition reads sql.*");
  });
});
