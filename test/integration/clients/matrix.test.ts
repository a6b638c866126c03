// Everyday clients nobody here wrote, through the explicit proxy with the
// usual variables (HTTP_PROXY, HTTPS_PROXY, the gateway's CA): Debian's
// python3-requests, apt with Acquire::http::Proxy against a file-served
// repository, git clone over HTTPS from git http-backend, npm install and
// bun install from a registry fixture over TLS, undici's EnvHttpProxyAgent
// under the real node (and Node's own fetch with NODE_USE_ENV_PROXY). Each
// checks that its requests were judged and recorded.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import path from "node:path";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

setDefaultTimeout(120_000);

const SECRET = "sk-live-MATRIX-secret-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-api";

let work: string;
let pki: TestPki;
let tlsUp: TestUpstream;
let plainUp: TestUpstream;
let repo: { port: number; proc: ReturnType<typeof Bun.spawn> };
let gitServer: ReturnType<typeof Bun.serve>;
let registry: ReturnType<typeof Bun.serve>;
let t: TestGateway;

async function run(cmd: string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number; out: string; err: string }> {
  const proc = Bun.spawn(cmd, { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: work, ...env }, stdout: "pipe", stderr: "pipe", ...(cwd ? { cwd } : {}) });
  const timer = setTimeout(() => proc.kill(), 90_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out, err };
}

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/**
 * A Debian repository of one package, flat in a directory (`deb [trusted=yes]
 * URL flat/`), served by python3 -m http.server. (Not `URL ./`: apt then asks
 * for `/./Packages`, and a dot-segment in a path is refused before any rule.)
 */
async function startAptRepo(dir: string): Promise<{ port: number; proc: ReturnType<typeof Bun.spawn> }> {
  const pkg = path.join(dir, "build", "clawpatrol-hello");
  mkdirSync(path.join(pkg, "DEBIAN"), { recursive: true });
  mkdirSync(path.join(pkg, "usr", "share", "clawpatrol-hello"), { recursive: true });
  writeFileSync(path.join(pkg, "usr", "share", "clawpatrol-hello", "hello.txt"), "hello from the test repository\n");
  writeFileSync(
    path.join(pkg, "DEBIAN", "control"),
    "Package: clawpatrol-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: test <test@example.com>\nDescription: a test package\n",
  );
  const served = path.join(dir, "repo");
  mkdirSync(path.join(served, "flat"), { recursive: true });
  const built = await run(["dpkg-deb", "--build", "--root-owner-group", pkg, path.join(served, "flat", "clawpatrol-hello_1.0_all.deb")]);
  if (built.code !== 0) throw new Error(built.err);
  const scanned = await run(["sh", "-c", "dpkg-scanpackages --multiversion flat /dev/null > flat/Packages && gzip -k flat/Packages"], {}, served);
  if (scanned.code !== 0) throw new Error(scanned.err);
  const port = await freePort();
  const proc = Bun.spawn(["/usr/bin/python3", "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", served], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 500; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/flat/Packages`).then((r) => r.ok, () => false);
    if (ok) return { port, proc };
    await Bun.sleep(20);
  }
  proc.kill();
  throw new Error("http.server did not start");
}

/** git http-backend as CGI behind Bun.serve over TLS (the smart HTTP protocol). */
function startGitServer(root: string): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: pki.certPem, key: pki.keyPem },
    async fetch(req) {
      const url = new URL(req.url);
      const body = new Uint8Array(await req.arrayBuffer());
      const proc = Bun.spawn(["git", "http-backend"], {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: "1",
          REQUEST_METHOD: req.method,
          PATH_INFO: decodeURIComponent(url.pathname),
          QUERY_STRING: url.search.slice(1),
          CONTENT_TYPE: req.headers.get("content-type") ?? "",
          CONTENT_LENGTH: String(body.length),
          REMOTE_ADDR: "127.0.0.1",
        },
        stdin: body,
        stdout: "pipe",
        stderr: "ignore",
      });
      const out = Buffer.from(await new Response(proc.stdout).arrayBuffer());
      await proc.exited;
      const end = out.indexOf("\r\n\r\n");
      const split = end >= 0 ? end : out.indexOf("\n\n");
      const headText = out.subarray(0, split).toString("latin1");
      const rest = out.subarray(split + (end >= 0 ? 4 : 2));
      const headers = new Headers();
      let status = 200;
      for (const line of headText.split(/\r?\n/)) {
        const colon = line.indexOf(":");
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number(value.split(" ")[0]);
        else headers.append(name, value);
      }
      return new Response(rest, { status, headers });
    },
  });
}

/** An npm registry of one package (`clawpatrol-left-pad@1.0.0`) over TLS: its packument and its tarball. */
async function startRegistry(dir: string): Promise<ReturnType<typeof Bun.serve>> {
  const pkg = path.join(dir, "npm-src");
  mkdirSync(pkg, { recursive: true });
  writeFileSync(path.join(pkg, "package.json"), JSON.stringify({ name: "clawpatrol-left-pad", version: "1.0.0", main: "index.js" }));
  writeFileSync(path.join(pkg, "index.js"), "module.exports = (s, n) => String(s).padStart(n);\n");
  const packed = await run(["npm", "pack", "--silent", "--pack-destination", dir], { npm_config_cache: path.join(dir, "npm-cache") }, pkg);
  if (packed.code !== 0) throw new Error(packed.err);
  const tarball = readFileSync(path.join(dir, "clawpatrol-left-pad-1.0.0.tgz"));
  const integrity = "sha512-" + createHash("sha512").update(tarball).digest("base64");
  const shasum = createHash("sha1").update(tarball).digest("hex");
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: pki.certPem, key: pki.keyPem },
    fetch(req, srv) {
      const url = new URL(req.url);
      const base = `https://localhost:${srv.port}`;
      if (url.pathname === "/clawpatrol-left-pad") {
        return Response.json({
          name: "clawpatrol-left-pad",
          "dist-tags": { latest: "1.0.0" },
          versions: {
            "1.0.0": { name: "clawpatrol-left-pad", version: "1.0.0", main: "index.js", dist: { tarball: `${base}/clawpatrol-left-pad/-/clawpatrol-left-pad-1.0.0.tgz`, integrity, shasum } },
          },
        });
      }
      if (url.pathname === "/clawpatrol-left-pad/-/clawpatrol-left-pad-1.0.0.tgz") return new Response(tarball, { headers: { "content-type": "application/octet-stream" } });
      return new Response(JSON.stringify({ error: "not found" }), { status: 404 });
    },
  });
}

beforeAll(async () => {
  work = tempDir("matrix");
  pki = makeTestPki(path.join(work, "pki"), ["localhost"]);
  tlsUp = startUpstream(pki);
  plainUp = startUpstream(undefined, { plain: true });
  repo = await startAptRepo(work);
  // A bare repository with one commit, served by git http-backend.
  const src = path.join(work, "src");
  mkdirSync(src);
  for (const c of [
    ["git", "init", "-q", "-b", "main", src],
    ["git", "-C", src, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "first"],
    ["git", "clone", "-q", "--bare", src, path.join(work, "git", "hello.git")],
  ]) {
    const r = await run(c);
    if (r.code !== 0) throw new Error(`${c.join(" ")}: ${r.err}`);
  }
  gitServer = startGitServer(path.join(work, "git"));
  registry = await startRegistry(work);
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
  profile = profile.agents
}
endpoint "https" "local" {
  hosts = ["localhost"]
  ports = [${tlsUp.port}, ${plainUp.port}, ${repo.port}, ${gitServer.port}, ${registry.port}]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.api
}
credential "bearer_token" "api" {}
profile "agents" {
  credentials = [bearer_token.api]
}
rule "no-git-push" {
  endpoint = https.local
  condition = "http.path.endsWith('/git-receive-pack') || ('service' in http.query && http.query['service'] == 'git-receive-pack')"
  verdict = "deny"
  reason = "no pushes from agents"
}
`,
    { CLAWPATROL_SECRET_API: SECRET },
  );
});

afterAll(async () => {
  await t?.stop();
  tlsUp?.stop();
  plainUp?.stop();
  repo?.proc.kill();
  gitServer?.stop(true);
  registry?.stop(true);
});

const proxyEnv = () => ({ HTTP_PROXY: t.proxyUrl, HTTPS_PROXY: t.proxyUrl, http_proxy: t.proxyUrl, https_proxy: t.proxyUrl, NO_PROXY: "", no_proxy: "" });

function eventsWhere(match: (e: GatewayEvent) => boolean): GatewayEvent[] {
  return t.events.filter(match);
}

async function eventWhere(match: (e: GatewayEvent) => boolean): Promise<GatewayEvent> {
  for (let i = 0; i < 500; i++) {
    const e = t.events.findLast(match);
    if (e) return e;
    await Bun.sleep(10);
  }
  throw new Error(`no such event among ${JSON.stringify(t.events.slice(-5))}`);
}

describe("Python requests (Debian's python3-requests) with HTTP_PROXY and HTTPS_PROXY", () => {
  test("http:// and https:// both judged and recorded; the credential injected only over https", async () => {
    const script = `
import requests, sys, json
out = []
for url in sys.argv[1:]:
    r = requests.get(url, headers={"Authorization": "Bearer ${PLACEHOLDER}"}, timeout=30)
    out.append({"status": r.status_code, "auth": r.json()["headers"].get("authorization")})
print(json.dumps(out))
`;
    const r = await run(
      ["/usr/bin/python3", "-c", script, `http://localhost:${plainUp.port}/echo?from=python`, `https://localhost:${tlsUp.port}/echo?from=python`],
      { ...proxyEnv(), REQUESTS_CA_BUNDLE: t.caPath },
    );
    expect(r.code, r.err).toBe(0);
    const [plain, secure] = JSON.parse(r.out) as { status: number; auth: string }[];
    expect(plain).toEqual({ status: 200, auth: `Bearer ${PLACEHOLDER}` });
    expect(secure!.status).toBe(200);
    expect(tlsUp.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    const e1 = await eventWhere((x) => x.kind === "http" && x.path === "/echo?from=python" && x.port === plainUp.port);
    const e2 = await eventWhere((x) => x.kind === "http" && x.path === "/echo?from=python" && x.port === tlsUp.port);
    expect(e1).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200, action: { scheme: "http" } });
    expect(e2).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200, credential: "bearer_token.api" });
  });
});

describe("apt with Acquire::http::Proxy", () => {
  test("apt-get update and download from a file-served repository, every request judged and recorded", async () => {
    const root = path.join(work, "apt");
    for (const d of ["lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d", "dl"]) mkdirSync(path.join(root, d), { recursive: true });
    writeFileSync(path.join(root, "status"), "");
    writeFileSync(path.join(root, "etc", "sources.list"), `deb [trusted=yes allow-insecure=yes] http://localhost:${repo.port}/ flat/\n`);
    const opts = [
      "-o", `Dir::Etc=${path.join(root, "etc")}`,
      "-o", `Dir::Etc::sourcelist=${path.join(root, "etc", "sources.list")}`,
      "-o", "Dir::Etc::sourceparts=-",
      "-o", `Dir::State::Lists=${path.join(root, "lists")}`,
      "-o", `Dir::State::status=${path.join(root, "status")}`,
      "-o", `Dir::Cache=${path.join(root, "cache")}`,
      "-o", `Acquire::http::Proxy=${t.proxyUrl}`,
      "-o", "APT::Sandbox::User=root",
      "-o", "Acquire::Retries=0",
    ];
    const update = await run(["apt-get", ...opts, "update"]);
    expect(update.code, update.err + update.out).toBe(0);
    const dl = await run(["apt-get", ...opts, "download", "clawpatrol-hello"], {}, path.join(root, "dl"));
    expect(dl.code, dl.err + dl.out).toBe(0);
    expect(await Bun.file(path.join(root, "dl", "clawpatrol-hello_1.0_all.deb")).exists()).toBe(true);
    const deb = await eventWhere((x) => x.kind === "http" && x.port === repo.port && (x.path ?? "").endsWith(".deb"));
    expect(deb).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200, method: "GET", host: "localhost" });
    const lists = eventsWhere((x) => x.kind === "http" && x.port === repo.port && /Packages/.test(x.path ?? ""));
    expect(lists.some((x) => x.status === 200)).toBe(true);
  });
});

describe("git over HTTPS (git http-backend) with HTTPS_PROXY", () => {
  test("git clone goes through, each request judged and recorded; a push is denied by a rule on its path", async () => {
    const dest = path.join(work, "clone");
    const env = { ...proxyEnv(), GIT_SSL_CAINFO: t.caPath, GIT_TERMINAL_PROMPT: "0" };
    const clone = await run(["git", "clone", "-q", `https://localhost:${gitServer.port}/hello.git`, dest], env);
    expect(clone.code, clone.err).toBe(0);
    expect((await run(["git", "-C", dest, "log", "--format=%s"])).out.trim()).toBe("first");
    const refs = await eventWhere((x) => x.kind === "http" && x.port === gitServer.port && (x.path ?? "").includes("/info/refs"));
    expect(refs).toMatchObject({ verdict: "allow", status: 200 });
    await eventWhere((x) => x.kind === "http" && x.port === gitServer.port && (x.path ?? "").endsWith("/git-upload-pack") && x.status === 200);
    const commit = await run(["git", "-C", dest, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "second"]);
    expect(commit.code).toBe(0);
    const push = await run(["git", "-C", dest, "push", "-q", "origin", "main"], env);
    expect(push.code).not.toBe(0);
    const denied = await eventWhere((x) => x.kind === "http" && x.port === gitServer.port && x.verdict === "deny");
    expect(denied.rule).toBe("no-git-push");
  });
});

describe("package managers from a registry over TLS, with HTTPS_PROXY", () => {
  const project = (name: string) => {
    const dir = path.join(work, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version: "0.0.0", private: true, dependencies: { "clawpatrol-left-pad": "1.0.0" } }));
    return dir;
  };

  test("npm install: the packument and the tarball judged and recorded", async () => {
    const dir = project("npm-app");
    const r = await run(
      ["npm", "install", "--no-audit", "--no-fund", "--registry", `https://localhost:${registry.port}/`, "--cafile", t.caPath],
      { ...proxyEnv(), npm_config_cache: path.join(work, "npm-cache-install"), npm_config_update_notifier: "false" },
      dir,
    );
    expect(r.code, r.err).toBe(0);
    expect(await Bun.file(path.join(dir, "node_modules", "clawpatrol-left-pad", "index.js")).exists()).toBe(true);
    await eventWhere((x) => x.kind === "http" && x.port === registry.port && x.path === "/clawpatrol-left-pad" && x.status === 200);
    const tgz = await eventWhere((x) => x.kind === "http" && x.port === registry.port && (x.path ?? "").endsWith(".tgz"));
    expect(tgz).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200 });
  });

  test("bun install: the same registry through the proxy, judged and recorded", async () => {
    const dir = project("bun-app");
    writeFileSync(path.join(dir, "bunfig.toml"), `[install]\nregistry = "https://localhost:${registry.port}/"\ncafile = "${t.caPath}"\n`);
    const before = eventsWhere((x) => x.kind === "http" && x.port === registry.port).length;
    const r = await run([process.execPath, "install", "--no-save"], { ...proxyEnv(), BUN_INSTALL_CACHE_DIR: path.join(work, "bun-cache") }, dir);
    expect(r.code, r.err + r.out).toBe(0);
    expect(await Bun.file(path.join(dir, "node_modules", "clawpatrol-left-pad", "index.js")).exists()).toBe(true);
    // Its own packument and tarball requests, past those npm made.
    const mine = t.events.filter((x) => x.kind === "http" && x.port === registry.port).slice(before);
    expect(mine.map((x) => `${x.method} ${x.path} ${x.status}`)).toEqual(
      expect.arrayContaining(["GET /clawpatrol-left-pad 200", "GET /clawpatrol-left-pad/-/clawpatrol-left-pad-1.0.0.tgz 200"]),
    );
  });
});

describe("Node's undici EnvHttpProxyAgent (undici 7, under the real node)", () => {
  // Node 20 is what Debian gives; undici 8 needs Node 22.
  const NODE = "/usr/bin/node";
  const UNDICI = path.resolve(import.meta.dir, "../../../node_modules/undici");
  /** Fetches each URL with EnvHttpProxyAgent (or Node's own fetch with `global`), printing status and body, or the error's code. */
  const script = (global: boolean) => `
const { EnvHttpProxyAgent, fetch: undiciFetch } = require(${JSON.stringify(UNDICI)});
const agent = new EnvHttpProxyAgent();
(async () => {
  const out = [];
  for (const url of process.argv.slice(1)) {
    try {
      const headers = { authorization: "Bearer ${PLACEHOLDER}" };
      const r = ${global ? "await fetch(url, { headers })" : "await undiciFetch(url, { dispatcher: agent, headers })"};
      out.push({ status: r.status, body: await r.text() });
    } catch (e) {
      out.push({ error: String((e.cause && e.cause.code) || e.message) });
    }
  }
  console.log(JSON.stringify(out));
  await agent.close();
})();
`;
  const node = async (args: string[], env: Record<string, string>): Promise<{ status?: number; body?: string; error?: string }[]> => {
    const r = await run([NODE, "-e", script(false), ...args], env);
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out);
  };
  /** The upstream's view of a request: its Authorization says whether it came through the gateway (the secret) or straight (the placeholder). */
  const authSeen = (up: TestUpstream, p: string) => up.seen.findLast((s) => s.path === p)?.headers["authorization"];

  test("https:// and http:// through HTTPS_PROXY/HTTP_PROXY, the gateway CA from NODE_EXTRA_CA_CERTS: judged, recorded, the credential injected over https", async () => {
    const [secure, plain] = await node(
      [`https://localhost:${tlsUp.port}/echo?from=undici`, `http://localhost:${plainUp.port}/echo?from=undici`],
      { ...proxyEnv(), NODE_EXTRA_CA_CERTS: t.caPath },
    );
    expect(secure).toMatchObject({ status: 200 });
    expect(plain).toMatchObject({ status: 200 });
    expect(authSeen(tlsUp, "/echo?from=undici")).toBe(`Bearer ${SECRET}`);
    expect(authSeen(plainUp, "/echo?from=undici")).toBe(`Bearer ${PLACEHOLDER}`);
    const e1 = await eventWhere((x) => x.kind === "http" && x.path === "/echo?from=undici" && x.port === tlsUp.port);
    expect(e1).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200, credential: "bearer_token.api" });
    const e2 = await eventWhere((x) => x.kind === "http" && x.path === "/echo?from=undici" && x.port === plainUp.port);
    expect(e2).toMatchObject({ verdict: "allow", endpoint: "https.local", status: 200, action: { scheme: "http" } });
  });

  test("NO_PROXY is honoured: a listed host is fetched straight, its certificate from its own CA", async () => {
    const both = path.join(work, "undici-roots.pem");
    writeFileSync(both, `${readFileSync(t.caPath, "utf8").trim()}\n${pki.caCertPem}`);
    const [direct] = await node([`https://localhost:${tlsUp.port}/echo?from=undici-no-proxy`], {
      ...proxyEnv(),
      NO_PROXY: "localhost",
      no_proxy: "localhost",
      NODE_EXTRA_CA_CERTS: both,
    });
    expect(direct).toMatchObject({ status: 200 });
    // Straight to the upstream: the placeholder arrives as sent, no secret injected.
    expect(authSeen(tlsUp, "/echo?from=undici-no-proxy")).toBe(`Bearer ${PLACEHOLDER}`);
    // And the gateway's CA alone does not verify the upstream's own certificate: the request went nowhere near the gateway.
    const [refused] = await node([`https://localhost:${tlsUp.port}/echo?from=undici-no-proxy-2`], {
      ...proxyEnv(),
      NO_PROXY: "localhost",
      no_proxy: "localhost",
      NODE_EXTRA_CA_CERTS: t.caPath,
    });
    expect(refused!.error).toMatch(/CERT|SIGNATURE|ISSUER/);
  });

  test("Node's own fetch with NODE_USE_ENV_PROXY=1: through the gateway from Node 22.21/24, ignored by Node 20", async () => {
    const both = path.join(work, "undici-roots.pem");
    writeFileSync(both, `${readFileSync(t.caPath, "utf8").trim()}\n${pki.caCertPem}`);
    const version = (await run([NODE, "-p", "process.versions.node"])).out.trim();
    const [major, minor] = version.split(".").map(Number) as [number, number];
    const supported = major >= 24 || (major === 22 && minor >= 21);
    const r = await run([NODE, "-e", script(true), `https://localhost:${tlsUp.port}/echo?from=node-fetch`], {
      ...proxyEnv(),
      NODE_USE_ENV_PROXY: "1",
      NODE_EXTRA_CA_CERTS: both,
    });
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)[0]).toMatchObject({ status: 200 });
    expect(authSeen(tlsUp, "/echo?from=node-fetch")).toBe(`Bearer ${supported ? SECRET : PLACEHOLDER}`);
  });
});
