// The client's pure parts: argument parsing, the state directory (tight
// modes, re-join swaps atomically), and the join flow against a fake
// onboarding API (approved, denied, expired, unreachable, refused; the SSH
// CA an approval carries goes into known_hosts).
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs, UsageError } from "../../../client/main.ts";
import { defaultDeviceName, join, JoinError, normalizeGatewayUrl } from "../../../client/join.ts";
import { loadState, NotJoined, saveState, stateDir, type DeviceState } from "../../../client/state.ts";
import { parseEndpoint } from "../../../client/run.ts";
import { caEnv } from "../../../client/inner.ts";

const tmp = () => mkdtempSync(path.join(os.tmpdir(), "clawpatrol-client-unit-"));

describe("parseArgs", () => {
  test.each([
    [["join", "https://gw"], { cmd: "join", url: "https://gw" }],
    [["join", "gw:8443", "--name", "box", "--profile=dev"], { cmd: "join", url: "gw:8443", name: "box", profile: "dev" }],
    [["run", "--", "curl", "-v", "x"], { cmd: "run", argv: ["curl", "-v", "x"] }],
    [["run", "claude", "--dangerously-skip-permissions"], { cmd: "run", argv: ["claude", "--dangerously-skip-permissions"] }],
    [["run", "--", "--weird"], { cmd: "run", argv: ["--weird"] }],
    [["status"], { cmd: "status" }],
    [["uninstall"], { cmd: "uninstall", yes: false }],
    [["uninstall", "--yes"], { cmd: "uninstall", yes: true }],
    [[], { cmd: "help" }],
  ])("%j", (args, expected) => {
    expect(parseArgs(args as string[]).command).toEqual(expected as never);
  });

  test("--verbose anywhere before the command", () => {
    expect(parseArgs(["--verbose", "status"]).verbose).toBe(true);
    expect(parseArgs(["run", "-v", "--", "ls"])).toEqual({ command: { cmd: "run", argv: ["ls"] }, verbose: true });
  });

  test.each([
    [["run"]],
    [["run", "--"]],
    [["run", "--nope", "ls"]],
    [["join"]],
    [["join", "a", "b"]],
    [["join", "a", "--name"]],
    [["join", "a", "--yes"]],
    [["status", "--name", "x"]],
    [["frobnicate"]],
    [["up", "now"]],
    [["down", "--yes"]],
  ])("usage error: %j", (args) => {
    expect(() => parseArgs(args)).toThrow(UsageError);
  });
});

describe("small parsers", () => {
  test("gateway URLs", () => {
    expect(normalizeGatewayUrl("gw.example.com")).toBe("https://gw.example.com");
    expect(normalizeGatewayUrl("http://10.0.0.1:8080/")).toBe("http://10.0.0.1:8080");
    expect(() => normalizeGatewayUrl("ftp://x")).toThrow(JoinError);
  });
  test("device names", () => {
    expect(defaultDeviceName("my laptop.local")).toBe("my-laptop");
    expect(defaultDeviceName("-._")).toBe("device");
    expect(defaultDeviceName("x".repeat(100)).length).toBe(64);
  });
  test("endpoints", () => {
    expect(parseEndpoint("gw.example.com:51820")).toEqual({ host: "gw.example.com", port: 51820 });
    expect(parseEndpoint("[fd00::1]:51820")).toEqual({ host: "fd00::1", port: 51820 });
    expect(() => parseEndpoint("gw")).toThrow();
    expect(() => parseEndpoint("gw:0")).toThrow();
  });
  test("state dir: XDG_CONFIG_HOME, else ~/.config", () => {
    expect(stateDir({ XDG_CONFIG_HOME: "/x/cfg", HOME: "/home/u" })).toBe("/x/cfg/clawpatrol");
    expect(stateDir({ XDG_CONFIG_HOME: "relative", HOME: "/home/u" })).toBe("/home/u/.config/clawpatrol");
    expect(stateDir({ HOME: "/home/u" })).toBe("/home/u/.config/clawpatrol");
  });
  test("CA variables point at the bundle; Node's at the gateway CA", () => {
    const e = caEnv("/b.pem", "/ca.crt");
    for (const k of ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"]) expect(e[k]).toBe("/b.pem");
    expect(e.NODE_EXTRA_CA_CERTS).toBe("/ca.crt");
  });
});

const STATE: DeviceState = {
  version: 1,
  gateway_url: "https://gw",
  joined_at: "2026-01-01T00:00:00.000Z",
  device: { name: "box", profile: "dev", address: "10.88.0.2", addresses: ["10.88.0.2/32"] },
  gateway: { public_key: "K".repeat(43) + "=", endpoint: "gw:51820", allowed_ips: ["0.0.0.0/0"], dns: "10.88.0.1", address: "10.88.0.1", persistent_keepalive: 25 },
};

describe("state", () => {
  test("save: 0700 directory, 0600 secrets; load reads it back", () => {
    const dir = path.join(tmp(), "cfg", "clawpatrol");
    saveState(dir, { state: STATE, privateKey: "PRIV", apiToken: "TOKEN", caCert: "CA" });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(dir, "private.key")).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dir, "api-token")).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dir, "device.json")).mode & 0o777).toBe(0o600);
    const s = loadState(dir);
    expect(s.privateKey).toBe("PRIV");
    expect(s.caCert).toBe("CA\n");
    expect(s.device.name).toBe("box");
  });

  test("re-join replaces everything and leaves no temp directories", () => {
    const parent = tmp();
    const dir = path.join(parent, "clawpatrol");
    saveState(dir, { state: STATE, privateKey: "OLD", apiToken: "T1", caCert: "CA1" });
    writeFileSync(path.join(dir, "stray"), "x");
    saveState(dir, { state: { ...STATE, device: { ...STATE.device, name: "box2" } }, privateKey: "NEW", apiToken: "T2", caCert: "CA2" });
    expect(loadState(dir).privateKey).toBe("NEW");
    expect(loadState(dir).device.name).toBe("box2");
    expect(existsSync(path.join(dir, "stray"))).toBe(false);
    expect(readdirSync(parent)).toEqual(["clawpatrol"]);
  });

  test("not joined, and broken state, are clear errors", () => {
    const dir = path.join(tmp(), "clawpatrol");
    expect(() => loadState(dir)).toThrow(NotJoined);
    saveState(dir, { state: STATE, privateKey: "P", apiToken: "T", caCert: "C" });
    writeFileSync(path.join(dir, "device.json"), "{");
    expect(() => loadState(dir)).toThrow(/not valid JSON/);
  });
});

/** A fake onboarding API: `start` answers once, `poll` answers from a script. */
function fakeApi(polls: Array<{ status: number; body: unknown }>, start: { status: number; body: unknown } = { status: 200, body: null }) {
  const calls: Array<{ url: string; body: unknown }> = [];
  const f = (async (url: string | URL | Request, init?: RequestInit) => {
    const u = String(url);
    const body = JSON.parse(String(init?.body ?? "null"));
    calls.push({ url: u, body });
    const r = u.endsWith("/api/onboard/start")
      ? start.body === null
        ? { status: 200, body: { code: "ABCD-EFGH", device_code: "dc", approval_url: "https://gw/approve/ABCD-EFGH", expires_in: 600, poll_interval: 1, approve_command: "clawpatrol-gateway devices approve ABCD-EFGH --profile PROFILE" } }
        : start
      : polls.shift() ?? { status: 200, body: { status: "pending" } };
    return new Response(JSON.stringify(r.body), { status: r.status, headers: { "content-type": "application/json" } });
  }) as unknown as typeof fetch;
  return { f, calls };
}

const APPROVED = {
  status: "approved",
  device: STATE.device,
  gateway: STATE.gateway,
  ca_cert: "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n",
  api_token: "cpt_token",
};

describe("join", () => {
  const base = () => {
    let t = 1_000_000;
    return { now: () => t, sleep: async (ms: number) => void (t += ms), out: (_: string) => {} };
  };

  test("approved after pending: state written; the public key was sent, never the private key", async () => {
    const dir = path.join(tmp(), "clawpatrol");
    const lines: string[] = [];
    const { f, calls } = fakeApi([{ status: 200, body: { status: "pending" } }, { status: 200, body: APPROVED }]);
    await join({ ...base(), out: (l) => lines.push(l), url: "gw.test", name: "box", profile: "dev", dir, fetch: f });
    expect(calls[0]!.url).toBe("https://gw.test/api/onboard/start");
    const sent = calls[0]!.body as { name: string; public_key: string; profile: string };
    expect(sent.name).toBe("box");
    expect(sent.profile).toBe("dev");
    const s = loadState(dir);
    expect(s.privateKey).not.toBe(sent.public_key);
    expect(JSON.stringify(calls)).not.toContain(s.privateKey);
    expect(readFileSync(path.join(dir, "api-token"), "utf8").trim()).toBe("cpt_token");
    expect(lines.join("\n")).toContain("ABCD-EFGH");
    expect(lines.join("\n")).toContain("clawpatrol-gateway devices approve ABCD-EFGH");
  });

  test.each([
    ["denied", /denied/],
    ["expired", /expired/],
    ["claimed", /already collected/],
  ])("%s: a clear error, and an earlier state is kept", async (status, msg) => {
    const dir = path.join(tmp(), "clawpatrol");
    saveState(dir, { state: STATE, privateKey: "OLD", apiToken: "T", caCert: "OLDCA" });
    const { f } = fakeApi([{ status: 200, body: { status } }]);
    await expect(join({ ...base(), url: "https://gw", dir, fetch: f })).rejects.toThrow(msg);
    expect(loadState(dir).privateKey).toBe("OLD");
    expect(loadState(dir).caCert).toBe("OLDCA\n");
  });

  test("the code runs out while pending", async () => {
    const { f } = fakeApi([]);
    await expect(join({ ...base(), url: "https://gw", dir: path.join(tmp(), "c"), fetch: f })).rejects.toThrow(/expired before it was approved/);
  });

  test("unreachable gateway", async () => {
    const f = (async () => {
      throw new Error("connect ECONNREFUSED");
    }) as unknown as typeof fetch;
    await expect(join({ ...base(), url: "https://gw", dir: path.join(tmp(), "c"), fetch: f })).rejects.toThrow(/cannot reach the gateway at https:\/\/gw/);
  });

  test("the gateway refuses: its message is shown", async () => {
    const { f } = fakeApi([], { status: 409, body: { error: { code: "name_taken", message: 'a device named "box" is already enrolled' } } });
    await expect(join({ ...base(), url: "https://gw", dir: path.join(tmp(), "c"), fetch: f })).rejects.toThrow(/already enrolled \(name_taken\)/);
  });

  test("not a gateway (not JSON)", async () => {
    const f = (async () => new Response("<html>", { status: 200 })) as unknown as typeof fetch;
    await expect(join({ ...base(), url: "https://gw", dir: path.join(tmp(), "c"), fetch: f })).rejects.toThrow(/not JSON/);
  });

  test("an approval with the SSH CA writes its @cert-authority line for the ssh hosts into ~/.ssh/known_hosts", async () => {
    const home = tmp();
    const ca = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOv4cb3hZpNJGRuYgoVdqG4wJqF9GPGVaSbtHxX3kAUM";
    const { f } = fakeApi([{ status: 200, body: { ...APPROVED, ssh_ca: { public_key: ca, hosts: ["git.internal", "bastion.internal"] } } }]);
    await join({ ...base(), url: "https://gw", dir: path.join(home, "state"), home, fetch: f });
    const file = path.join(home, ".ssh", "known_hosts");
    expect(readFileSync(file, "utf8")).toBe(`@cert-authority git.internal,[git.internal]:*,bastion.internal,[bastion.internal]:* ${ca} clawpatrol-ssh-ca\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  test("an approval without the SSH CA, or with a malformed one, leaves known_hosts alone", async () => {
    for (const body of [APPROVED, { ...APPROVED, ssh_ca: { public_key: "ssh-rsa not-ours", hosts: ["git.internal"] } }, { ...APPROVED, ssh_ca: { public_key: 7 } }]) {
      const home = tmp();
      const { f } = fakeApi([{ status: 200, body }]);
      await join({ ...base(), url: "https://gw", dir: path.join(home, "state"), home, fetch: f });
      expect(existsSync(path.join(home, ".ssh", "known_hosts"))).toBe(false);
    }
  });
});
