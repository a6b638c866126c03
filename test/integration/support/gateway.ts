// Starts a real gateway (the same startGateway `make run` uses) on loopback
// with a config written for the test, and runs the real curl through it.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startGateway, type RunningGateway } from "../../../app/gateway.ts";
import { CA_CERT_FILE } from "../../../app/tls/ca.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

export interface TestGateway {
  gw: RunningGateway;
  dir: string;
  configPath: string;
  caPath: string;
  proxyUrl: string;
  events: GatewayEvent[];
  stop(): Promise<void>;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `clawpatrol-${prefix}-`));
}

/** `body` is the HCL after the gateway block; the gateway block is written here. */
export async function startTestGateway(
  body: string,
  env: Record<string, string> = {},
  extra: { stderrWrite?: (line: string) => void; /** More of the gateway block. */ gateway?: string; downloadsDir?: string } = {},
): Promise<TestGateway> {
  const dir = tempDir("gw");
  const configPath = path.join(dir, "gateway.hcl");
  writeFileSync(
    configPath,
    `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "127.0.0.1:0" }
  events { jsonl = "events.jsonl" }
${extra.gateway ?? ""}
}
${body}
`,
  );
  const gw = await startGateway({
    configPath,
    env: { ...env },
    stderrEvents: extra.stderrWrite !== undefined,
    ...(extra.downloadsDir ? { downloadsDir: extra.downloadsDir } : {}),
    ...(extra.stderrWrite ? { stderrWrite: extra.stderrWrite } : {}),
  });
  const events: GatewayEvent[] = [];
  gw.bus.subscribe((e) => events.push(e));
  const proxy = gw.proxies[0]!;
  return {
    gw,
    dir,
    configPath,
    caPath: path.join(gw.policy().gateway.stateDir, CA_CERT_FILE),
    proxyUrl: `http://${proxy.address.host}:${proxy.address.port}`,
    events,
    async stop() {
      await gw.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CurlResult {
  exitCode: number;
  status: number;
  headers: string;
  body: string;
  stderr: string;
}

/**
 * curl through the gateway's proxy to https://HOST:PORT/PATH where HOST is
 * reached at 127.0.0.1 (CONNECT to the IP, the name in SNI and Host — as a
 * device's flow looks in packet mode).
 */
export async function curlVia(
  t: TestGateway,
  host: string,
  port: number,
  pathAndQuery: string,
  extra: string[] = [],
): Promise<CurlResult> {
  const headerFile = path.join(t.dir, `h-${Math.random().toString(36).slice(2)}`);
  const proc = Bun.spawn(
    [
      "curl", "-sS", "--max-time", "60",
      "--cacert", t.caPath,
      "-x", t.proxyUrl,
      "--connect-to", `${host}:${port}:127.0.0.1:${port}`,
      "-D", headerFile,
      "-w", "\n%{http_code}",
      // The gateway offers h2 too: HTTP/1.1 unless the test asks for HTTP/2.
      ...(extra.some((a) => a.startsWith("--http2")) ? [] : ["--http1.1"]),
      ...extra,
      `https://${host}:${port}${pathAndQuery}`,
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const nl = out.lastIndexOf("\n");
  const headers = await Bun.file(headerFile).text().catch(() => "");
  rmSync(headerFile, { force: true });
  return { exitCode, status: Number(out.slice(nl + 1)), body: out.slice(0, nl), headers, stderr: err };
}
