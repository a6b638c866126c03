// The gateway as a process of its own for the Postgres benchmark: the same
// startGateway `clawpatrol-gateway all` runs, minus the stderr event echo
// (events still go to the state database and the JSON-lines file), with one
// proxy device added for the load (libpq cannot speak SOCKS, so the bench
// reaches the explicit proxy with socat's HTTP CONNECT and this device's
// token). A process of its own so its CPU time can be read from
// /proc/PID/stat and no load generator shares its event loop.
//
//   bun test/bench/postgres-gateway-proc.ts CONFIG PROFILE
//
// Prints one JSON line on stdout once listening: { "proxy": "HOST:PORT", "device": NAME, "token": TOKEN }.
// SIGTERM/SIGINT close it cleanly (so `bun --cpu-prof` can write its profile).
import { startGateway } from "../../app/gateway.ts";

const [configPath, profile] = process.argv.slice(2);
if (!configPath || !profile) {
  console.error("usage: bun test/bench/postgres-gateway-proc.ts CONFIG PROFILE");
  process.exit(2);
}

const gw = await startGateway({ configPath, stderrEvents: false });
const p = gw.proxies[0];
if (!p) {
  console.error("postgres-gateway-proc: the config has no proxy listener");
  process.exit(2);
}
const device = "pgbench-box";
const { token } = gw.devices.add(device, profile);
process.stdout.write(`${JSON.stringify({ proxy: `${p.address.host}:${p.address.port}`, device, token })}\n`);

let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await gw.close().catch(() => {});
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
