// The real kubectl (1.32) through the gateway to a FAKE Kubernetes API
// server (fake-apiserver.ts: no real API server can run here; it serves the
// API's real shapes at the HTTP level and checks the credential it gets).
//
//   explicit proxy:  kubectl with HTTPS_PROXY=the gateway's proxy, a
//                    kubeconfig naming the server, the gateway's CA and a
//                    placeholder token (in the root namespace)
//   WireGuard:       [dev ns] the compiled client: `clawpatrol kubeconfig
//                    cluster` (it runs itself in a run to read the manifest),
//                    then `clawpatrol run -- kubectl --kubeconfig ...`
//       ==veth (underlay)==
//   [root ns]        the gateway (userspace WireGuard on HOST_IP); the fake
//                    API servers on UPSTREAM_IP, two ports (an address of
//                    its own: Go never proxies loopback)
//
// Two endpoints: one injecting a bearer token, one presenting a client
// certificate over mutual TLS. Neither the token nor the client key reaches
// kubectl or an event.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, waitFor } from "../support/netns.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { addHostAddress, buildClient, deviceNamespace, enrollDevice, forwardPublicApi, killClients, runClient, type ClientResult } from "../support/client-device.ts";
import { pod, startFakeApiServer, type FakeApiServer } from "./fake-apiserver.ts";

const N = 100 + ((process.pid + 41) % 100);
const HOST_IP = `10.236.${N}.1`;
const DEV_UNDERLAY = `10.236.${N}.2`;
const UPSTREAM_IP = `10.237.${N}.1`;
// The second server on the same address, another port: the endpoint is told apart by port.
const CERT_UPSTREAM_IP = UPSTREAM_IP;
const WG_PORT = 26000 + (process.pid % 10000);
const TOKEN = "k8s-REAL-token-7f3a9c1e5b2d4f60";
const PLACEHOLDER = "clawpatrol-placeholder-cluster";

/** A client certificate (CN alice, O devs) signed by the fake's CA, made with the real openssl. */
function clientCertificate(pki: TestPki): { certPath: string; keyPath: string; keyPem: string } {
  const run = (args: string[]) => {
    const r = Bun.spawnSync(["openssl", ...args], { cwd: pki.dir, stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr.toString()}`);
  };
  run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=alice/O=devs"]);
  writeFileSync(path.join(pki.dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  run(["x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.crt", "-days", "2", "-extfile", "client.ext"]);
  return { certPath: path.join(pki.dir, "client.crt"), keyPath: path.join(pki.dir, "client.key"), keyPem: readFileSync(path.join(pki.dir, "client.key"), "utf8") };
}

/** A kubeconfig as a device would hold it: the server, the gateway's CA, a placeholder token. */
function kubeconfig(dir: string, server: string, caPath: string, token: string): string {
  const file = path.join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  const ca = readFileSync(caPath).toString("base64");
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster: { server, "certificate-authority-data": ca } }],
      users: [{ name: "u", user: { token } }],
      contexts: [{ name: "x", context: { cluster: "c", user: "u", namespace: "default" } }],
      "current-context": "x",
    }),
  );
  return file;
}

interface Kubectl {
  code: number | null;
  out: string;
  err: string;
}

/** kubectl through the gateway's explicit proxy; `onOut` sees stdout as it comes and may return true to stop kubectl. */
async function kubectl(t: TestGateway, home: string, kc: string, args: string[], onOut?: (out: string) => boolean | void, stdin?: string): Promise<Kubectl> {
  const proc = Bun.spawn(["kubectl", "--kubeconfig", kc, "--cache-dir", path.join(home, "cache"), "--request-timeout", "60s", ...args], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, HTTPS_PROXY: t.proxyUrl, NO_PROXY: "" },
    stdout: "pipe",
    stderr: "pipe",
    stdin: stdin === undefined ? "ignore" : new Blob([stdin]),
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 90_000);
  let out = "";
  let err = "";
  await Promise.all([
    (async () => {
      for await (const c of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
        out += new TextDecoder().decode(c);
        if (onOut?.(out)) proc.kill("SIGTERM");
      }
    })(),
    (async () => {
      for await (const c of proc.stderr as unknown as AsyncIterable<Uint8Array>) err += new TextDecoder().decode(c);
    })(),
  ]);
  const code = await proc.exited;
  clearTimeout(timer);
  return { code, out, err };
}

describe.skipIf(!canRunRootTests)("kubectl through the gateway to a fake API server", () => {
  const topo = new Topology("ck8");
  let pki: TestPki;
  let bearerApi: FakeApiServer;
  let certApi: FakeApiServer;
  let t: TestGateway;
  let home = "";
  let client: { certPath: string; keyPath: string; keyPem: string };
  let dev = "";
  let bin = "";
  let api: { url: string; close(): void };

  beforeAll(async () => {
    bin = buildClient();
    ({ dev } = deviceNamespace(topo, HOST_IP, DEV_UNDERLAY));
    addHostAddress(topo, UPSTREAM_IP);
    pki = makeTestPki(tempDir("k8s-pki"), [UPSTREAM_IP]);
    client = clientCertificate(pki);
    [bearerApi, certApi] = await Promise.all([
      startFakeApiServer({ host: UPSTREAM_IP, certPem: pki.certPem, keyPem: pki.keyPem, auth: { mode: "bearer", token: TOKEN } }),
      startFakeApiServer({ host: CERT_UPSTREAM_IP, certPem: pki.certPem, keyPem: pki.keyPem, auth: { mode: "cert", clientCaPem: pki.caCertPem, clientCN: "alice" } }),
    ]);
    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "kubernetes" "cluster" {
  server     = "https://${UPSTREAM_IP}:${bearerApi.port}"
  ca_cert    = "${pki.caCertPath}"
  credential = bearer_token.cluster
}
endpoint "kubernetes" "certs" {
  server     = "https://${CERT_UPSTREAM_IP}:${certApi.port}"
  ca_cert    = "${pki.caCertPath}"
  credential = k8s_client_cert.alice
}
credential "bearer_token" "cluster" {}
credential "k8s_client_cert" "alice" {
  certificate = "${client.certPath}"
  secret_file = "${client.keyPath}"
}
profile "agents" {
  credentials = [bearer_token.cluster, k8s_client_cert.alice]
}
rule "no-pod-deletes" {
  endpoints = [kubernetes.cluster, kubernetes.certs]
  condition = "k8s.verb in ['delete', 'deletecollection'] && k8s.resource == 'pods'"
  verdict   = "deny"
  reason    = "agents do not delete pods"
}
rule "no-port-forward" {
  endpoints = [kubernetes.cluster, kubernetes.certs]
  condition = "k8s.verb == 'portforward'"
  verdict   = "deny"
  reason    = "no tunnels into pods"
}
rule "no-rm-in-pods" {
  endpoints = [kubernetes.cluster, kubernetes.certs]
  condition = "k8s.verb == 'exec' && k8s.command.exists(c, c == 'rm')"
  verdict   = "deny"
  reason    = "no rm inside pods"
}
`,
      { CLAWPATROL_SECRET_CLUSTER: TOKEN },
      {
        gateway: `
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "10.92.0.0/24"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }`,
      },
    );
    home = tempDir("k8s-home");
    chmodSync(home, 0o755);
    mkdirSync(path.join(home, "cache"), { recursive: true });
    api = await forwardPublicApi(t, HOST_IP);
    const joined = await enrollDevice(t, bin, dev, api.url, "k8s-laptop", { home, profile: "agents" });
    expect(joined.code).toBe(0);
  }, 180_000);

  afterAll(async () => {
    killClients();
    api?.close();
    await Promise.all([bearerApi?.close(), certApi?.close()]);
    await t?.stop();
    topo.destroy();
  }, 30_000);

  const bearerServer = () => `https://${UPSTREAM_IP}:${bearerApi.port}`;
  const certServer = () => `https://${CERT_UPSTREAM_IP}:${certApi.port}`;

  describe("explicit proxy, bearer token", () => {
    let kc = "";
    beforeAll(() => {
      kc = kubeconfig(home, bearerServer(), t.caPath, PLACEHOLDER);
    });

    test("get pods: discovery and the list go through; the server saw the real token, kubectl the placeholder only", async () => {
      const r = await kubectl(t, home, kc, ["get", "pods", "-o", "name"]);
      expect(r.err).toBe("");
      expect(r.out.trim()).toBe("pod/web-0");
      const list = bearerApi.seen.find((s) => s.method === "GET" && s.target.startsWith("/api/v1/namespaces/default/pods"));
      expect(list?.authorization).toBe(`Bearer ${TOKEN}`);
      expect(bearerApi.seen.every((s) => s.authorization === `Bearer ${TOKEN}`)).toBe(true);
    });

    test("get pods -w: watch events arrive one by one while the watch stays open", async () => {
      // The first event once the watch is open; the second only after kubectl printed the first.
      const opened = waitFor(() => bearerApi.watches() > 0, 60_000).then((ok) => {
        if (ok) bearerApi.emit({ type: "ADDED", object: pod("web-1", "default", "101") });
      });
      let second = false;
      const r = await kubectl(t, home, kc, ["get", "pods", "-w", "-o", "name"], (out) => {
        if (out.includes("pod/web-1") && !second) {
          second = true;
          bearerApi.emit({ type: "ADDED", object: pod("web-2", "default", "102") });
        }
        return out.includes("pod/web-2");
      });
      await opened;
      // The list came first, then each event as it was sent.
      expect(r.out.split("\n").filter(Boolean)).toEqual(["pod/web-0", "pod/web-1", "pod/web-2"]);
      const w = bearerApi.seen.find((s) => s.target.includes("watch=true"));
      expect(w?.authorization).toBe(`Bearer ${TOKEN}`);
    }, 120_000);

    test("apply creates a ConfigMap", async () => {
      const manifest = JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "demo", namespace: "default" }, data: { k: "v" } });
      const r = await kubectl(t, home, kc, ["apply", "--validate=false", "-f", "-"], undefined, manifest);
      expect(r.err).toBe("");
      expect(r.out.trim()).toBe("configmap/demo created");
      expect(bearerApi.configMaps.has("demo")).toBe(true);
    });

    test("delete pod is denied by the rule, as a Status kubectl prints", async () => {
      const before = bearerApi.seen.filter((s) => s.method === "DELETE").length;
      const r = await kubectl(t, home, kc, ["delete", "pod", "web-0"]);
      expect(r.code).not.toBe(0);
      expect(r.err).toContain('Error from server (Forbidden): pods "web-0" is forbidden: clawpatrol rule "no-pod-deletes": agents do not delete pods');
      expect(bearerApi.seen.filter((s) => s.method === "DELETE").length).toBe(before);
    });

    test("exec -- ls runs over the v5.channel.k8s.io WebSocket", async () => {
      const r = await kubectl(t, home, kc, ["exec", "web-0", "--", "ls"]);
      expect(r.err).toBe("");
      expect(r.out).toBe("bin\netc\nusr\n");
      const ex = bearerApi.seen.find((s) => s.target.includes("/exec?"));
      expect(ex?.upgrade?.toLowerCase()).toBe("websocket");
      expect(ex?.protocols).toContain("v5.channel.k8s.io");
      expect(ex?.authorization).toBe(`Bearer ${TOKEN}`);
    });

    test("exec -- rm is denied by k8s.command before any upgrade", async () => {
      const before = bearerApi.seen.filter((s) => s.target.includes("/exec?")).length;
      const r = await kubectl(t, home, kc, ["exec", "web-0", "--", "rm", "-rf", "/data"]);
      expect(r.code).not.toBe(0);
      expect(r.err).toContain('clawpatrol rule "no-rm-in-pods": no rm inside pods');
      expect(bearerApi.seen.filter((s) => s.target.includes("/exec?")).length).toBe(before);
    });

    test("port-forward is judged on its upgrade: denied by k8s.verb, no upgrade reaches the server", async () => {
      const r = await kubectl(t, home, kc, ["port-forward", "pod/web-0", "0:80"]);
      expect(r.code).not.toBe(0);
      expect(r.err).toContain('clawpatrol rule "no-port-forward": no tunnels into pods');
      expect(bearerApi.seen.some((s) => s.target.includes("/portforward"))).toBe(false);
      expect(t.events.some((e) => e.family === "k8s" && e.rule === "no-port-forward" && e.action?.verb === "portforward")).toBe(true);
    });

    test("auth can-i", async () => {
      const r = await kubectl(t, home, kc, ["auth", "can-i", "list", "pods"]);
      expect(r.out.trim()).toBe("yes");
    });
  });

  describe("explicit proxy, client certificate", () => {
    test("get pods: the gateway presents the certificate; the placeholder token is not sent", async () => {
      const kc = kubeconfig(home, certServer(), t.caPath, PLACEHOLDER);
      const r = await kubectl(t, home, kc, ["get", "pods", "-o", "name"]);
      expect(r.err).toBe("");
      expect(r.out.trim()).toBe("pod/web-0");
      expect(certApi.seen.length).toBeGreaterThan(0);
      expect(certApi.seen.every((s) => s.clientCN === "alice" && s.authorization === undefined)).toBe(true);
    });
  });

  describe("WireGuard: clawpatrol kubeconfig, then kubectl in clawpatrol run", () => {
    let kc = "";
    const inRun = (args: string[]): Promise<ClientResult> =>
      runClient(bin, dev, ["run", "--", "kubectl", "--kubeconfig", kc, "--cache-dir", path.join(home, "cache-dev"), "--request-timeout", "60s", ...args], { home, timeoutMs: 90_000 });

    beforeAll(async () => {
      const r = await runClient(bin, dev, ["kubeconfig", "cluster"], { home, timeoutMs: 60_000 });
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      kc = path.join(home, "kubeconfig-cluster");
      writeFileSync(kc, r.out);
      chmodSync(kc, 0o644);
    }, 90_000);

    test("the kubeconfig names the endpoint's address, the gateway's CA and the placeholder, never the token", () => {
      const text = readFileSync(kc, "utf8");
      expect(text).toContain(`server: https://${UPSTREAM_IP}:${bearerApi.port}\n`);
      const ca = /certificate-authority-data: (\S+)\n/.exec(text)?.[1] ?? "";
      expect(Buffer.from(ca, "base64").toString().trim()).toBe(readFileSync(t.caPath, "utf8").trim());
      expect(text).toContain(`token: ${PLACEHOLDER}\n`);
      expect(text).not.toContain(TOKEN);
    });

    test("get pods", async () => {
      const r = await inRun(["get", "pods", "-o", "name"]);
      expect(r.err).toBe("");
      expect(r.out.trim()).toBe("pod/web-0");
      expect(t.events.some((e) => e.family === "k8s" && e.device === "k8s-laptop" && (e.action?.verb as string) === "list")).toBe(true);
    }, 120_000);

    test("exec -- ls, and delete denied", async () => {
      const ls = await inRun(["exec", "web-0", "--", "ls"]);
      expect(ls.err).toBe("");
      expect(ls.out).toBe("bin\netc\nusr\n");
      const del = await inRun(["delete", "pod", "web-0"]);
      expect(del.code).not.toBe(0);
      expect(del.err).toContain('Error from server (Forbidden): pods "web-0" is forbidden: clawpatrol rule "no-pod-deletes"');
      expect(ls.out + ls.err + del.out + del.err).not.toContain(TOKEN);
    }, 180_000);
  });

  test("events carry the k8s facets; neither the token nor the client key reaches an event", async () => {
    expect(await waitFor(() => t.events.some((e) => e.family === "k8s" && e.verdict === "deny" && e.rule === "no-rm-in-pods"), 10_000)).toBe(true);
    const rm = t.events.find((e) => e.family === "k8s" && e.rule === "no-rm-in-pods")!;
    expect(rm.action).toMatchObject({ verb: "exec", resource: "pods", subresource: "exec", name: "web-0", namespace: "default", command: ["rm", "-rf", "/data"], status: 403 });
    expect(rm.summary).toBe("exec pods/exec web-0 -n default -- rm -rf /data");
    const del = t.events.find((e) => e.family === "k8s" && e.rule === "no-pod-deletes")!;
    expect(del.action).toMatchObject({ verb: "delete", resource: "pods", name: "web-0" });
    const all = JSON.stringify(t.events);
    expect(all).not.toContain(TOKEN);
    const keyBody = client.keyPem.split("\n").filter((l) => l && !l.startsWith("-----")).join("");
    expect(all).not.toContain(keyBody.slice(0, 40));
  });
});

