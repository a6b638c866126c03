// The explicit proxy as a capture mode: device tokens, SOCKS5, passthrough
// of unclaimed TLS, unknown_host = deny, plain TCP relay, hot reload.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { waitFor } from "../support/netns.ts";
import { setLogWriter } from "../../../app/log.ts";

let pki: TestPki;
let upstream: TestUpstream;
let echo: net.Server;
let echoPort: number;
let t: TestGateway;

function config(extra = ""): string {
  return `
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
  # the upstreams here listen on the gateway's own loopback
  allow_destinations = ["127.0.0.1"]
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "agents" {}
profile "restricted" {
  endpoints = []
}
rule "agents-read-only" {
  endpoint = https.api
  profiles = [profile.agents]
  condition = "http.method != 'GET'"
  verdict = "deny"
}
${extra}
`;
}

beforeAll(async () => {
  pki = makeTestPki(tempDir("pki"), ["api.test", "other.test"]);
  upstream = startUpstream(pki);
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  echoPort = (echo.address() as net.AddressInfo).port;
  t = await startTestGateway(config());
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
  echo?.close();
});

describe("device identity", () => {
  test("without a token and without a default profile the proxy answers 407", async () => {
    const r = await curlVia(t, "api.test", upstream.port, "/echo");
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr + r.headers).toContain("407");
  });

  test("a device token (Basic password or Bearer) selects the device and its profile", async () => {
    const { token } = t.gw.devices.add("laptop", "agents");
    const r = await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-user", `laptop:${token}`]);
    expect(r.status).toBe(200);
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.device).toBe("laptop");
    expect(e.profile).toBe("agents");
    // The profile's rule applies to this device.
    const denied = await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-user", `laptop:${token}`, "-X", "POST", "-d", "x"]);
    expect(denied.status).toBe(403);
    // The token never reaches the upstream.
    expect(JSON.stringify(upstream.seen)).not.toContain(token);
    const bearer = await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-header", `Proxy-Authorization: Bearer ${token}`]);
    expect(bearer.status).toBe(200);
  });

  test("a revoked or unknown token is refused", async () => {
    const { token } = t.gw.devices.add("old", "agents");
    t.gw.devices.revoke("old");
    const r = await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-user", `old:${token}`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr + r.headers).toContain("407");
  });

  test("SOCKS5 with username/password carries the device token", async () => {
    const { token } = t.gw.devices.add("socks-laptop", "agents");
    const { hostname, port } = new URL(t.proxyUrl);
    const proc = Bun.spawn(
      ["curl", "-sS", "--max-time", "20", "--cacert", t.caPath, "--socks5", `${hostname}:${port}`, "--proxy-user", `socks-laptop:${token}`,
        "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`, "-w", "\n%{http_code}", `https://api.test:${upstream.port}/echo`],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    expect(out.trim().split("\n").at(-1)).toBe("200");
    expect(t.events.filter((x) => x.kind === "http").at(-1)!.device).toBe("socks-laptop");
  });
});

describe("dispatch", () => {
  let token: string;
  beforeAll(() => {
    token = t.gw.devices.add("dispatch", "agents").token;
  });

  test("TLS to a host no endpoint claims is spliced untouched (the client sees the real certificate)", async () => {
    // Trusting only the upstream's own CA: this succeeds only without interception.
    const proc = Bun.spawn(
      ["curl", "-sS", "--max-time", "20", "--cacert", pki.caCertPath, "-x", t.proxyUrl, "--proxy-user", `d:${token}`,
        "--connect-to", `other.test:${upstream.port}:127.0.0.1:${upstream.port}`, "-w", "\n%{http_code}", `https://other.test:${upstream.port}/echo`],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(proc.stdout).text();
    expect(await proc.exited).toBe(0);
    expect(out.trim().split("\n").at(-1)).toBe("200");
    const spliced = () => t.events.findLast((x) => x.kind === "connection" && x.host === "other.test");
    expect(await waitFor(() => spliced() !== undefined, 10_000)).toBe(true);
    const e = spliced()!;
    expect(e.verdict).toBe("passthrough");
    expect(e.host).toBe("other.test");
    expect(e.bytesDown).toBeGreaterThan(0);
  });

  test("a profile that sees no endpoints gets passthrough for claimed hosts too", async () => {
    const { token: r } = t.gw.devices.add("restricted", "restricted");
    const proc = Bun.spawn(
      ["curl", "-sS", "--max-time", "20", "--cacert", pki.caCertPath, "-x", t.proxyUrl, "--proxy-user", `d:${r}`,
        "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`, "-o", "/dev/null", "-w", "%{http_code}", `https://api.test:${upstream.port}/echo`],
      { stdout: "pipe", stderr: "pipe" },
    );
    expect(await new Response(proc.stdout).text()).toBe("200");
  });

  test("a plain TCP destination is relayed both ways with half-close", async () => {
    const { hostname, port } = new URL(t.proxyUrl);
    const sock = net.connect({ host: hostname, port: Number(port), allowHalfOpen: true });
    await new Promise<void>((r) => sock.once("connect", () => r()));
    const auth = Buffer.from(`d:${token}`).toString("base64");
    sock.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`);
    const chunks: Buffer[] = [];
    sock.on("data", (d: Buffer) => chunks.push(d));
    // Half-close only once the tunnel is up (the proxy's 200 has arrived).
    expect(await waitFor(() => Buffer.concat(chunks).includes("\r\n\r\n"), 10_000, 5)).toBe(true);
    sock.end("ping through the relay");
    await new Promise<void>((r) => sock.once("close", () => r()));
    const text = Buffer.concat(chunks).toString();
    expect(text).toStartWith("HTTP/1.1 200");
    expect(text.endsWith("ping through the relay")).toBe(true);
  });
});

describe("the gateway itself is not a destination", () => {
  /** CONNECT through the proxy of `g`; resolves with everything the proxy sent before it closed. */
  const connectThrough = async (g: TestGateway, target: string, token: string) => {
    const { hostname, port } = new URL(g.proxyUrl);
    const sock = net.connect({ host: hostname, port: Number(port), allowHalfOpen: true });
    await new Promise<void>((r) => sock.once("connect", () => r()));
    const chunks: Buffer[] = [];
    sock.on("data", (d: Buffer) => chunks.push(d));
    sock.on("error", () => undefined);
    sock.end(`CONNECT ${target} HTTP/1.1\r\nProxy-Authorization: Basic ${Buffer.from(`d:${token}`).toString("base64")}\r\n\r\nping`);
    await new Promise<void>((r) => sock.once("close", () => r()));
    return Buffer.concat(chunks).toString();
  };

  test("without allow_destinations: loopback (by address and by name), link-local and the proxy's own port are refused and recorded", async () => {
    const g = await startTestGateway(config().replace('allow_destinations = ["127.0.0.1"]', ""));
    try {
      const { token } = g.gw.devices.add("hostile", "agents");
      const proxyPort = new URL(g.proxyUrl).port;
      for (const [target, cls] of [
        [`127.0.0.1:${echoPort}`, "loopback"],
        [`localhost:${echoPort}`, "loopback"],
        [`[::1]:${echoPort}`, "loopback"],
        [`127.0.0.1:${proxyPort}`, "loopback"],
        ["169.254.169.254:80", "link-local"],
        [`0.0.0.0:${echoPort}`, "unspecified"],
      ] as const) {
        const text = await connectThrough(g, target, token);
        expect(text).not.toContain("ping"); // the echo never answered
        const e = g.events.filter((x) => x.kind === "connection" && x.device === "hostile").at(-1)!;
        expect(e).toMatchObject({ verdict: "deny", port: Number(target.slice(target.lastIndexOf(":") + 1)) });
        expect(e.reason).toContain(cls === "unspecified" ? "unspecified" : cls === "loopback" ? "loopback" : "link-local");
      }
    } finally {
      await g.stop();
    }
  });

  test("with allow_destinations the operator's exception is relayed", async () => {
    const { token } = t.gw.devices.add("allowed", "agents");
    const text = await connectThrough(t, `127.0.0.1:${echoPort}`, token);
    expect(text).toStartWith("HTTP/1.1 200");
    expect(text.endsWith("ping")).toBe(true);
  });
});

describe("hot reload", () => {
  test("a bad edit is rejected with FILE:LINE and the last good policy keeps serving; a good edit applies", async () => {
    const { token } = t.gw.devices.add("reload", "agents");
    const good = readFileSync(t.configPath, "utf8");
    writeFileSync(t.configPath, good + '\nrule "broken" {\n  endpoint = https.nowhere\n  verdict = "deny"\n}\n');
    const errors = await t.gw.reload();
    expect(errors.length).toBeGreaterThan(0);
    expect(errors.join("\n")).toMatch(/gateway\.hcl:\d+: /);
    const still = await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-user", `r:${token}`]);
    expect(still.status).toBe(200);

    writeFileSync(t.configPath, good.replace('condition = "http.method != \'GET\'"', 'condition = "http.path == \'/echo\'"'));
    expect(await t.gw.reload()).toEqual([]);
    const now = await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-user", `r:${token}`]);
    expect(now.status).toBe(403);
    writeFileSync(t.configPath, good);
    expect(await t.gw.reload()).toEqual([]);
  });
});

describe("hot reload by the watcher", () => {
  test("an edit to the file on disk is picked up without a call (bad edits are kept out)", async () => {
    const { token } = t.gw.devices.add("watcher", "agents");
    const good = readFileSync(t.configPath, "utf8");
    const status = async () => (await curlVia(t, "api.test", upstream.port, "/echo", ["--proxy-user", `w:${token}`])).status;
    const waitForStatus = async (want: number) => {
      for (let i = 0; i < 100; i++) {
        if ((await status()) === want) return true;
        await Bun.sleep(50);
      }
      return false;
    };
    const logged: string[] = [];
    setLogWriter((line) => {
      logged.push(line);
      process.stderr.write(line + "\n");
    });
    try {
      writeFileSync(t.configPath, good + "\nthis is not HCL {{{\n");
      // The watcher saw the bad edit and kept the last good policy.
      expect(await waitFor(() => logged.some((l) => l.includes("config rejected")), 15_000, 10)).toBe(true);
      expect(await status()).toBe(200);
      writeFileSync(t.configPath, good.replace('condition = "http.method != \'GET\'"', 'condition = "http.method == \'GET\'"'));
      expect(await waitForStatus(403)).toBe(true);
    } finally {
      setLogWriter(undefined);
      writeFileSync(t.configPath, good);
      expect(await waitForStatus(200)).toBe(true);
    }
  });
});

describe("unknown_host = deny", () => {
  test("TLS to an unclaimed host is closed and recorded", async () => {
    const d = await startTestGateway(config().replace('unknown_host = "passthrough"', 'unknown_host = "deny"\n  profile = profile.agents'));
    try {
      const proc = Bun.spawn(
        ["curl", "-sS", "--max-time", "20", "--cacert", pki.caCertPath, "-x", d.proxyUrl,
          "--connect-to", `other.test:${upstream.port}:127.0.0.1:${upstream.port}`, `https://other.test:${upstream.port}/echo`],
        { stdout: "pipe", stderr: "pipe" },
      );
      expect(await proc.exited).not.toBe(0);
      expect(await waitFor(() => d.events.some((x) => x.kind === "connection" && x.host === "other.test"), 10_000)).toBe(true);
      const e = d.events.findLast((x) => x.kind === "connection" && x.host === "other.test")!;
      expect(e.kind).toBe("connection");
      expect(e.verdict).toBe("deny");
      expect(e.host).toBe("other.test");
    } finally {
      await d.stop();
    }
  });
});
