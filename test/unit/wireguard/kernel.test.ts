/**
 * kernel-wg.ts against a scripted runner: the exact argv sequences, the
 * idempotency of the policy routing, and that secrets stay out of argv,
 * errors and logs.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  ensureInterface,
  hasIifRule,
  installPolicyRouting,
  listPeers,
  parseDump,
  removePeer,
  removePolicyRouting,
  setPeer,
  type KernelWgDeps,
  type RunResult,
} from "../../../app/net/kernel-wg.ts";
import { setLogWriter } from "../../../app/log.ts";
import { generateKeyPair } from "../../../app/net/wireguard/keys.ts";

interface Call {
  argv: string[];
  stdin?: string;
}

/** A fake system: answers by the first matching rule, records every call. */
function fakeSystem(answer: (argv: string[]) => Partial<RunResult> | undefined = () => undefined) {
  const calls: Call[] = [];
  const sysctls: string[] = [];
  const deps: KernelWgDeps = {
    run: async (argv, opts) => {
      calls.push(opts?.stdin === undefined ? { argv } : { argv, stdin: opts.stdin });
      const a = answer(argv) ?? {};
      return { code: a.code ?? 0, stdout: a.stdout ?? "", stderr: a.stderr ?? "" };
    },
    writeSysctl: async (segments, value) => {
      sysctls.push(`${segments.join("/")}=${value}`);
    },
  };
  return { calls, sysctls, deps, argvs: () => calls.map((c) => c.argv.join(" ")) };
}

const logLines: string[] = [];
beforeEach(() => {
  logLines.length = 0;
  setLogWriter((l) => logLines.push(l));
});
afterEach(() => setLogWriter(undefined));

const PEER = generateKeyPair().publicKey;

describe("ensureInterface", () => {
  test("creates a missing interface, then key, port, addresses, up", async () => {
    const sys = fakeSystem((a) => (a.join(" ") === "ip link show dev wg0" ? { code: 1, stderr: 'Device "wg0" does not exist.' } : undefined));
    const r = await ensureInterface(
      { name: "wg0", privateKeyFile: "/var/lib/clawpatrol/wg.key", listenPort: 51820, address: ["10.100.0.1/24", "fd10:100::1/64"] },
      sys.deps,
    );
    expect(r.created).toBe(true);
    expect(sys.argvs()).toEqual([
      "ip link show dev wg0",
      "ip link add dev wg0 type wireguard",
      "wg set wg0 listen-port 51820 private-key /var/lib/clawpatrol/wg.key",
      "ip address replace 10.100.0.1/24 dev wg0",
      "ip address replace fd10:100::1/64 dev wg0",
      "ip link set dev wg0 up",
    ]);
  });

  test("accepts an existing interface (wireguard-go or a previous run)", async () => {
    const sys = fakeSystem();
    const r = await ensureInterface({ name: "wg0", privateKeyFile: "/k", listenPort: 51820, address: "10.100.0.1/24", mtu: 1420 }, sys.deps);
    expect(r.created).toBe(false);
    expect(sys.argvs()).toEqual([
      "ip link show dev wg0",
      "wg set wg0 listen-port 51820 private-key /k",
      "ip address replace 10.100.0.1/24 dev wg0",
      "ip link set dev wg0 mtu 1420",
      "ip link set dev wg0 up",
    ]);
  });

  test("no kernel module: a clear error", async () => {
    const sys = fakeSystem((a) =>
      a[1] === "link" && a[2] === "show" ? { code: 1 } : a[2] === "add" ? { code: 2, stderr: "Error: Unknown device type." } : undefined,
    );
    const p = ensureInterface({ name: "wg0", privateKeyFile: "/k", listenPort: 1, address: "10.0.0.1/24" }, sys.deps);
    await expect(p).rejects.toThrow(/cannot create WireGuard interface wg0.*Unknown device type/);
  });

  test("refuses bad names and addresses before running anything", async () => {
    const sys = fakeSystem();
    await expect(ensureInterface({ name: "wg0; rm -rf /", privateKeyFile: "/k", listenPort: 1, address: "10.0.0.1/24" }, sys.deps)).rejects.toThrow(/interface name/);
    await expect(ensureInterface({ name: "wg0", privateKeyFile: "/k", listenPort: 70000, address: "10.0.0.1/24" }, sys.deps)).rejects.toThrow(/listen port/);
    await expect(ensureInterface({ name: "wg0", privateKeyFile: "/k", listenPort: 1, address: "10.0.0.300/24" }, sys.deps)).rejects.toThrow(/address/);
    expect(sys.calls).toEqual([]);
  });
});

describe("peers", () => {
  test("setPeer: allowed IPs replaced, PSK only through stdin", async () => {
    const sys = fakeSystem();
    const psk = generateKeyPair().privateKey;
    await setPeer("wg0", { publicKey: PEER, allowedIPs: ["10.100.0.2/32", " fd10:100::2/128"], presharedKey: psk, persistentKeepalive: 25 }, sys.deps);
    expect(sys.calls).toEqual([
      {
        argv: ["wg", "set", "wg0", "peer", PEER, "allowed-ips", "10.100.0.2/32,fd10:100::2/128", "persistent-keepalive", "25", "preshared-key", "/dev/stdin"],
        stdin: psk + "\n",
      },
    ]);
    expect(logLines.join("\n")).not.toContain(psk);
  });

  test("setPeer without a PSK clears any old one (empty stdin)", async () => {
    const sys = fakeSystem();
    await setPeer("wg0", { publicKey: PEER, allowedIPs: ["10.100.0.3/32"] }, sys.deps);
    expect(sys.calls).toEqual([{ argv: ["wg", "set", "wg0", "peer", PEER, "allowed-ips", "10.100.0.3/32", "preshared-key", "/dev/stdin"], stdin: "" }]);
  });

  test("setPeer: a bad PSK is refused without echoing it; a failure shows stderr, never the PSK", async () => {
    const sys = fakeSystem(() => ({ code: 1, stderr: "Unable to modify interface: No such device" }));
    const bad = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    const e1 = await setPeer("wg0", { publicKey: PEER, allowedIPs: [], presharedKey: bad }, sys.deps).catch((e: Error) => e);
    expect((e1 as Error).message).not.toContain(bad);
    const psk = generateKeyPair().privateKey;
    const e2 = await setPeer("wg0", { publicKey: PEER, allowedIPs: ["10.0.0.2/32"], presharedKey: psk }, sys.deps).catch((e: Error) => e);
    expect((e2 as Error).message).toContain("No such device");
    expect((e2 as Error).message).not.toContain(psk);
    expect(JSON.stringify(e2)).not.toContain(psk);
  });

  test("setPeer refuses bad keys and prefixes", async () => {
    const sys = fakeSystem();
    await expect(setPeer("wg0", { publicKey: "nope", allowedIPs: [] }, sys.deps)).rejects.toThrow(/public key/);
    await expect(setPeer("wg0", { publicKey: PEER, allowedIPs: ["10.0.0.0/33"] }, sys.deps)).rejects.toThrow(/allowed IP/);
    expect(sys.calls).toEqual([]);
  });

  test("removePeer", async () => {
    const sys = fakeSystem();
    await removePeer("wg0", PEER, sys.deps);
    expect(sys.argvs()).toEqual([`wg set wg0 peer ${PEER} remove`]);
  });

  test("listPeers parses wg show dump and drops the private key line", async () => {
    const priv = generateKeyPair().privateKey;
    const p2 = generateKeyPair().publicKey;
    const psk = generateKeyPair().privateKey;
    const dump =
      `${priv}\t${generateKeyPair().publicKey}\t51820\toff\n` +
      `${PEER}\t(none)\t10.101.0.2:51820\t10.100.0.2/32,fd10:100::2/128\t1700000000\t1234\t5678\t25\n` +
      `${p2}\t${psk}\t(none)\t(none)\t0\t0\t0\toff\n`;
    const sys = fakeSystem(() => ({ stdout: dump }));
    const peers = await listPeers("wg0", sys.deps);
    expect(sys.argvs()).toEqual(["wg show wg0 dump"]);
    expect(peers).toEqual([
      {
        publicKey: PEER,
        hasPresharedKey: false,
        endpoint: "10.101.0.2:51820",
        allowedIPs: ["10.100.0.2/32", "fd10:100::2/128"],
        lastHandshake: 1_700_000_000_000,
        rxBytes: 1234,
        txBytes: 5678,
        persistentKeepalive: 25,
      },
      { publicKey: p2, hasPresharedKey: true, endpoint: undefined, allowedIPs: [], lastHandshake: undefined, rxBytes: 0, txBytes: 0, persistentKeepalive: 0 },
    ]);
    expect(JSON.stringify(peers)).not.toContain(priv);
    expect(JSON.stringify(peers)).not.toContain(psk);
    expect(parseDump("")).toEqual([]);
  });

  test("a failing wg show never puts stdout (the private key) in the error", async () => {
    const priv = generateKeyPair().privateKey;
    const sys = fakeSystem(() => ({ code: 1, stdout: `${priv}\tx\t1\toff\n`, stderr: "boom" }));
    const e = await listPeers("wg0", sys.deps).catch((x: Error) => x);
    expect((e as Error).message).toContain("boom");
    expect((e as Error).message).not.toContain(priv);
  });
});

describe("policy routing", () => {
  const OPTS = { wg: "wg0", tun: "cp0", table: 100 };

  test("first install: forwarding only on wg0 and the TUN, then per family the iif rule, the route, the isolation rules, the local rule moved", async () => {
    const sys = fakeSystem((a) => (a[3] === "show" ? { stdout: "0:\tfrom all lookup local\n32766:\tfrom all lookup main\n" } : undefined));
    await installPolicyRouting({ ...OPTS, subnets: ["10.89.0.0/24", "fd89::/64"] }, sys.deps);
    expect(sys.sysctls).toEqual([
      // ip_forward sets every interface; then only the two that carry device packets
      "net/ipv4/ip_forward=0",
      "net/ipv4/conf/wg0/forwarding=1",
      "net/ipv4/conf/cp0/forwarding=1",
      "net/ipv6/conf/all/forwarding=1",
      "net/ipv4/conf/all/rp_filter=0",
      "net/ipv4/conf/default/rp_filter=0",
      "net/ipv4/conf/cp0/rp_filter=0",
      "net/ipv4/conf/wg0/rp_filter=0",
    ]);
    const isolation = (fam: string, extra: string[]) => [
      `ip ${fam} rule del pref 101`,
      `ip ${fam} rule del pref 102`,
      `ip ${fam} rule del pref 103`,
      ...extra.filter((e) => e.includes("del")),
      `ip ${fam} rule add iif cp0 lookup main pref 101`,
      ...extra.filter((e) => e.includes("prohibit") && !e.includes("not")),
      `ip ${fam} rule add lookup local pref 103`,
      ...extra.filter((e) => e.includes("not iif")),
      `ip ${fam} rule del pref 0 lookup local`,
    ];
    // each `rule del pref N` loops until it fails; the fake succeeds 16 times
    const argvs = sys.argvs().filter((a, i, all) => !(a.includes("rule del pref 10") && all[i - 1] === a));
    expect(argvs).toEqual([
      "ip -4 rule show",
      "ip -4 rule add iif wg0 lookup 100 pref 100",
      "ip -4 route replace default dev cp0 table 100",
      ...isolation("-4", ["ip -4 rule add to 10.89.0.0/24 prohibit pref 102"]),
      "ip -6 rule show",
      "ip -6 rule add iif wg0 lookup 100 pref 100",
      "ip -6 route replace default dev cp0 table 100",
      ...isolation("-6", ["ip -6 rule del pref 104", "ip -6 rule add to fd89::/64 prohibit pref 102", "ip -6 rule add not iif lo prohibit pref 104"]),
    ]);
  });

  test("without an IPv6 subnet IPv6 forwarding is off", async () => {
    const sys = fakeSystem((a) => (a[3] === "show" ? { stdout: "" } : a[3] === "del" ? { code: 2 } : undefined));
    await installPolicyRouting({ ...OPTS, subnets: ["10.89.0.0/24"] }, sys.deps);
    expect(sys.sysctls).toContain("net/ipv6/conf/all/forwarding=0");
    expect(sys.argvs()).not.toContain("ip -6 rule add to 10.89.0.0/24 prohibit pref 102");
    // the local rule was already moved (no `0: … lookup local`): nothing to delete
    expect(sys.argvs().filter((a) => a.includes("pref 0"))).toEqual([]);
  });

  test("second install adds no duplicate iif rule and replaces the isolation rules", async () => {
    const shown = "100:\tfrom all iif wg0 lookup 100\n101:\tfrom all iif cp0 lookup main\n103:\tfrom all lookup local\n32766:\tfrom all lookup main\n";
    let deletable = 2; // v4 101 and 103 exist once each
    const sys = fakeSystem((a) => {
      if (a[3] === "show") return { stdout: shown };
      if (a[3] === "del") return deletable-- > 0 ? {} : { code: 2 };
      return undefined;
    });
    await installPolicyRouting({ ...OPTS, pref: 90, table: 100 }, sys.deps);
    expect(sys.argvs().filter((a) => a.includes(" add "))).toEqual([
      "ip -4 rule add iif cp0 lookup main pref 91",
      "ip -4 rule add lookup local pref 93",
      "ip -6 rule add iif cp0 lookup main pref 91",
      "ip -6 rule add lookup local pref 93",
      "ip -6 rule add not iif lo prohibit pref 94",
    ]);
  });

  test("hasIifRule: exact interface and table; detached interfaces count", () => {
    expect(hasIifRule("100:\tfrom all iif wg0 lookup 100", "wg0", 100)).toBe(true);
    expect(hasIifRule("100:\tfrom all iif wg0 [detached] lookup 100", "wg0", 100)).toBe(true);
    expect(hasIifRule("100:\tfrom all iif wg00 lookup 100", "wg0", 100)).toBe(false);
    expect(hasIifRule("100:\tfrom all iif wg0 lookup 1000", "wg0", 100)).toBe(false);
    expect(hasIifRule("100:\tfrom all iif wg0 lookup 101", "wg0", 100)).toBe(false);
  });

  test("remove: deletes every copy of the iif rule, puts local back at 0 before its moved copy goes, and the default route", async () => {
    let v4Rules = 2;
    const sys = fakeSystem((a) => {
      const s = a.join(" ");
      if (s === "ip -4 rule show") return { stdout: v4Rules > 0 ? "100:\tfrom all iif wg0 lookup 100\n103:\tfrom all lookup local\n" : "103:\tfrom all lookup local\n" };
      if (s === "ip -4 rule del iif wg0 lookup 100") v4Rules--;
      if (s === "ip -6 rule show") return { stdout: "0:\tfrom all lookup local\n" };
      if (s.includes("rule del pref")) return { code: 2 };
      if (s === "ip -4 route show table 100") return { stdout: "default dev cp0 scope link \n" };
      return undefined;
    });
    await removePolicyRouting(OPTS, sys.deps);
    expect(sys.argvs()).toEqual([
      "ip -4 rule show",
      "ip -4 rule del iif wg0 lookup 100",
      "ip -4 rule show",
      "ip -4 rule del iif wg0 lookup 100",
      "ip -4 rule show",
      "ip -4 rule show",
      "ip -4 rule add pref 0 lookup local",
      "ip -4 rule del pref 101",
      "ip -4 rule del pref 103",
      "ip -4 route show table 100",
      "ip -4 route del default table 100",
      "ip -6 rule show",
      "ip -6 rule show",
      "ip -6 rule del pref 101",
      "ip -6 rule del pref 103",
      "ip -6 rule del pref 104",
      "ip -6 route show table 100",
    ]);
  });

  test("refuses the main/local tables", async () => {
    const sys = fakeSystem();
    await expect(installPolicyRouting({ ...OPTS, table: 254 }, sys.deps)).rejects.toThrow(/table/);
    expect(sys.calls).toEqual([]);
  });
});
