import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { GatewayEvent } from "../../../app/events/types.ts";

export function sampleEvent(overrides: Partial<GatewayEvent> = {}): GatewayEvent {
  return {
    time: "2025-01-02T10:31:02.000Z",
    kind: "http",
    flowId: "f1",
    device: "laptop",
    profile: "dev",
    endpoint: "https.github",
    host: "api.github.com",
    port: 443,
    method: "GET",
    path: "/repos/x",
    status: 200,
    bytesUp: 120,
    bytesDown: 3400,
    durationMs: 12,
    rule: "read-only",
    verdict: "allow",
    reason: "matched read-only",
    credential: "github_token.gh",
    ...overrides,
  };
}

/** A fresh temp dir and its cleanup. */
export function tempDir(prefix = "clawpatrol-test-"): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
