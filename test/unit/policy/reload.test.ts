import { afterEach, describe, expect, test } from "bun:test";
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError } from "../../../app/policy/load.ts";
import { watchPolicy, type PolicyWatch } from "../../../app/policy/reload.ts";
import type { ConfigError, Policy } from "../../../app/policy/types.ts";
import { tempDir } from "./helpers.ts";

const good = (verdict: string) => `schema_version = 1\n\ndefaults {\n  verdict = "${verdict}"\n}\n`;
const bad = `schema_version = 1\n\ndefaults {\n  verdict = "maybe"\n}\n`;

/** Collects reload results and lets a test wait for the next one. */
function recorder() {
  const seen: ({ policy: Policy } | { errors: ConfigError[] })[] = [];
  let wake: (() => void) | undefined;
  const push = (v: (typeof seen)[number]) => {
    seen.push(v);
    wake?.();
  };
  return {
    seen,
    handlers: { onPolicy: (policy: Policy) => push({ policy }), onErrors: (errors: ConfigError[]) => push({ errors }) },
    async next(count: number, timeoutMs = 3000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (seen.length < count) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for reload #${count}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 50);
        });
      }
    },
  };
}

let watch: PolicyWatch | undefined;
afterEach(() => watch?.close());

describe("watchPolicy", () => {
  test("good -> bad (FILE:LINE errors) -> good again", async () => {
    const dir = tempDir();
    const file = join(dir, "gateway.hcl");
    writeFileSync(file, good("allow"));
    const rec = recorder();
    watch = watchPolicy(file, rec.handlers, { debounceMs: 30 });
    await watch.ready;

    writeFileSync(file, bad);
    await rec.next(1);
    const first = rec.seen[0]!;
    expect("errors" in first && first.errors.map(formatConfigError)).toEqual([
      `${file}:4: defaults: verdict must be "allow" or "deny", not "maybe"`,
    ]);

    writeFileSync(file, good("deny"));
    await rec.next(2);
    const second = rec.seen[1]!;
    expect("policy" in second && second.policy.defaults.verdict).toBe("deny");
  });

  test("an editor replacing the file by rename is seen", async () => {
    const dir = tempDir();
    const file = join(dir, "gateway.hcl");
    writeFileSync(file, good("allow"));
    const rec = recorder();
    watch = watchPolicy(file, rec.handlers, { debounceMs: 30 });
    await watch.ready;

    writeFileSync(join(dir, ".gateway.hcl.swp"), good("deny"));
    renameSync(join(dir, ".gateway.hcl.swp"), file);
    await rec.next(1);
    const last = rec.seen.at(-1)!;
    expect("policy" in last && last.policy.defaults.verdict).toBe("deny");
  });

  test("a directory config reloads when one of its files changes; bursts are debounced", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "a.hcl"), good("allow"));
    const rec = recorder();
    watch = watchPolicy(dir, rec.handlers, { debounceMs: 80 });
    await watch.ready;

    writeFileSync(join(dir, "b.hcl"), 'endpoint "https" "x" {\n  hosts = ["x.test"]\n}\n');
    writeFileSync(join(dir, "b.hcl"), 'endpoint "https" "y" {\n  hosts = ["y.test"]\n}\n');
    await rec.next(1);
    const only = rec.seen[0]!;
    expect("policy" in only && [...only.policy.endpoints.keys()]).toEqual(["https.y"]);
    // A later edit is the very next reload: the burst gave one reload, not two.
    writeFileSync(join(dir, "b.hcl"), 'endpoint "https" "z" {\n  hosts = ["z.test"]\n}\n');
    await rec.next(2);
    const next = rec.seen[1]!;
    expect("policy" in next && [...next.policy.endpoints.keys()]).toEqual(["https.z"]);
  });

  test("close() stops reloads", async () => {
    const dir = tempDir();
    const file = join(dir, "gateway.hcl");
    writeFileSync(file, good("allow"));
    const rec = recorder();
    watch = watchPolicy(file, rec.handlers, { debounceMs: 20 });
    await watch.ready;
    // A second watcher on the same file, left open, shows when the edit has been seen.
    const witness = recorder();
    const open = watchPolicy(file, witness.handlers, { debounceMs: 20 });
    await open.ready;
    try {
      watch.close();
      writeFileSync(file, bad);
      await witness.next(1);
      expect(rec.seen).toEqual([]);
    } finally {
      open.close();
    }
  });
});
