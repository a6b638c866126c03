// Holding an intercepted request for approval: what approvers are shown
// (redacted, bounded), how identical requests are recognised (the body
// fingerprint), and the HTTP answers of an asynchronous hold.
import { createHash, randomUUID } from "node:crypto";
import type { ApprovalRequest } from "../../approvers/types.ts";
import type { HoldOutcome } from "../../approvers/hub.ts";
import type { Rule } from "../../policy/types.ts";
import type { HeaderList } from "../http1/headers.ts";
import { simpleResponse } from "../http1/serialize.ts";

/** The agent retries an asynchronously held request with this header. */
export const OPERATION_HEADER = "Clawpatrol-Operation";

/** Bytes of the body an approver is shown. */
const BODY_PREVIEW_BYTES = 4096;

/** Headers that carry credentials (the agent's placeholders or its own secrets): never shown. */
const CREDENTIAL_HEADERS = new Set(["authorization", "proxy-authorization", "cookie", "x-api-key", "x-goog-api-key"]);

export interface ApprovalGate {
  hold(input: {
    request: ApprovalRequest;
    rule: Rule;
    chain: string[];
    operationId: string | undefined;
    /** Aborted when the agent goes away: a synchronous hold then ends as deny. */
    signal: AbortSignal;
  }): Promise<HoldOutcome>;
}

export function buildApprovalRequest(x: {
  time: number;
  device: string;
  profile: string;
  endpoint: string;
  rule: string;
  reason: string;
  method: string;
  host: string;
  path: string;
  headers: HeaderList;
  body: Uint8Array | undefined;
  /** The body went on past what was read. */
  bodyTruncated: boolean;
  redact: (text: string) => string;
}): ApprovalRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of x.headers) {
    const key = name.toLowerCase();
    const shown = CREDENTIAL_HEADERS.has(key) ? "[redacted]" : x.redact(value);
    headers[key] = key in headers ? `${headers[key]}, ${shown}` : shown;
  }
  const body = x.body ?? new Uint8Array(0);
  // Redact the whole body read, then cut: a secret straddling the preview's
  // end would otherwise leave its first part unrecognised, in clear.
  const preview = x.redact(new TextDecoder("utf-8", { fatal: false }).decode(body)).slice(0, BODY_PREVIEW_BYTES);
  const fingerprint = createHash("sha256")
    .update(`${x.method}\0${x.host}\0${x.path}\0${x.bodyTruncated ? "truncated" : "whole"}\0`)
    .update(body)
    .digest("hex");
  return {
    id: randomUUID(),
    time: new Date(x.time).toISOString(),
    device: x.device,
    profile: x.profile,
    endpoint: x.endpoint,
    rule: x.rule,
    reason: x.reason,
    method: x.method,
    host: x.host,
    path: x.path,
    headers,
    bodyPreview: preview,
    bodyTruncated: x.bodyTruncated || body.length > BODY_PREVIEW_BYTES,
    fingerprint,
  };
}

/** 202 for a hold that outlived its synchronous wait: retry the same request with the header. */
export function pendingResponse(operation: string, retryAfterS: number, close: boolean): Uint8Array {
  const body = JSON.stringify({ status: "pending", operation, retry_after: retryAfterS }) + "\n";
  const headers: HeaderList = [
    ["Content-Type", "application/json"],
    [OPERATION_HEADER, operation],
    ["Retry-After", String(retryAfterS)],
  ];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(202, headers, body);
}

export function refusedOperationResponse(status: number, code: string, reason: string, close: boolean): Uint8Array {
  const body = JSON.stringify({ error: code, reason }) + "\n";
  const headers: HeaderList = [["Content-Type", "application/json"]];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(status, headers, body);
}
