// The real curl through the explicit proxy, as HTTP_PROXY/HTTPS_PROXY users
// run it: plain http:// forwarded as a forward proxy does (each request
// judged with http.scheme == "http", the credential kept out of clear text
// unless the endpoint allows it, unclaimed hosts by unknown_host and the
// destination policy), https:// through CONNECT as before, and refusals at
// the proxy's door recorded as events.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import path from "node:path";
import net from "node:net";
import { rmSync } from "node:fs";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { socksForward } from "../support/socks-forward.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

const SECRET = "sk-live-PLAIN-secret-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-api";

// A loaded 2-core machine: curl, the gateway and four upstreams share it.
setDefaultTimeout(60_000);

let pki: TestPki;
let tlsUp: TestUpstream;
/** Claimed by https.api (credential kept out of clear text). */
let plainUp: TestUpstream;
/** Claimed by https.clear (allow_plaintext_credentials = true). */
let clearUp: TestUpstream;
/** Claimed by nobody, reachable only through allow_destinations. */
let openUp: TestUpstream;
let t: TestGateway;
let deny: TestGateway;

beforeAll(async () => {
  pki = makeTestPki(tempDir("pki"), ["api.test"]);
  tlsUp = startUpstream(pki);
  plainUp = startUpstream(undefined, { plain: true });
  clearUp = startUpstream(undefined, { plain: true });
  openUp = startUpstream(undefined, { plain: true });
  const endpoints = `
endpoint "https" "api" {
  hosts = ["api.test", "localhost"]
  ports = [${tlsUp.port}, ${plainUp.port}]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.api
}
endpoint "https" "clear" {
  hosts = ["localhost"]
  ports = [${clearUp.port}]
  credential = bearer_token.api
  allow_plaintext_credentials = true
}
credential "bearer_token" "api" {}
profile "agents" {
  credentials = [bearer_token.api]
}
rule "no-plain-deletes" {
  endpoints = [https.api, https.clear]
  condition = "http.scheme == 'http' && http.method == 'DELETE'"
  verdict = "deny"
  reason = "no deletes in clear text"
}
rule "tls-admin" {
  endpoint = https.api
  condition = "http.scheme == 'https' && http.path == '/admin'"
  verdict = "deny"
  reason = "admin over https is denied too"
}
`;
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
  profile = profile.agents
  allow_destinations = ["127.0.0.1:${openUp.port}"]
}
${endpoints}`,
    { CLAWPATROL_SECRET_API: SECRET },
  );
  deny = await startTestGateway(
    `
defaults {
  verdict = "allow"
  unknown_host = "deny"
  profile = profile.agents
  allow_destinations = ["127.0.0.1:${openUp.port}"]
}
${endpoints}`,
    { CLAWPATROL_SECRET_API: SECRET },
  );
});

afterAll(async () => {
  await t?.stop();
  await deny?.stop();
  for (const u of [tlsUp, plainUp, clearUp, openUp]) u?.stop();
});

interface Curl {
  exitCode: number;
  status: number;
  body: string;
  headers: string;
}

async function curl(g: TestGateway, url: string, extra: string[] = []): Promise<Curl> {
  const headerFile = path.join(g.dir, `h-${Math.random().toString(36).slice(2)}`);
  const proc = Bun.spawn(
    ["curl", "-sS", "--max-time", "30", "--noproxy", "", "-x", g.proxyUrl, "-D", headerFile, "-w", "\n%{http_code}", ...extra, url],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out, , exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const nl = out.lastIndexOf("\n");
  const headers = await Bun.file(headerFile).text().catch(() => "");
  rmSync(headerFile, { force: true });
  return { exitCode, status: Number(out.slice(nl + 1)), body: out.slice(0, nl), headers };
}

/** The latest event matching, waited for (events are published as the exchange ends). */
async function eventWhere(g: TestGateway, match: (e: GatewayEvent) => boolean): Promise<GatewayEvent> {
  for (let i = 0; i < 500; i++) {
    const e = g.events.findLast(match);
    if (e) return e;
    await Bun.sleep(10);
  }
  throw new Error(`no such event among ${JSON.stringify(g.events.slice(-5))}`);
}

describe("curl http:// through the proxy", () => {
  test("a claimed host is judged with http.scheme == 'http', forwarded in origin-form, and recorded", async () => {
    const before = plainUp.seen.length;
    const r = await curl(t, `http://localhost:${plainUp.port}/echo?x=1`, ["-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.exitCode).toBe(0);
    expect(r.status).toBe(200);
    const echoed = JSON.parse(r.body);
    expect(echoed.path).toBe("/echo?x=1");
    // Never in clear: the placeholder goes as the agent sent it, the proxy's own header not at all.
    expect(echoed.headers["authorization"]).toBe(`Bearer ${PLACEHOLDER}`);
    expect(echoed.headers["proxy-authorization"]).toBeUndefined();
    expect(plainUp.seen.length).toBe(before + 1);
    const e = await eventWhere(t, (x) => x.kind === "http" && x.path === "/echo?x=1");
    expect(e).toMatchObject({ verdict: "allow", status: 200, endpoint: "https.api", host: "localhost", port: plainUp.port, method: "GET" });
    expect(e.credential).toBeUndefined();
    expect(e.detail).toContain("not injected over plain HTTP");
    expect(e.summary).toBe(`GET http://localhost/echo?x=1`);
    expect(e.action).toMatchObject({ scheme: "http" });
  });

  test("a rule on http.scheme denies plain HTTP with 403 naming the rule; the upstream sees nothing", async () => {
    const before = plainUp.seen.length;
    const r = await curl(t, `http://localhost:${plainUp.port}/echo`, ["-X", "DELETE"]);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ rule: "no-plain-deletes" });
    expect(plainUp.seen.length).toBe(before);
    const e = await eventWhere(t, (x) => x.kind === "http" && x.method === "DELETE" && x.port === plainUp.port);
    expect(e).toMatchObject({ verdict: "deny", rule: "no-plain-deletes", status: 403 });
  });

  test("allow_plaintext_credentials = true: the credential is injected into plain HTTP, and masked on the way back", async () => {
    const r = await curl(t, `http://localhost:${clearUp.port}/echo`, ["-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.status).toBe(200);
    expect(clearUp.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(r.body).not.toContain(SECRET);
    const e = await eventWhere(t, (x) => x.kind === "http" && x.port === clearUp.port);
    expect(e).toMatchObject({ verdict: "allow", endpoint: "https.clear", credential: "bearer_token.api", status: 200 });
    expect(JSON.stringify(t.events)).not.toContain(SECRET);
  });

  test("a POST body streams through, and one proxy connection carries requests to two hosts", async () => {
    const file = path.join(t.dir, "upload.bin");
    await Bun.write(file, "x".repeat(300_000));
    const r = await curl(t, `http://localhost:${plainUp.port}/upload`, ["--data-binary", `@${file}`, "--next", "--noproxy", "", "-x", t.proxyUrl, `http://localhost:${clearUp.port}/echo`]);
    expect(r.exitCode).toBe(0);
    expect(r.body).toContain('"size":300000');
    const flows = new Set(t.events.filter((x) => x.kind === "http" && (x.path === "/upload" || x.port === clearUp.port)).slice(-2).map((x) => x.flowId));
    expect(flows.size).toBe(1);
  });

  test("an unclaimed host follows unknown_host = passthrough: forwarded unjudged where the destination policy allows, recorded", async () => {
    const r = await curl(t, `http://127.0.0.1:${openUp.port}/echo`, ["-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).headers["authorization"]).toBe(`Bearer ${PLACEHOLDER}`);
    const e = await eventWhere(t, (x) => x.kind === "http" && x.port === openUp.port);
    expect(e).toMatchObject({ verdict: "passthrough", status: 200, host: "127.0.0.1" });
    expect(e.endpoint).toBeUndefined();
  });

  test("an unclaimed host the destination policy refuses (the gateway's own loopback) is a 502, recorded", async () => {
    const dashboard = t.gw.publicServer.address;
    const r = await curl(t, `http://127.0.0.1:${dashboard.port}/`);
    expect(r.status).toBe(502);
    const e = await eventWhere(t, (x) => x.kind === "http" && x.port === dashboard.port);
    expect(e.status).toBe(502);
    expect(e.detail).toContain("destination refused");
  });

  test("unknown_host = deny: an unclaimed host is refused with 403 and recorded; a claimed one still goes", async () => {
    const r = await curl(deny, `http://127.0.0.1:${openUp.port}/echo`);
    expect(r.status).toBe(403);
    const e = await eventWhere(deny, (x) => x.kind === "http" && x.port === openUp.port);
    expect(e).toMatchObject({ verdict: "deny", status: 403 });
    expect(e.reason).toContain("unknown_host = deny");
    expect((await curl(deny, `http://localhost:${plainUp.port}/echo`)).status).toBe(200);
  });
});

describe("curl https:// through the proxy", () => {
  test("CONNECT, intercepted, the credential injected, judged with http.scheme == 'https'", async () => {
    const r = await curl(t, `https://api.test:${tlsUp.port}/echo`, ["--cacert", t.caPath, "--connect-to", `api.test:${tlsUp.port}:127.0.0.1:${tlsUp.port}`, "-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.status).toBe(200);
    expect(tlsUp.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    const denied = await curl(t, `https://api.test:${tlsUp.port}/admin`, ["--cacert", t.caPath, "--connect-to", `api.test:${tlsUp.port}:127.0.0.1:${tlsUp.port}`]);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body).rule).toBe("tls-admin");
    // The same path in clear text is not that rule's (its scheme is https).
    expect((await curl(t, `http://localhost:${plainUp.port}/admin`)).status).toBe(404);
  });
});

describe("curl http:// to a claimed host inside a tunnel (a flow to an address, as WireGuard and SOCKS5 make)", () => {
  test("judged and recorded like the proxy's requests, the Host naming the host; an unclaimed Host is relayed as before", async () => {
    const proxy = t.gw.proxies[0]!.address;
    const toPlain = await socksForward(proxy, { host: "127.0.0.1", port: plainUp.port });
    const toOpen = await socksForward(proxy, { host: "127.0.0.1", port: openUp.port });
    try {
      const run = async (port: number, p: string, extra: string[]) => {
        const proc = Bun.spawn(["curl", "-sS", "--max-time", "30", "--noproxy", "*", "-w", "\n%{http_code}", ...extra, `http://127.0.0.1:${port}${p}`], { stdout: "pipe", stderr: "pipe" });
        const out = await new Response(proc.stdout).text();
        await proc.exited;
        return { status: Number(out.slice(out.lastIndexOf("\n") + 1)), body: out.slice(0, out.lastIndexOf("\n")) };
      };
      const ok = await run(toPlain.port, "/echo?tunnel=1", ["-H", `Host: localhost:${plainUp.port}`]);
      expect(ok.status).toBe(200);
      const e = await eventWhere(t, (x) => x.kind === "http" && x.path === "/echo?tunnel=1");
      expect(e).toMatchObject({ verdict: "allow", endpoint: "https.api", host: "localhost", port: plainUp.port, status: 200, action: { scheme: "http" } });
      const denied = await run(toPlain.port, "/echo?tunnel=2", ["-X", "DELETE", "-H", `Host: localhost:${plainUp.port}`]);
      expect(denied.status).toBe(403);
      expect(JSON.parse(denied.body).rule).toBe("no-plain-deletes");
      const relayed = await run(toOpen.port, "/echo?tunnel=3", ["-H", "Host: other.test"]);
      expect(relayed.status).toBe(200);
      expect(t.events.some((x) => x.kind === "http" && x.path === "/echo?tunnel=3")).toBe(false);
      const c = await eventWhere(t, (x) => x.kind === "connection" && x.port === openUp.port && x.verdict === "relay");
      expect(c.bytesUp).toBeGreaterThan(0);
    } finally {
      toPlain.close();
      toOpen.close();
    }
  });
});

describe("events say what happened", () => {
  test("curl https:// that gives up mid-download is recorded with the 200 it got, the bytes it got, and that it closed first", async () => {
    // curl's output closed after 3 MiB of 16 (as a pipe to `head` does): curl stops with a write error and closes.
    const proc = Bun.spawn(
      ["sh", "-c", 'curl -sS --http1.1 --max-time 30 --noproxy "" -x "$1" --cacert "$2" --connect-to "$3" "$4" | head -c 3145728 > /dev/null', "sh", t.proxyUrl, t.caPath, `api.test:${tlsUp.port}:127.0.0.1:${tlsUp.port}`, `https://api.test:${tlsUp.port}/download?mb=16`],
      { stdout: "ignore", stderr: "ignore" },
    );
    await proc.exited;
    const e = await eventWhere(t, (x) => x.kind === "http" && x.path === "/download?mb=16" && x.port === tlsUp.port);
    expect(e).toMatchObject({ status: 200, verdict: "allow", detail: "the agent closed the connection mid-response", action: { closedBy: "client" } });
    expect(e.bytesDown).toBeGreaterThanOrEqual(3 << 20);
    expect(e.bytesDown).toBeLessThan(16 << 20);
  });
  test("over HTTP/2 too: the stream of an agent that gives up is recorded at once, with the 200 it got, the bytes it got, and that the agent ended it", async () => {
    // curl's output closed after 3 MiB of 16 (as a pipe to `head` does): curl stops with a write error and closes.
    const proc = Bun.spawn(
      ["sh", "-c", 'curl -sS --http2 --max-time 30 --noproxy "" -x "$1" --cacert "$2" --connect-to "$3" "$4" | head -c 3145728 > /dev/null', "sh", t.proxyUrl, t.caPath, `api.test:${tlsUp.port}:127.0.0.1:${tlsUp.port}`, `https://api.test:${tlsUp.port}/download?mb=16&over=h2`],
      { stdout: "ignore", stderr: "ignore" },
    );
    await proc.exited;
    const e = await eventWhere(t, (x) => x.kind === "http" && x.path === "/download?mb=16&over=h2" && x.port === tlsUp.port);
    expect(e).toMatchObject({ status: 200, verdict: "allow", detail: "agent reset the stream", action: { closedBy: "client" } });
    expect(e.bytesDown).toBeGreaterThanOrEqual(3 << 20);
    expect(e.bytesDown).toBeLessThan(16 << 20);
  });

  test("a client that closes mid-body after reading some is recorded with the bytes relayed", async () => {
    const { hostname, port } = new URL(t.proxyUrl);
    let got = 0;
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(Number(port), hostname, () => s.write(`GET http://localhost:${plainUp.port}/download?mb=16 HTTP/1.1\r\nHost: localhost:${plainUp.port}\r\n\r\n`));
      s.on("data", (d) => {
        got += d.length;
        if (got > 3 << 20) {
          s.destroy();
          resolve();
        }
      });
      s.on("error", reject);
    });
    const e = await eventWhere(t, (x) => x.kind === "http" && x.path === "/download?mb=16" && x.port === plainUp.port);
    expect(e).toMatchObject({ status: 200, detail: "the agent closed the connection mid-response", action: { closedBy: "client", scheme: "http" } });
    expect(e.bytesDown).toBeGreaterThan(3 << 20);
    expect(e.bytesDown).toBeLessThan(16 << 20);
  });
});

describe("refusals at the proxy's door are events", () => {
  test("407 without a device token (no default profile)", async () => {
    const g = await startTestGateway(`
defaults {
  verdict = "allow"
}
profile "agents" {}
`);
    try {
      const r = await curl(g, `http://localhost:${plainUp.port}/echo`);
      expect(r.status).toBe(407);
      const e = await eventWhere(g, (x) => x.kind === "connection" && x.status === 407);
      expect(e).toMatchObject({ verdict: "deny", host: "localhost", port: plainUp.port, reason: "a device token is required" });
    } finally {
      await g.stop();
    }
  });

  test("405 for an origin-form request to the proxy", async () => {
    const { hostname, port } = new URL(t.proxyUrl);
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect(Number(port), hostname, () => s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      let got = "";
      s.on("data", (d) => (got += d.toString()));
      s.on("end", () => resolve(got));
      s.on("error", reject);
    });
    expect(answer.startsWith("HTTP/1.1 405")).toBe(true);
    const e = await eventWhere(t, (x) => x.kind === "connection" && x.status === 405);
    expect(e.verdict).toBe("deny");
  });
});
