// Kernel WireGuard for whole-machine mode: where the module exists (the
// probe makes and deletes a throwaway wireguard link) and wg-quick is
// installed, the kernel carries the tunnel and no process of ours has to
// stay up. wg-quick only makes the interface (Table = off, no DNS =): the
// routes and resolv.conf are ours, the same as in userspace mode, so that
// `down` restores them exactly (wg-quick's fwmark rules and sysctls are
// not undone by it).
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { LoadedState } from "./state.ts";

export function kernelWireGuardAvailable(): boolean {
  if (!Bun.which("wg-quick") || !Bun.which("wg")) return false;
  const probe = `cpprobe${process.pid % 100000}`;
  const r = spawnSync("ip", ["link", "add", probe, "type", "wireguard"], { encoding: "utf8" });
  if (r.status !== 0) return false;
  spawnSync("ip", ["link", "del", probe]);
  return true;
}

/** wg-quick's config text (it holds the private key: written 0600). */
export function wgQuickConfig(s: Pick<LoadedState, "privateKey" | "device" | "gateway">, endpoint: string, mtu: number): string {
  const addresses = [`${s.device.address}/32`, ...(s.device.address6 ? [`${s.device.address6}/128`] : [])];
  const allowed = s.gateway.allowed_ips?.length ? s.gateway.allowed_ips : ["0.0.0.0/0", "::/0"];
  return [
    "# written by clawpatrol up; removed by clawpatrol down",
    "[Interface]",
    `PrivateKey = ${s.privateKey}`,
    `Address = ${addresses.join(", ")}`,
    `MTU = ${mtu}`,
    "Table = off",
    "",
    "[Peer]",
    `PublicKey = ${s.gateway.public_key}`,
    `AllowedIPs = ${allowed.join(", ")}`,
    `Endpoint = ${endpoint}`,
    `PersistentKeepalive = ${s.gateway.persistent_keepalive || 25}`,
    "",
  ].join("\n");
}

/** Writes `<dir>/wg/<iface>.conf` (wg-quick names the interface after the file). */
export function writeWgQuickConfig(dir: string, iface: string, text: string): string {
  const d = path.join(dir, "wg");
  mkdirSync(d, { recursive: true, mode: 0o700 });
  chmodSync(d, 0o700);
  const file = path.join(d, `${iface}.conf`);
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

/** Seconds since the epoch of the peer's last handshake, from `wg show`; undefined if none. */
export function kernelLastHandshake(iface: string): number | undefined {
  const r = spawnSync("wg", ["show", iface, "latest-handshakes"], { encoding: "utf8" });
  const t = Number((r.stdout ?? "").trim().split(/\s+/)[1]);
  return t > 0 ? t * 1000 : undefined;
}
