// Runs `app/main.ts <role> --config PATH` as a real process (async
// Bun.spawn: a test that also hosts servers must never block in spawnSync)
// and waits on its stderr.
import { createServer } from "node:net";

export interface RoleProcess {
  proc: ReturnType<typeof Bun.spawn>;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves with the first match once stderr contains it; throws if the process exits first. */
  waitFor(needle: string | RegExp, ms?: number): Promise<RegExpMatchArray | string>;
  /** SIGTERM and wait; returns the exit code. */
  stop(): Promise<number>;
}

export function startRole(role: string, configPath: string, env: Record<string, string> = {}): RoleProcess {
  const proc = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", role, "--config", configPath], {
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, CLAWPATROL_STATE_DIR: "", NO_COLOR: "1", ...env },
  });
  let err = "";
  let exited = false;
  const waiters = new Set<() => void>();
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr as unknown as AsyncIterable<Uint8Array>) {
      err += decoder.decode(chunk, { stream: true });
      for (const w of waiters) w();
    }
    exited = true;
    for (const w of waiters) w();
  })();
  const match = (needle: string | RegExp) => (typeof needle === "string" ? (err.includes(needle) ? needle : null) : err.match(needle));
  return {
    proc,
    stderr: () => err,
    async waitFor(needle, ms = 30_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = match(needle);
        if (m) return m;
        if (exited) throw new Error(`${role} exited (${await proc.exited}) before ${needle}; stderr:\n${err}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${needle} from ${role}; stderr:\n${err}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 200);
          waiters.add(() => {
            clearTimeout(t);
            resolve();
          });
        });
        waiters.clear();
      }
    },
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return await proc.exited;
    },
  };
}

/** A TCP port free right now on 127.0.0.1 (for a config that must name it before the process starts). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
