// The gateway as `make run` starts it: a real process, its banner, SIGHUP
// reload keeping the last good policy, and a clean exit on SIGTERM.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { tempDir } from "./support/gateway.ts";

const CONFIG = `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy {
    listen = "127.0.0.1:0"
  }
}
defaults {
  verdict = "allow"
}
`;

test("banner, SIGHUP reload with FILE:LINE errors, SIGTERM exit", async () => {
  const dir = tempDir("proc");
  const config = path.join(dir, "gateway.hcl");
  writeFileSync(config, CONFIG);
  const proc = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", "all", "--config", config], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, CLAWPATROL_STATE_DIR: "" },
  });
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  let err = "";
  const waitFor = async (needle: string | RegExp, ms = 15_000) => {
    const deadline = Date.now() + ms;
    while (!(typeof needle === "string" ? err.includes(needle) : needle.test(err))) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${needle}; stderr so far:\n${err}`);
      const { value, done } = await reader.read();
      if (done) throw new Error(`gateway exited; stderr:\n${err}`);
      err += new TextDecoder().decode(value);
    }
  };
  try {
    await waitFor("proxy (HTTP CONNECT and SOCKS5): 127.0.0.1:");
    expect(err).toContain(`CA certificate: ${path.join(dir, "state", "ca.crt")}`);
    expect(err).toContain("try it:");

    writeFileSync(config, CONFIG.replace('verdict = "allow"', 'verdict = "maybe"'));
    proc.kill("SIGHUP");
    await waitFor(/gateway\.hcl:\d+: /);
    expect(err).toContain("keeping the last good policy");
    expect(proc.exitCode).toBeNull();
  } finally {
    proc.kill("SIGTERM");
  }
  expect(await proc.exited).toBe(0);
});
