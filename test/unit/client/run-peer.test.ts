// The client's side of per-run peers and --publish, without namespaces:
// registration against a real HTTP server (201, 404 fallback, 401, errors),
// the --publish spec parser, and the relay host port -> Unix socket ->
// 127.0.0.1:PORT with real sockets in one process.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "../../../client/main.ts";
import { listenOnHost, parsePublish, PublishError, serveInside } from "../../../client/publish.ts";
import { registerRun } from "../../../client/run-peer.ts";
import { RunError } from "../../../client/run.ts";
import type { LoadedState } from "../../../client/state.ts";

const TOKEN = "cpa_unit-test-token-0123456789abcdefghijklmnopqrstuv";
const tmp = () => mkdtempSync(path.join(os.tmpdir(), "clawpatrol-runpeer-unit-"));
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function stateWith(url: string, token: string | undefined): LoadedState {
  const dir = tmp();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  if (token !== undefined) writeFileSync(path.join(dir, "api-token"), token + "\n", { mode: 0o600 });
  return {
    version: 1,
    gateway_url: url,
    joined_at: "2026-01-01T00:00:00Z",
    device: { name: "laptop", profile: "dev", address: "10.77.0.2", addresses: ["10.77.0.2/32"] },
    gateway: { public_key: Buffer.alloc(32, 1).toString("base64"), endpoint: "127.0.0.1:51820", allowed_ips: [], dns: "10.77.0.1", address: "10.77.0.1", persistent_keepalive: 25 },
    dir,
    privateKey: Buffer.alloc(32, 2).toString("base64"),
    caCert: "",
  };
}

/** A real HTTP server answering the run routes as told; records what it got. */
function gateway(answer: (req: Request) => Response | Promise<Response>) {
  const got: { method: string; path: string; auth: string | null; body: string }[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      got.push({ method: req.method, path: new URL(req.url).pathname, auth: req.headers.get("authorization"), body: await req.text() });
      return answer(req);
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}`, got };
}

describe("registerRun", () => {
  test("201: a fresh key per run, sent with the device token; the address comes back; end() deregisters", async () => {
    const gw = gateway((req) =>
      req.method === "POST"
        ? Response.json({ run: { id: "run_abc", address: "10.77.0.9", address6: null } }, { status: 201 })
        : Response.json({ ok: true }),
    );
    const s = stateWith(gw.url + "/", TOKEN);
    const a = await registerRun(s);
    const b = await registerRun(s);
    if (a.kind !== "run" || b.kind !== "run") throw new Error("expected run peers");
    expect(a.lease.address).toBe("10.77.0.9");
    expect(a.lease.address6).toBeUndefined();
    expect(a.lease.publicKey).not.toBe(b.lease.publicKey);
    expect(a.lease.privateKey).not.toBe(s.privateKey);
    expect(gw.got[0]).toMatchObject({ method: "POST", path: "/api/device/runs", auth: `Bearer ${TOKEN}` });
    expect(JSON.parse(gw.got[0]!.body)).toEqual({ public_key: a.lease.publicKey });
    expect(gw.got[0]!.body).not.toContain(a.lease.privateKey);
    await a.lease.end();
    expect(gw.got.at(-1)).toMatchObject({ method: "DELETE", path: "/api/device/runs/run_abc", auth: `Bearer ${TOKEN}` });
  });

  test("an older gateway (404), an unreachable API, or no token: the device's key, with a note", async () => {
    const old = gateway(() => new Response("not found", { status: 404 }));
    const r1 = await registerRun(stateWith(old.url, TOKEN));
    expect(r1).toMatchObject({ kind: "device" });
    if (r1.kind === "device") expect(r1.note).toContain("older");
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const r2 = await registerRun(stateWith(`http://127.0.0.1:${port}`, TOKEN));
    expect(r2.kind).toBe("device");
    if (r2.kind === "device") expect(r2.note).toContain("cannot reach");
    const r3 = await registerRun(stateWith(old.url, undefined));
    expect(r3.kind).toBe("device");
  });

  test("a refused token is an error that says revoked, and never shows the token", async () => {
    const gw = gateway(() => Response.json({ error: { code: "unauthorized", message: "a valid device API token is required" } }, { status: 401 }));
    const e = await registerRun(stateWith(gw.url, TOKEN)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RunError);
    expect((e as Error).message).toContain("revoked");
    expect((e as Error).message).not.toContain(TOKEN);
  });

  test("other refusals are errors with the gateway's message", async () => {
    const gw = gateway(() => Response.json({ error: { code: "too_many_runs", message: "device has 32 runs" } }, { status: 429 }));
    await expect(registerRun(stateWith(gw.url, TOKEN))).rejects.toThrow(/32 runs \(too_many_runs\)/);
  });
});

describe("parsePublish", () => {
  test.each([
    ["8080", { hostAddress: "127.0.0.1", hostPort: 8080, port: 8080 }],
    ["18080:8080", { hostAddress: "127.0.0.1", hostPort: 18080, port: 8080 }],
    ["0.0.0.0:18080:8080", { hostAddress: "0.0.0.0", hostPort: 18080, port: 8080 }],
    ["127.0.0.2:9000", { hostAddress: "127.0.0.2", hostPort: 9000, port: 9000 }],
    ["[::1]:18080:8080", { hostAddress: "::1", hostPort: 18080, port: 8080 }],
  ])("%s", (spec, expected) => {
    expect(parsePublish(spec)).toEqual(expected);
  });
  test.each(["", "x", "0", "70000", "1:2:3:4", "18080:", ":8080", "localhost:18080:8080", "[nope]:1:2"])("%j is refused", (spec) => {
    expect(() => parsePublish(spec)).toThrow(PublishError);
  });
  test("the CLI takes --publish (repeatable) before the command", () => {
    expect(parseArgs(["run", "--publish", "18080:8080", "-p", "9000", "--publish=1.2.3.4:80:8000", "--", "python3"]).command).toEqual({
      cmd: "run",
      argv: ["python3"],
      publish: ["18080:8080", "9000", "1.2.3.4:80:8000"],
    });
    expect(() => parseArgs(["run", "--publish"])).toThrow(/needs/);
  });
});

describe("publish relay", () => {
  test("host port -> Unix socket -> 127.0.0.1:PORT, both ways; a busy host port fails up front; close removes the sockets", async () => {
    // The "inside" service: an echo server that says hello first.
    const service = net.createServer((c) => {
      c.write("hello\n");
      c.pipe(c);
    });
    await new Promise<void>((r) => service.listen(0, "127.0.0.1", () => r()));
    cleanups.push(() => service.close());
    const port = (service.address() as net.AddressInfo).port;
    const free = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const runtime = tmp();
    cleanups.push(() => rmSync(runtime, { recursive: true, force: true }));
    const host = await listenOnHost([{ hostAddress: "127.0.0.1", hostPort: free, port }], runtime);
    const stopInside = await serveInside(host.sockets);
    cleanups.push(stopInside);

    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect(free, "127.0.0.1");
      let got = "";
      c.on("data", (d) => {
        got += d.toString();
        if (got === "hello\nping\n") c.end();
        else if (got === "hello\n") c.write("ping\n");
      });
      c.on("close", () => resolve(got));
      c.on("error", reject);
    });
    expect(reply).toBe("hello\nping\n");

    await expect(listenOnHost([{ hostAddress: "127.0.0.1", hostPort: free, port }], runtime)).rejects.toThrow(/cannot publish on 127\.0\.0\.1:\d+: EADDRINUSE/);
    host.close();
    expect(readdirSync(runtime)).toEqual([]);
  });
});
