// `clawpatrol-gateway devices …`: enrol, list, approve, revoke and move
// devices, and the command gate's kill switch. Through the running gateway
// where it must act (a WireGuard peer to add or remove), else on the state
// database directly.
import { controlFetch, ControlUnavailable } from "../client.ts";
import { UsageError } from "../cli.ts";
import { gatewayCommand } from "../operator-command.ts";
import { openStateDb } from "../../store/db.ts";
import { DeviceRegistry } from "../../store/devices.ts";
import type { Policy } from "../../policy/types.ts";
import { DevicesCommandFailed, cliOperator, isoMinute, printTable } from "./cli.ts";

export async function devicesCommand(rest: string[], flags: Map<string, string>, policy: Policy): Promise<number> {
  const [sub, name, maybeProfile] = rest;
  const socket = policy.gateway.controlSocket;
  const checkProfile = (p: string | undefined): string => {
    if (!p) throw new UsageError("a profile is required (--profile P)");
    if (!policy.profiles.has(p)) {
      throw new UsageError(`unknown profile "${p}" (configured: ${[...policy.profiles.keys()].join(", ") || "none"})`);
    }
    return p;
  };
  // Who decided, for the audit trail.
  const operator = cliOperator();
  const withDb = <T>(fn: (registry: DeviceRegistry) => T): T => {
    const db = openStateDb(policy.gateway.stateDir);
    try {
      return fn(new DeviceRegistry(db));
    } finally {
      db.close();
    }
  };
  // Through the running gateway: it must add or remove the WireGuard peer.
  const call = async (method: string, route: string, body?: unknown): Promise<any> => {
    const res = await controlFetch(socket, route, {
      method,
      ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
    });
    const out = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
    if (!res.ok) throw new DevicesCommandFailed(out.error?.message ?? `the gateway answered HTTP ${res.status}`);
    return out;
  };
  try {
    switch (sub) {
      case "add": {
        if (!name) throw new UsageError("devices add NAME --profile P");
        const { token } = withDb((r) => r.add(name, checkProfile(flags.get("profile"))));
        console.error(`device "${name}" added. Its token (shown once):`);
        console.log(token);
        return 0;
      }
      case "list": {
        // Read from the state database: works whether or not the gateway runs.
        const devices = withDb((r) => r.list());
        if (devices.length === 0) {
          console.error("no devices");
          return 0;
        }
        printTable(
          ["NAME", "KIND", "PROFILE", "ADDRESS", "STATE", "LAST SEEN", "CREATED"],
          devices.map((d) => [
            d.name,
            d.kind,
            d.profile,
            [d.address, d.address6].filter(Boolean).join(" ") || "-",
            d.revokedAt ? "revoked" : "active",
            d.lastSeen ? isoMinute(d.lastSeen) : "never",
            isoMinute(d.createdAt),
          ]),
        );
        return 0;
      }
      case "pending": {
        const { pending } = (await call("GET", "/api/onboard/pending")) as {
          pending: { code: string; name: string; requested_profile: string | null; source_ip: string | null; public_key: string; expires_at: number }[];
        };
        if (pending.length === 0) {
          console.error("no devices are waiting for approval");
          return 0;
        }
        printTable(
          ["CODE", "NAME", "REQUESTED PROFILE", "FROM", "KEY", "EXPIRES IN"],
          pending.map((p) => [
            p.code,
            p.name,
            p.requested_profile ?? "-",
            p.source_ip ?? "-",
            `${p.public_key.slice(0, 10)}…`,
            `${Math.max(0, Math.ceil((p.expires_at - Date.now()) / 60_000))} min`,
          ]),
        );
        console.error(`approve with: ${gatewayCommand()} devices approve CODE --profile ${[...policy.profiles.keys()].join("|") || "P"}`);
        return 0;
      }
      case "approve": {
        if (!name) throw new UsageError("devices approve CODE --profile P");
        const profile = checkProfile(flags.get("profile") ?? maybeProfile);
        const { device } = (await call("POST", `/api/onboard/${encodeURIComponent(name)}/approve`, { profile, operator })) as {
          device: { name: string; profile: string; address: string | null };
        };
        console.log(`approved "${device.name}" with profile ${device.profile}, address ${device.address ?? "-"}`);
        return 0;
      }
      case "deny": {
        if (!name) throw new UsageError("devices deny CODE");
        await call("POST", `/api/onboard/${encodeURIComponent(name)}/deny`, { operator });
        console.log(`denied ${name.toUpperCase()}`);
        return 0;
      }
      case "revoke": {
        if (!name) throw new UsageError("devices revoke NAME");
        try {
          await call("POST", `/api/devices/${encodeURIComponent(name)}/revoke`, { operator });
        } catch (e) {
          if (!(e instanceof ControlUnavailable)) throw e;
          // No gateway: no peer to remove; it loads only active devices when it starts.
          if (!withDb((r) => r.revoke(name))) throw new DevicesCommandFailed(`no active device named "${name}"`);
          console.error(`${e.message}; revoked in the state database (takes effect when the gateway starts)`);
          return 0;
        }
        console.log(`revoked "${name}"`);
        return 0;
      }
      case "set-profile": {
        if (!name) throw new UsageError("devices set-profile NAME PROFILE");
        const profile = checkProfile(maybeProfile ?? flags.get("profile"));
        try {
          await call("POST", `/api/devices/${encodeURIComponent(name)}/profile`, { profile, operator });
        } catch (e) {
          if (!(e instanceof ControlUnavailable)) throw e;
          if (!withDb((r) => r.setProfile(name, profile))) throw new DevicesCommandFailed(`no active device named "${name}"`);
          console.error(`${e.message}; changed in the state database`);
          return 0;
        }
        console.log(`"${name}" now uses profile ${profile}`);
        return 0;
      }
      case "kill":
      case "kill-all": {
        if (sub === "kill" && !name) throw new UsageError("devices kill NAME [--reason R] (or devices kill-all)");
        const device = sub === "kill" ? name : undefined;
        await call("POST", "/api/gate/kill", { scope: device ?? "*", operator, reason: flags.get("reason") ?? "" });
        console.log(`the kill switch is on for ${device ? `"${device}"` : "every device"}: its runs end, its commands are denied until \`devices release${device ? ` ${device}` : "-all"}\``);
        return 0;
      }
      case "release":
      case "release-all": {
        if (sub === "release" && !name) throw new UsageError("devices release NAME (or devices release-all)");
        await call("POST", "/api/gate/kill/release", { scope: sub === "release" ? name : "*", operator });
        console.log(`the kill switch is off for ${sub === "release" ? `"${name}"` : "every device"}`);
        return 0;
      }
      case "killed": {
        const { engaged } = (await call("GET", "/api/gate/kill")) as { engaged: { scope: string; operator: string; reason: string; since: string }[] };
        if (engaged.length === 0) {
          console.error("the kill switch is off for every device");
          return 0;
        }
        printTable(["DEVICE", "BY", "SINCE", "REASON"], engaged.map((e) => [e.scope === "*" ? "(every device)" : e.scope, e.operator, isoMinute(Date.parse(e.since)), e.reason || "-"]));
        return 0;
      }
      default:
        throw new UsageError("devices add|list|pending|approve|deny|revoke|set-profile|kill|kill-all|release|release-all|killed");
    }
  } catch (e) {
    if (e instanceof DevicesCommandFailed) {
      console.error(`clawpatrol-gateway: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
