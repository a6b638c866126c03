// The conn index: literals at once, names resolved in the background and
// again when their TTL runs out, the last good answer kept through a failure.
import { afterEach, describe, expect, test } from "bun:test";
import { ConnIndex, systemResolver, type Resolver } from "../../../app/dispatch/conn-index.ts";
import { policyFrom } from "../policy/helpers.ts";
import { waitFor } from "../../integration/support/netns.ts";

const POLICY = (host: string) => `
schema_version = 1
endpoint "postgres" "db" {
  hosts = ["${host}", "10.5.5.5:5432"]
}
endpoint "https" "web" {
  hosts = ["web.example"]
}
profile "default" {}
`;

describe("ConnIndex", () => {
  let index: ConnIndex | undefined;
  afterEach(() => index?.close());

  test("IP literals are indexed at once; names after they resolve; https endpoints never", async () => {
    let answers: Record<string, string[]> = { "db.example": ["192.0.2.10", "2001:db8::10"] };
    const asked: string[] = [];
    const resolve: Resolver = async (name) => {
      asked.push(name);
      const a = answers[name];
      if (!a) throw new Error("NXDOMAIN");
      return { addresses: a, ttlS: 30 };
    };
    let now = 0;
    index = new ConnIndex({ resolve, now: () => now });
    index.update(await policyFrom(POLICY("db.example:5432")));
    expect(index.lookup("10.5.5.5")).toEqual([{ endpoint: "postgres.db", host: "10.5.5.5" }]);
    await index.settle();
    expect(index.lookup("192.0.2.10")).toEqual([{ endpoint: "postgres.db", host: "db.example" }]);
    expect(index.lookup("::ffff:192.0.2.10")).toEqual([{ endpoint: "postgres.db", host: "db.example" }]);
    expect(index.lookup("2001:DB8::10")).toEqual([{ endpoint: "postgres.db", host: "db.example" }]);
    expect(asked).not.toContain("web.example");

    // A failed lookup keeps the last good addresses.
    answers = {};
    now += 31_000;
    await index.settle();
    expect(index.lookup("192.0.2.10")).toHaveLength(1);

    // A new answer replaces the old one.
    answers = { "db.example": ["192.0.2.11"] };
    now += 31_000;
    await index.settle();
    expect(index.lookup("192.0.2.10")).toEqual([]);
    expect(index.lookup("192.0.2.11")).toHaveLength(1);
  });

  test("a reload drops names no endpoint names any more", async () => {
    const resolve: Resolver = async (name) => ({ addresses: name === "a.example" ? ["192.0.2.1"] : ["192.0.2.2"], ttlS: 60 });
    index = new ConnIndex({ resolve });
    index.update(await policyFrom(POLICY("a.example")));
    expect(await waitFor(() => index!.lookup("192.0.2.1").length === 1, 5_000)).toBe(true);
    index.update(await policyFrom(POLICY("b.example")));
    expect(await waitFor(() => index!.lookup("192.0.2.2").length === 1, 5_000)).toBe(true);
    expect(index.lookup("192.0.2.1")).toEqual([]);
  });
});

describe("systemResolver", () => {
  test("a name DNS does not know falls back to the hosts file, looked up again in a minute", async () => {
    const r = await systemResolver("localhost");
    expect(r.addresses).toContain("127.0.0.1");
    expect(r.ttlS).toBe(60);
  });

  test("a name nobody knows is an error (the index keeps what it had)", async () => {
    await expect(systemResolver("no-such-host.invalid")).rejects.toThrow();
  });
});
