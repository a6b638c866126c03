// Refusals as the API server answers them: a `Status` object (kind Status,
// apiVersion v1, status Failure, the reason for the code, the rule and the
// reason in `message`), so kubectl prints a normal error:
//   Error from server (Forbidden): pods "web" is forbidden: clawpatrol rule "no-deletes": deletes need a human
import type { HeaderList } from "../http1/headers.ts";
import { simpleResponse } from "../http1/serialize.ts";
import type { K8sRequestInfo } from "../../families/k8s-request.ts";

/** metav1.StatusReason for the codes the gateway answers with. */
const REASONS: Record<number, string> = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  405: "MethodNotAllowed",
  408: "Timeout",
  409: "Conflict",
  413: "RequestEntityTooLarge",
  421: "BadRequest",
  500: "InternalError",
  501: "BadRequest",
  502: "InternalError",
  503: "ServiceUnavailable",
};

export interface StatusObject {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  details?: { name?: string; group?: string; kind?: string };
  code: number;
}

/** The Status for a refusal; `info` (when the request was parsed) names the object as the server's Forbidden does. */
export function statusObject(code: number, rule: string | undefined, reason: string, info?: K8sRequestInfo): StatusObject {
  const who = rule !== undefined ? `clawpatrol rule "${rule}"` : "clawpatrol";
  let subject = "the request";
  if (info?.isResource && info.resource) {
    const resource = info.subresource ? `${info.resource}/${info.subresource}` : info.resource;
    const group = info.apiGroup ? `.${info.apiGroup}` : "";
    subject = info.name ? `${resource}${group} "${info.name}"` : `${resource}${group}`;
  }
  const status: StatusObject = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message: `${subject} is ${code === 403 ? "forbidden" : "refused"}: ${who}: ${reason}`,
    reason: REASONS[code] ?? "",
    code,
  };
  if (info?.isResource && info.resource) {
    status.details = { ...(info.name ? { name: info.name } : {}), ...(info.apiGroup ? { group: info.apiGroup } : {}), kind: info.resource };
  }
  return status;
}

/** The whole HTTP response carrying a Status. */
export function statusResponse(code: number, rule: string | undefined, reason: string, close: boolean, info?: K8sRequestInfo): Uint8Array {
  const headers: HeaderList = [["Content-Type", "application/json"]];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(code, headers, JSON.stringify(statusObject(code, rule, reason, info)) + "\n");
}
