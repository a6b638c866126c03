// The gate's verdict API inside the tunnel, on https://clawpatrol.internal/
// (app/endpoints/internal.ts hands /gate/ requests here). The device is who
// its tunnel address says it is, as for the rest of that service; but the
// agent shares that address, so every request must also prove it comes from
// the run's warden: `Authorization: Bearer <the device's API token>`, which
// the warden holds and the agent cannot read. Without it: 403, and a verdict
// request is recorded as refused. A command's follow-ups also carry the
// token its first answer gave.
//
//   POST /gate/commands              a command description -> allow | deny | held (JSON)
//   GET  /gate/commands/ID?wait=S    a held command: waits up to S s (max 25) for the decision
//   POST /gate/commands/ID/done      {exit, signal?, duration_ms, timed_out, error?, killed?}
//   POST /gate/commands/ID/cancel    the agent went away while the command was held
//   GET  /gate/kill?wait=S           the kill switch: {kill: false} after S s (max 25),
//                                    or {kill: true, ...} as soon as it is on for the device
// Follow-ups send the token as `Clawpatrol-Gate-Token`.
import type { HeaderList } from "../endpoints/http1/headers.ts";
import { getHeader } from "../endpoints/http1/headers.ts";
import { engagementLine } from "./kill.ts";
import { BadCommand, type GateDevice, type GateService } from "./service.ts";

export const GATE_TOKEN_HEADER = "Clawpatrol-Gate-Token";
/** The longest a poll waits before answering "held" again. */
export const MAX_POLL_S = 25;
/** Command descriptions larger than this are refused (413). */
export const MAX_GATE_BODY = 1024 * 1024;

export interface GateResponse {
  status: number;
  headers: HeaderList;
  body: string;
}

const json = (status: number, value: unknown): GateResponse => ({
  status,
  headers: [["Content-Type", "application/json"], ["Cache-Control", "no-store"]],
  body: JSON.stringify(value) + "\n",
});

export async function gateRoute(service: GateService, method: string, url: URL, headers: HeaderList, body: Uint8Array, device: GateDevice): Promise<GateResponse> {
  const parts = url.pathname.split("/").filter(Boolean); // ["gate", "commands", ID?, ACTION?]
  const isKill = parts[0] === "gate" && parts[1] === "kill" && parts.length === 2;
  if (!isKill && (parts[0] !== "gate" || parts[1] !== "commands" || parts.length > 4)) return json(404, { error: "not_found" });
  const wait = (): number => Math.min(MAX_POLL_S, Math.max(0, Number(url.searchParams.get("wait") ?? "0") || 0));
  const proof = /^Bearer\s+(\S+)$/i.exec(getHeader(headers, "authorization") ?? "")?.[1] ?? "";
  if (!service.provenWarden(device, proof)) {
    if (!isKill && parts.length === 2 && method === "POST") {
      let value: unknown;
      try {
        value = JSON.parse(new TextDecoder().decode(body));
      } catch {
        value = undefined;
      }
      service.refuseUnproven(device, value);
    }
    return json(403, { error: "not_the_warden", reason: "only the run's warden may ask the command gate" });
  }
  if (isKill) {
    if (method !== "GET") return json(405, { error: "method_not_allowed" });
    const e = await service.kill.wait(device.name, wait() * 1000);
    return json(200, e ? { kill: true, scope: e.scope, operator: e.operator, reason: e.reason, since: new Date(e.since).toISOString(), line: engagementLine(e) } : { kill: false });
  }
  const token = getHeader(headers, GATE_TOKEN_HEADER.toLowerCase()) ?? "";
  const id = parts[2];
  const action = parts[3];
  const parsed = (): unknown => {
    try {
      return JSON.parse(new TextDecoder().decode(body));
    } catch {
      throw new BadCommand("the body is not JSON");
    }
  };
  try {
    if (id === undefined) {
      if (method !== "POST") return json(405, { error: "method_not_allowed" });
      return json(200, service.ask(device, parsed()));
    }
    if (action === undefined) {
      if (method !== "GET") return json(405, { error: "method_not_allowed" });
      const answer = await service.poll(device, id, token, wait() * 1000);
      return answer ? json(200, answer) : json(404, { error: "unknown_command" });
    }
    if (method !== "POST") return json(405, { error: "method_not_allowed" });
    if (action === "done") return service.complete(device, id, token, parsed()) ? json(200, { ok: true }) : json(404, { error: "unknown_command" });
    if (action === "cancel") return service.cancel(device, id, token) ? json(200, { ok: true }) : json(404, { error: "unknown_command" });
    return json(404, { error: "not_found" });
  } catch (e) {
    if (e instanceof BadCommand) return json(400, { error: "bad_command", reason: e.message });
    throw e;
  }
}
