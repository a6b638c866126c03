// The discovery service at https://clawpatrol.internal/ through the real flow
// shell: a TCP connection handed to handleFlow as a Flow, TLS terminated with
// a leaf for clawpatrol.internal the gateway CA signs, HTTP/1.1 over it.
// A secret is configured for every credential; no response may contain it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import tls from "node:tls";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { handleFlow, type FlowDeps } from "../../../app/dispatch/handle.ts";
import { newFlowId, type DeviceIdentity } from "../../../app/dispatch/flow.ts";
import { loadOrCreateCA, type CertificateAuthority } from "../../../app/tls/ca.ts";
import { LeafCertificates } from "../../../app/tls/leaf.ts";
import { UpstreamPool } from "../../../app/endpoints/https/upstream.ts";
import { buildManifest, manifestText, route } from "../../../app/endpoints/internal.ts";
import { pluginFor } from "../../../app/credentials/plugin.ts";
import type { Policy } from "../../../app/policy/types.ts";
import { policyFrom } from "../policy/helpers.ts";

const SECRET = "s3cret-Value-9f8e7d6c5b4a";
const dir = mkdtempSync(join(tmpdir(), "clawpatrol-internal-"));
const secretFile = join(dir, "secret");
writeFileSync(secretFile, SECRET + "\n");

const HCL = `
schema_version = 1
defaults {
  unknown_host = "deny"
}
endpoint "https" "github" {
  hosts      = ["api.github.com", "*.githubusercontent.com"]
  credential = github_token.gh
}
endpoint "https" "corp" {
  hosts = ["git.corp.example"]
  ports = [8443, 443]
}
endpoint "https" "hidden" {
  hosts = ["hidden.example"]
}
credential "github_token" "gh" {
  secret_file = "${secretFile}"
}
credential "header_token" "corp" {
  header      = "X-Corp-Token"
  prefix      = "Token "
  secret_file = "${secretFile}"
}
credential "basic_auth" "reg" {
  username    = "robot"
  secret_file = "${secretFile}"
}
credential "bearer_token" "other" {
  secret_file = "${secretFile}"
}
profile "dev" {
  credentials = [github_token.gh, header_token.corp, basic_auth.reg]
  endpoints   = [https.github, https.corp]
}
profile "other" {
  credentials = [bearer_token.other]
}
`;

let policy: Policy;
let ca: CertificateAuthority;
let server: net.Server;
const device: DeviceIdentity = { name: "laptop", profile: "dev" };
const events: unknown[] = [];
const responses: string[] = [];

beforeAll(async () => {
  policy = await policyFrom(HCL);
  ca = await loadOrCreateCA(join(dir, "state"));
  const deps: FlowDeps = {
    policy: () => policy,
    secretFor: () => ({ ok: true, value: SECRET, needles: [SECRET] }),
    publish: (e) => events.push(e),
    pool: new UpstreamPool(),
    leaves: new LeafCertificates(ca),
    caCertPem: ca.certPem,
    redact: (s) => s.split(SECRET).join("[redacted]"),
  };
  server = net.createServer((conn) => {
    void handleFlow(
      { id: newFlowId(), proto: "tcp", src: { host: "10.77.0.2", port: conn.remotePort ?? 1 }, dst: { host: "10.77.0.1", port: 443 }, device, conn, startedAt: Date.now() },
      deps,
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
});

afterAll(() => server?.close());

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string;
  peerCert: tls.PeerCertificate;
}

/** Send raw requests over one TLS connection (the last closes it) and return everything read. */
async function raw(requests: string, servername = "clawpatrol.internal"): Promise<{ text: string; peerCert: tls.PeerCertificate }> {
  const port = (server.address() as net.AddressInfo).port;
  const sock = tls.connect({ host: "127.0.0.1", port, servername, ca: ca.certPem, ALPNProtocols: ["http/1.1"] });
  const chunks: Buffer[] = [];
  let peerCert: tls.PeerCertificate | undefined;
  await new Promise<void>((resolve, reject) => {
    sock.on("secureConnect", () => {
      peerCert = sock.getPeerCertificate();
      sock.write(requests);
    });
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.on("end", () => resolve());
    sock.on("error", reject);
  });
  sock.destroy();
  const text = Buffer.concat(chunks).toString("utf8");
  responses.push(text);
  return { text, peerCert: peerCert! };
}

async function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
  const head = `${method} ${path} HTTP/1.1\r\nHost: clawpatrol.internal\r\nConnection: close\r\n` + Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") + "\r\n";
  const { text, peerCert } = await raw(head);
  const split = text.indexOf("\r\n\r\n");
  const lines = text.slice(0, split).split("\r\n");
  const status = Number(lines[0]!.split(" ")[1]);
  const hs: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    hs[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status, headers: hs, body: text.slice(split + 4), peerCert };
}

describe("https://clawpatrol.internal/", () => {
  test("TLS is terminated with a leaf for clawpatrol.internal signed by the gateway CA", async () => {
    const r = await get("/");
    expect(r.peerCert.subjectaltname).toContain("DNS:clawpatrol.internal");
    expect(r.status).toBe(200);
    expect(r.body).toContain("/ca.crt");
    expect(r.body).toContain("/manifest");
  });

  test("GET /ca.crt is the gateway CA as PEM", async () => {
    const r = await get("/ca.crt");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/x-pem-file");
    expect(r.body).toBe(ca.certPem);
  });

  test("GET /manifest?format=json: the device's profile, endpoints and placeholders", async () => {
    const r = await get("/manifest?format=json");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toBe("application/json");
    const m = JSON.parse(r.body);
    expect(m.device).toBe("laptop");
    expect(m.profile).toBe("dev");
    expect(m.endpoints.map((e: { ref: string }) => e.ref)).toEqual(["https.github", "https.corp"]);
    expect(m.endpoints[0]).toMatchObject({ name: "github", hosts: ["api.github.com", "*.githubusercontent.com"], ports: [443] });
    expect(m.endpoints[1]).toMatchObject({ name: "corp", hosts: ["git.corp.example"], ports: [8443, 443] });
    const gh = policy.credentials.get("github_token.gh")!;
    expect(m.credentials).toEqual([
      { ref: "github_token.gh", type: "github_token", placeholder: pluginFor("github_token").placeholder(gh), slot: expect.stringContaining("Authorization: Bearer ghp_"), endpoints: ["https.github"] },
      { ref: "header_token.corp", type: "header_token", placeholder: "clawpatrol-placeholder-corp", slot: "X-Corp-Token: Token clawpatrol-placeholder-corp", endpoints: [] },
      { ref: "basic_auth.reg", type: "basic_auth", placeholder: "clawpatrol-placeholder-reg", slot: expect.stringContaining("robot:clawpatrol-placeholder-reg"), endpoints: [] },
    ]);
    expect(r.body).not.toContain("hidden.example");
    expect(r.body).not.toContain("bearer_token.other");
  });

  test("Accept: application/json selects JSON too; otherwise a text table", async () => {
    const j = await get("/manifest", { Accept: "application/json" });
    expect(JSON.parse(j.body).profile).toBe("dev");
    const t = await get("/manifest");
    expect(t.headers["content-type"]).toStartWith("text/plain");
    expect(t.body).toContain("device:   laptop");
    expect(t.body).toContain("profile:  dev");
    expect(t.body).toMatch(/https\.github\s+api\.github\.com, \*\.githubusercontent\.com\s+443/);
    expect(t.body).toMatch(/header_token\.corp\s+header_token\s+clawpatrol-placeholder-corp\s+X-Corp-Token: Token clawpatrol-placeholder-corp/);
    expect(t.body).toBe(manifestText(buildManifest(policy, device)));
  });

  test("HEAD, unknown paths and other methods", async () => {
    const h = await get("/ca.crt", {}, "HEAD");
    expect(h.status).toBe(200);
    expect(h.body).toBe("");
    expect(Number(h.headers["content-length"])).toBe(Buffer.byteLength(ca.certPem));
    expect((await get("/nope")).status).toBe(404);
    const p = await get("/manifest", {}, "POST");
    expect(p.status).toBe(405);
    expect(p.headers.allow).toBe("GET, HEAD");
  });

  test("keep-alive: several requests on one connection", async () => {
    const { text } = await raw(
      "GET / HTTP/1.1\r\nHost: clawpatrol.internal\r\n\r\n" +
        "GET /manifest?format=json HTTP/1.1\r\nHost: clawpatrol.internal\r\n\r\n" +
        "GET /ca.crt HTTP/1.1\r\nHost: clawpatrol.internal\r\nConnection: close\r\n\r\n",
    );
    expect(text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(3);
    expect(text).toContain(ca.certPem);
  });

  test("malformed requests get 400 and a closed connection", async () => {
    const { text } = await raw("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
    expect(text).toStartWith("HTTP/1.1 400");
  });

  test("another profile sees its own manifest; an unknown profile none", () => {
    const other = buildManifest(policy, { name: "box", profile: "other" });
    expect(other.endpoints.map((e) => e.ref)).toEqual(["https.github", "https.corp", "https.hidden"]);
    expect(other.credentials.map((c) => c.ref)).toEqual(["bearer_token.other"]);
    expect(other.credentials[0]!.slot).toBe("Authorization: Bearer clawpatrol-placeholder-other");
    const ghost = buildManifest(policy, { name: "x", profile: "ghost" });
    expect(ghost.endpoints).toEqual([]);
    expect(ghost.credentials).toEqual([]);
    for (const r of [route("GET", "/manifest", [], { name: "box", profile: "other" }, { policy: () => policy }),
      route("GET", "/manifest?format=json", [], { name: "box", profile: "other" }, { policy: () => policy })]) {
      responses.push(r.body);
    }
  });

  test("no response ever contains the secret, in any form", () => {
    expect(responses.length).toBeGreaterThan(8);
    const forms = [SECRET, Buffer.from(SECRET).toString("base64"), Buffer.from(`robot:${SECRET}`).toString("base64"), encodeURIComponent(SECRET)];
    for (const text of responses) for (const f of forms) expect(text).not.toContain(f);
  });

  test("no events are published for discovery connections", () => {
    expect(events).toEqual([]);
  });
});
