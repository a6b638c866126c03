// What an approver sees of a held SQL statement, for every endpoint that
// speaks SQL on the wire (Postgres, ClickHouse native): the statement as the
// request line and body preview (redacted), its database and user as headers.
import { randomUUID } from "node:crypto";
import type { ApprovalRequest } from "../../approvers/types.ts";
import type { Decision } from "../../policy/types.ts";
import { cut, sqlFamily, type SqlFacts } from "./family.ts";

const PREVIEW_CHARS = 4096;

export function sqlApprovalRequest(x: {
  facts: SqlFacts;
  decision: Decision;
  device: { name: string; profile: string };
  endpoint: string;
  host: string;
  redact: (text: string) => string;
}): ApprovalRequest {
  const { facts, decision: d, redact } = x;
  const statement = facts.facets?.statement ?? facts.text;
  return {
    id: randomUUID(),
    time: new Date().toISOString(),
    device: x.device.name,
    profile: x.device.profile,
    endpoint: x.endpoint,
    rule: d.rule ?? "",
    reason: d.reason,
    method: (facts.facets?.verb ?? "sql").toUpperCase(),
    host: x.host,
    path: redact(cut(statement, 300)),
    headers: { database: facts.database, user: facts.user },
    bodyPreview: redact(cut(statement, PREVIEW_CHARS)),
    bodyTruncated: statement.length > PREVIEW_CHARS,
    fingerprint: sqlFamily.fingerprint(facts),
    family: "sql",
    summary: redact(sqlFamily.summary(facts)),
  };
}
