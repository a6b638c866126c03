// Events as journal entries with fields, so an operator can filter:
//
//   journalctl -u clawpatrol-gateway CLAWPATROL_VERDICT=deny
//   journalctl -u clawpatrol-gateway CLAWPATROL_DEVICE=laptop -o json
//
// MESSAGE= is the line the stderr sink prints. Events reach sinks only after
// the bus's redaction pass, and every field below is taken from the event
// (the credential by its ref, never a value), so no secret can reach one.
// A failed send (journald gone or behind) writes that event's line to stderr
// instead, which systemd also puts in the journal; the first failure is
// logged once.
import { JournalWriter, PRIORITY, journalSocketForProcess, type JournalFields } from "../../journal.ts";
import { log } from "../../log.ts";
import type { EventSink, GatewayEvent } from "../types.ts";
import { StderrSink, formatEventLine } from "./stderr.ts";

export interface JournaldSinkOptions {
  /** SYSLOG_IDENTIFIER= (default clawpatrol-gateway, the unit's own). */
  identifier?: string;
  /** Where an event goes when a send fails (default: its stderr line). */
  fallback?: (event: GatewayEvent) => void;
}

/** The journal fields for one (redacted) event, in a stable order. */
export function journalFields(e: GatewayEvent, identifier = "clawpatrol-gateway"): JournalFields {
  const f: Array<[string, string]> = [
    ["MESSAGE", formatEventLine(e)],
    ["PRIORITY", String(e.verdict === "deny" ? PRIORITY.notice : PRIORITY.info)],
    ["SYSLOG_IDENTIFIER", identifier],
    ["CLAWPATROL_EVENT", e.kind],
    ["CLAWPATROL_VERDICT", e.verdict],
    ["CLAWPATROL_DEVICE", e.device],
    ["CLAWPATROL_PROFILE", e.profile],
  ];
  const opt = (key: string, v: string | number | undefined) => {
    if (v !== undefined && v !== "") f.push([key, String(v)]);
  };
  opt("CLAWPATROL_RULE", e.rule);
  opt("CLAWPATROL_ENDPOINT", e.endpoint);
  opt("CLAWPATROL_HOST", e.host);
  opt("CLAWPATROL_PORT", e.port);
  opt("CLAWPATROL_METHOD", e.method);
  opt("CLAWPATROL_PATH", e.path);
  opt("CLAWPATROL_STATUS", e.status);
  opt("CLAWPATROL_CREDENTIAL", e.credential);
  opt("CLAWPATROL_APPROVER", e.approvers);
  opt("CLAWPATROL_OPERATOR", e.operator);
  opt("CLAWPATROL_REASON", e.reason);
  opt("CLAWPATROL_LATENCY_MS", Math.round(e.durationMs));
  opt("CLAWPATROL_BYTES_UP", e.bytesUp);
  opt("CLAWPATROL_BYTES_DOWN", e.bytesDown);
  opt("CLAWPATROL_FLOW", e.flowId);
  opt("CLAWPATROL_FAMILY", e.family);
  opt("CLAWPATROL_SUMMARY", e.summary);
  if (e.action !== undefined) opt("CLAWPATROL_ACTION", JSON.stringify(e.action));
  return f;
}

export class JournaldSink implements EventSink {
  private readonly identifier: string;
  private readonly fallback: (event: GatewayEvent) => void;
  private warned = false;

  constructor(
    private readonly writer: JournalWriter,
    opts: JournaldSinkOptions = {},
  ) {
    this.identifier = opts.identifier ?? "clawpatrol-gateway";
    const stderr = new StderrSink();
    this.fallback = opts.fallback ?? ((e) => stderr.write(e));
  }

  write(event: GatewayEvent): void {
    const r = this.writer.send(journalFields(event, this.identifier));
    if (r.ok) return;
    if (!this.warned) {
      this.warned = true;
      log.warn("journald native protocol failed; events go to stderr while it does", { error: r.error });
    }
    this.fallback(event);
  }

  close(): void {
    this.writer.close();
  }
}

/**
 * The human-readable event sink: native journal entries with fields when the
 * process runs under systemd with its stderr in the journal (so entries are
 * not duplicated), else the stderr line.
 */
export function humanEventSink(env: Record<string, string | undefined> = process.env): EventSink {
  const socket = journalSocketForProcess(env);
  return socket ? new JournaldSink(new JournalWriter(socket)) : new StderrSink();
}
