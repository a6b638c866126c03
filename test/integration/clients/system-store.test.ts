// The operating system's trust store on Debian, both ways, with the real
// update-ca-certificates in a mount namespace of the test's own (copies of
// /etc/ssl/certs and /usr/local/share/ca-certificates bound over the real
// ones, so the machine's store is never touched):
//   1. the gateway verifies an intercepted upstream against the system store:
//      an upstream whose CA is in no store answers 502; once the CA is added
//      with update-ca-certificates (no ca_cert on the endpoint, no restart)
//      the same request answers 200;
//   2. a device trusts the gateway as README's "Trusting the gateway's CA on
//      a device" says (the CA copied into /usr/local/share/ca-certificates,
//      update-ca-certificates): curl, wget, Python requests, Debian's pip and
//      Go's net/http then work through the proxy with no CA option of their
//      own, each request judged and recorded. Go never proxies `localhost` or
//      a loopback address, so its upstream is named upstream.clawpatrol.test,
//      which the namespace's own /etc/hosts (a copy, bound too) maps to
//      127.0.0.1 for Go and the gateway alike.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { tempDir } from "../support/gateway.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

setDefaultTimeout(120_000);

const ROOT = path.resolve(import.meta.dir, "../../..");
const skip = process.getuid?.() !== 0 && process.env.CI !== "true";
const SECRET = "sk-live-STORE-secret-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-api";
/** Not loopback by its name, so Go proxies it; /etc/hosts inside the namespace says 127.0.0.1. */
const GO_HOST = "upstream.clawpatrol.test";
const haveGo = Bun.which("go") !== null;

let work: string;
let pki: TestPki;
let up: TestUpstream;
let index: ReturnType<typeof Bun.serve>;
let wheel: { name: string; bytes: Buffer<ArrayBuffer> };
let gateway: ReturnType<typeof Bun.spawn> | undefined;
let gatewayErr = "";
let proxyUrl = "";
let stateDir: string;

/** A command inside the gateway's mount namespace (its copy of the trust store), bounded in time. */
async function inNs(cmd: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(["nsenter", "-t", String(gateway!.pid), "-m", ...cmd], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: path.join(work, "home"), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 90_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out, err };
}

function events(): GatewayEvent[] {
  const file = path.join(stateDir, "events.jsonl");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as GatewayEvent);
}

async function eventWhere(match: (e: GatewayEvent) => boolean): Promise<GatewayEvent> {
  for (let i = 0; i < 400; i++) {
    const e = events().findLast(match);
    if (e) return e;
    await Bun.sleep(25);
  }
  throw new Error(`no such event among ${JSON.stringify(events().slice(-5))}`);
}

/** A pure-Python wheel of one module, built here (a wheel is a zip with its metadata). */
async function buildWheel(dir: string): Promise<{ name: string; bytes: Buffer<ArrayBuffer> }> {
  const name = "clawpatrol_hello-1.0-py3-none-any.whl";
  const script = `
import zipfile, sys
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("clawpatrol_hello/__init__.py", "GREETING = 'hello'\\n")
    z.writestr("clawpatrol_hello-1.0.dist-info/METADATA", "Metadata-Version: 2.1\\nName: clawpatrol-hello\\nVersion: 1.0\\n")
    z.writestr("clawpatrol_hello-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
    z.writestr("clawpatrol_hello-1.0.dist-info/RECORD", "")
`;
  const file = path.join(dir, name);
  const r = Bun.spawnSync(["/usr/bin/python3", "-c", script, file], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return { name, bytes: readFileSync(file) };
}

/** A PEP 503 simple index of that one wheel, over TLS with the upstream's own CA. */
function startIndex(): ReturnType<typeof Bun.serve> {
  const sha = createHash("sha256").update(wheel.bytes).digest("hex");
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: pki.certPem, key: pki.keyPem },
    fetch(req) {
      const p = new URL(req.url).pathname;
      if (p === "/simple/clawpatrol-hello/") {
        return new Response(`<!DOCTYPE html><html><body><a href="/files/${wheel.name}#sha256=${sha}">${wheel.name}</a></body></html>`, {
          headers: { "content-type": "text/html" },
        });
      }
      if (p === `/files/${wheel.name}`) return new Response(wheel.bytes, { headers: { "content-type": "application/octet-stream" } });
      return new Response("not found", { status: 404 });
    },
  });
}

describe.skipIf(skip)("the system trust store (update-ca-certificates) in a mount namespace", () => {
  beforeAll(async () => {
    work = tempDir("store");
    mkdirSync(path.join(work, "home"));
    pki = makeTestPki(path.join(work, "pki"), ["localhost", GO_HOST]);
    up = startUpstream(pki);
    wheel = await buildWheel(work);
    index = startIndex();
    stateDir = path.join(work, "state");
    const config = path.join(work, "gateway.hcl");
    writeFileSync(
      config,
      `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "127.0.0.1:0" }
  events { jsonl = "events.jsonl" }
}
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
  profile = profile.agents
}
# No ca_cert: the upstream's CA is trusted only once the system store has it.
endpoint "https" "local" {
  hosts = ["localhost", "${GO_HOST}"]
  ports = [${up.port}, ${index.port}]
  credential = bearer_token.api
}
credential "bearer_token" "api" {}
profile "agents" {
  credentials = [bearer_token.api]
}
`,
    );
    // The gateway in a mount namespace whose trust store is a copy; update-ca-certificates there writes only the copy.
    const setup = [
      "set -e",
      `mkdir -p ${work}/ns-certs ${work}/ns-local`,
      `cp -a /etc/ssl/certs/. ${work}/ns-certs/`,
      `cp -a /usr/local/share/ca-certificates/. ${work}/ns-local/`,
      `mount --bind ${work}/ns-certs /etc/ssl/certs`,
      `mount --bind ${work}/ns-local /usr/local/share/ca-certificates`,
      `{ cat /etc/hosts; echo "127.0.0.1 ${GO_HOST}"; } > ${work}/ns-hosts`,
      `mount --bind ${work}/ns-hosts /etc/hosts`,
      `exec ./node_modules/.bin/bun app/main.ts all --config ${config}`,
    ].join("\n");
    gateway = Bun.spawn(["unshare", "-m", "--propagation", "private", "bash", "-c", setup], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: path.join(work, "home"), CLAWPATROL_SECRET_API: SECRET },
      stdout: "ignore",
      stderr: "pipe",
    });
    void (async () => {
      const reader = (gateway.stderr as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        gatewayErr += decoder.decode(value, { stream: true });
      }
    })();
    const deadline = Date.now() + 90_000;
    let m: RegExpExecArray | null = null;
    while (!(m = /proxy \(HTTP CONNECT and SOCKS5\): (127\.0\.0\.1:\d+)/.exec(gatewayErr))) {
      if (Date.now() > deadline || gateway.exitCode !== null) throw new Error(`the gateway did not start:\n${gatewayErr}`);
      await Bun.sleep(50);
    }
    proxyUrl = `http://${m[1]}`;
  });

  afterAll(async () => {
    gateway?.kill("SIGTERM");
    const ended = await Promise.race([gateway?.exited, Bun.sleep(10_000).then(() => "timeout")]);
    if (ended === "timeout") gateway?.kill("SIGKILL");
    up?.stop();
    index?.stop(true);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const curlWithGatewayCa = (p: string) =>
    inNs(["curl", "-sS", "--max-time", "30", "--cacert", path.join(stateDir, "ca.crt"), "-x", proxyUrl, "-o", "/dev/null", "-w", "%{http_code}", `https://localhost:${up.port}${p}`]);

  test("the gateway verifies an upstream against the system store, and sees a CA added to it without a restart", async () => {
    const before = await curlWithGatewayCa("/echo?from=before");
    expect(before.out).toBe("502");
    const refused = await eventWhere((e) => e.kind === "http" && e.path === "/echo?from=before");
    expect(refused.status).toBe(502);

    const add = await inNs(["sh", "-c", `cp ${pki.caCertPath} /usr/local/share/ca-certificates/upstream-test.crt && update-ca-certificates`]);
    expect(add.code, add.err).toBe(0);
    expect(add.out).toMatch(/[1-9]\d* added/);
    // The store is checked for a change at most every 5 s.
    let status = "";
    for (let i = 0; i < 60 && status !== "200"; i++) {
      status = (await curlWithGatewayCa(`/echo?from=after-${i}`)).out;
      if (status !== "200") await Bun.sleep(500);
    }
    expect(status).toBe("200");
    // The machine's own store never had it.
    expect(readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8")).not.toContain(pki.caCertPem.split("\n")[1]!);
  });

  test("a device that trusts the gateway CA as README says: curl, wget, Python requests and pip with no CA option", async () => {
    // README: sudo cp .state/ca.crt /usr/local/share/ca-certificates/clawpatrol.crt; sudo update-ca-certificates
    const trust = await inNs(["sh", "-c", `cp ${path.join(stateDir, "ca.crt")} /usr/local/share/ca-certificates/clawpatrol.crt && update-ca-certificates`]);
    expect(trust.code, trust.err).toBe(0);
    expect(trust.out).toMatch(/[1-9]\d* added/);
    const proxyEnv = { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, http_proxy: proxyUrl, https_proxy: proxyUrl };

    const curl = await inNs(["curl", "-sS", "--max-time", "30", "-x", proxyUrl, "-H", `Authorization: Bearer ${PLACEHOLDER}`, `https://localhost:${up.port}/echo?from=curl-store`]);
    expect(curl.code, curl.err).toBe(0);
    expect(up.seen.findLast((s) => s.path === "/echo?from=curl-store")?.headers["authorization"]).toBe(`Bearer ${SECRET}`);

    const wget = await inNs(["wget", "-q", "-O", "-", `https://localhost:${up.port}/echo?from=wget-store`], proxyEnv);
    expect(wget.code, wget.err).toBe(0);
    expect(JSON.parse(wget.out)).toMatchObject({ path: "/echo?from=wget-store" });

    const py = await inNs(
      ["/usr/bin/python3", "-c", "import requests, sys; r = requests.get(sys.argv[1], timeout=30); print(r.status_code)", `https://localhost:${up.port}/echo?from=python-store`],
      { ...proxyEnv, REQUESTS_CA_BUNDLE: "/etc/ssl/certs/ca-certificates.crt" },
    );
    expect(py.code, py.err).toBe(0);
    expect(py.out.trim()).toBe("200");

    const dest = path.join(work, "pip-dl");
    const pip = await inNs(
      ["/usr/bin/python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--index-url", `https://localhost:${index.port}/simple/`, "-d", dest, "clawpatrol-hello"],
      { ...proxyEnv, PIP_CONFIG_FILE: "/dev/null" },
    );
    expect(pip.code, pip.err + pip.out).toBe(0);
    expect(existsSync(path.join(dest, wheel.name))).toBe(true);

    for (const p of ["/echo?from=curl-store", "/echo?from=wget-store", "/echo?from=python-store"]) {
      expect(await eventWhere((e) => e.kind === "http" && e.path === p)).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200 });
    }
    expect(await eventWhere((e) => e.kind === "http" && e.port === index.port && e.path === "/simple/clawpatrol-hello/")).toMatchObject({ verdict: "allow", status: 200 });
    expect(await eventWhere((e) => e.kind === "http" && e.port === index.port && e.path === `/files/${wheel.name}`)).toMatchObject({ verdict: "allow", status: 200 });
  });
  test.skipIf(!haveGo && process.env.CI !== "true")("Go's net/http with HTTPS_PROXY and the system store; NO_PROXY honoured", async () => {
    const src = path.join(work, "gofetch");
    mkdirSync(src, { recursive: true });
    writeFileSync(
      path.join(src, "main.go"),
      `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
)

// GET argv[1] with argv[2] as a bearer token through http.DefaultClient (ProxyFromEnvironment, the system roots).
func main() {
	req, err := http.NewRequest("GET", os.Args[1], nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	req.Header.Set("Authorization", "Bearer "+os.Args[2])
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	io.Copy(io.Discard, r.Body)
	fmt.Println(r.StatusCode)
}
`,
    );
    const goEnv = { GOCACHE: path.join(work, "gocache"), GOPATH: path.join(work, "gopath"), GO111MODULE: "off", GOFLAGS: "" };
    const built = await inNs(["go", "build", "-o", path.join(src, "fetch"), path.join(src, "main.go")], goEnv);
    expect(built.code, built.err).toBe(0);
    const url = (from: string) => `https://${GO_HOST}:${up.port}/echo?from=${from}`;

    const proxied = await inNs([path.join(src, "fetch"), url("go-proxy"), PLACEHOLDER], { HTTPS_PROXY: proxyUrl, NO_PROXY: "" });
    expect(proxied.code, proxied.out + proxied.err).toBe(0);
    expect(proxied.out.trim()).toBe("200");
    expect(up.seen.findLast((x) => x.path === "/echo?from=go-proxy")?.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(await eventWhere((e) => e.kind === "http" && e.path === "/echo?from=go-proxy")).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200, host: GO_HOST });

    // Straight to the upstream (its CA is in the namespace's store since the first test): the placeholder arrives as sent.
    const direct = await inNs([path.join(src, "fetch"), url("go-no-proxy"), PLACEHOLDER], { HTTPS_PROXY: proxyUrl, NO_PROXY: GO_HOST });
    expect(direct.code, direct.out + direct.err).toBe(0);
    expect(up.seen.findLast((x) => x.path === "/echo?from=go-no-proxy")?.headers["authorization"]).toBe(`Bearer ${PLACEHOLDER}`);
  });
});
