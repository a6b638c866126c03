// What approvers are shown of a held request's body: redacted as a whole
// before it is cut, so a secret straddling the preview's end leaves nothing.
import { expect, test } from "bun:test";
import { buildApprovalRequest } from "../../../app/endpoints/https/approval.ts";

const SECRET = "sk-live-0123456789abcdef";
const redact = (t: string) => t.split(SECRET).join("[REDACTED]");

test("a secret across the preview's cut is redacted, not cut in half", () => {
  const body = new TextEncoder().encode("a".repeat(4090) + SECRET + "tail");
  const r = buildApprovalRequest({
    time: 0,
    device: "d",
    profile: "p",
    endpoint: "https.x",
    rule: "r",
    reason: "why",
    method: "POST",
    host: "x.example",
    path: "/",
    headers: [],
    body,
    bodyTruncated: false,
    redact,
  });
  expect(r.bodyPreview).not.toContain(SECRET.slice(0, 6));
  expect(r.bodyPreview.length).toBeLessThanOrEqual(4096);
  expect(r.bodyTruncated).toBe(true);
});
