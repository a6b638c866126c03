// HTTP/2 on the other endpoint types the HTTPS runtime serves: the real
// curl --http2 through the gateway to a kubernetes endpoint (the fake API
// server of the kubectl test: no kube-apiserver runs here; it speaks
// HTTP/1.1, so each stream is translated) and to a clickhouse_https
// endpoint (the real clickhouse-server 18.16's HTTPS port). Each stream is
// judged by its family's facets and refused in its family's own shape.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { makeTestPki } from "../support/pki.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { startFakeApiServer, type FakeApiServer } from "../kubernetes/fake-apiserver.ts";
import { startClickHouse, type TestClickHouse } from "../support/clickhouse.ts";

const K8S_HOST = "k8s.test";
const TOKEN = "k8s-real-token-h2-0123456789abcdef";
const CH_SECRET = "real-Ch-h2-secret-5e7a";
const PLACEHOLDER = "clawpatrol-placeholder";

let api: FakeApiServer;
let ch: TestClickHouse;
let t: TestGateway;

beforeAll(async () => {
  const pki = makeTestPki(tempDir("h2fam-pki"), [K8S_HOST]);
  [api, ch] = await Promise.all([
    startFakeApiServer({ host: "127.0.0.1", certPem: pki.certPem, keyPem: pki.keyPem, auth: { mode: "bearer", token: TOKEN } }),
    startClickHouse({ user: "analyst", password: CH_SECRET, tls: true }),
  ]);
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "kubernetes" "cluster" {
  server     = "https://${K8S_HOST}:${api.port}"
  ca_cert    = "${pki.caCertPath}"
  credential = bearer_token.cluster
}
endpoint "clickhouse_https" "ch" {
  hosts      = ["localhost"]
  ports      = [${ch.httpsPort}]
  ca_cert    = "${ch.caCertPath}"
  credential = clickhouse_password.ch
}
credential "bearer_token" "cluster" {}
credential "clickhouse_password" "ch" {
  user = "analyst"
}
profile "agents" {
  credentials = [bearer_token.cluster, clickhouse_password.ch]
}
rule "no-pod-deletes" {
  endpoint  = kubernetes.cluster
  condition = "k8s.verb == 'delete' && k8s.resource == 'pods'"
  verdict   = "deny"
  reason    = "agents do not delete pods"
}
rule "read-only" {
  endpoint  = clickhouse_https.ch
  condition = "sql.verb in ['insert', 'drop']"
  verdict   = "deny"
  reason    = "this agent reads only"
}
`,
    { CLAWPATROL_SECRET_CLUSTER: TOKEN, CLAWPATROL_SECRET_CH: CH_SECRET },
  );
}, 120_000);

afterAll(async () => {
  await t?.stop();
  await api?.close();
  await ch?.stop();
}, 30_000);

const h2 = ["--http2"];

describe("HTTP/2 on kubernetes and clickhouse_https endpoints", () => {
  test("kubernetes: a list passes credentialed over h2; a pod delete is refused on its stream as a Status; events carry the k8s facets", async () => {
    const auth = ["-H", `Authorization: Bearer ${PLACEHOLDER}`];
    const list = await curlVia(t, K8S_HOST, api.port, "/api/v1/namespaces/default/pods", [...h2, ...auth]);
    expect(list.headers).toMatch(/^HTTP\/2 200/m);
    expect(JSON.parse(list.body)).toMatchObject({ kind: "PodList" });
    expect(api.seen.at(-1)?.authorization).toBe(`Bearer ${TOKEN}`);
    const del = await curlVia(t, K8S_HOST, api.port, "/api/v1/namespaces/default/pods/web-1", [...h2, ...auth, "-X", "DELETE"]);
    expect(del.headers).toMatch(/^HTTP\/2 403/m);
    expect(JSON.parse(del.body)).toMatchObject({ kind: "Status", status: "Failure", code: 403 });
    expect(del.body).toContain("agents do not delete pods");
    expect(api.seen.some((r) => r.method === "DELETE")).toBe(false);
    const events = t.events.filter((e) => e.endpoint === "kubernetes.cluster");
    expect(events.map((e) => [e.family, e.verdict, e.action?.verb])).toEqual([
      ["k8s", "allow", "list"],
      ["k8s", "deny", "delete"],
    ]);
    expect(list.body + list.headers + del.body + JSON.stringify(t.events)).not.toContain(TOKEN);
  }, 60_000);

  test("clickhouse_https: a SELECT passes credentialed over h2; a DROP in the body is refused on its stream with Code 497", async () => {
    const auth = ["-u", `agent:${PLACEHOLDER}`];
    const select = await curlVia(t, "localhost", ch.httpsPort!, `/?query=${encodeURIComponent("SELECT 41 + 1")}`, [...h2, ...auth]);
    expect(select.headers).toMatch(/^HTTP\/2 200/m);
    expect(select.body.trim()).toBe("42");
    const drop = await curlVia(t, "localhost", ch.httpsPort!, "/", [...h2, ...auth, "--data-binary", "DROP TABLE system.one"]);
    expect(drop.headers).toMatch(/^HTTP\/2 403/m);
    expect(drop.body).toStartWith('Code: 497. DB::Exception: clawpatrol: access denied by rule "read-only"');
    const ev = t.events.find((e) => e.endpoint === "clickhouse_https.ch" && e.verdict === "deny");
    expect(ev?.action?.verb).toBe("drop");
    expect(JSON.stringify(t.events) + select.body + drop.body).not.toContain(CH_SECRET);
  }, 60_000);
});
