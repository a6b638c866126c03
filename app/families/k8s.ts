// The k8s family: what CEL conditions see for one Kubernetes API request
// (endpoint type kubernetes). Conditions read `k8s.*` (the request as the API
// server's authorizer sees it, app/families/k8s-request.ts) and `http.*`
// (the request itself; `http.body` as in the http family).
//
// `k8s.impersonate` is every Impersonate-* header (user, group, uid,
// extra-KEY, lower-case, repeated values joined with ", "); a request that
// carries one is denied unless a rule allowed it by name
// (app/endpoints/kubernetes/judge.ts).
import { createHash } from "node:crypto";
import type { HttpFacts } from "../policy/types.ts";
import { astReadsFields, baseEnvironment } from "./cel-base.ts";
import { BODY_FIELDS, httpCelValue, withHttpVariable } from "./http.ts";
import { parseRequestInfo, queryValues, type K8sRequestInfo } from "./k8s-request.ts";
import type { FamilyDefinition } from "./types.ts";

export interface K8sFacts {
  http: HttpFacts;
  info: K8sRequestInfo;
  labelSelector: string;
  fieldSelector: string;
  /** The exec argv: every `command` query parameter, in order. */
  command: string[];
  container: string;
  /** `dryRun` was given (the server persists nothing). */
  dryRun: boolean;
  /** Impersonate-* headers by the rest of their name (user, group, uid, extra-scopes), lower-case. */
  impersonate: Record<string, string>;
}

/** The facts of one request: `target` is the request target as forwarded (path and query). */
export function k8sFacts(http: HttpFacts, target: string): K8sFacts {
  const q = target.indexOf("?");
  const query = queryValues(q >= 0 ? target.slice(q + 1) : "");
  const first = (k: string) => query.get(k)?.[0] ?? "";
  const impersonate: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(http.headers)) {
    if (name.startsWith("impersonate-")) impersonate[name.slice("impersonate-".length)] = value;
  }
  return {
    http,
    info: parseRequestInfo(http.method, http.path, query),
    labelSelector: first("labelSelector"),
    fieldSelector: first("fieldSelector"),
    command: query.get("command") ?? [],
    container: first("container"),
    dryRun: query.has("dryRun"),
    impersonate,
  };
}

/**
 * K8sFacts from what a caller judging plain HTTP facts has (the rules API
 * re-judging a recorded request, policy fixtures): the facets from the
 * method, path and the first value of each query parameter.
 */
function asK8s(f: K8sFacts | HttpFacts): K8sFacts {
  if ("info" in f) return f;
  const query = new URLSearchParams(Object.entries(f.query)).toString();
  return k8sFacts(f, query ? `${f.path}?${query}` : f.path);
}

export class K8sRequestValue {
  constructor(
    readonly verb: string,
    readonly api_group: string,
    readonly api_version: string,
    readonly resource: string,
    readonly subresource: string,
    readonly namespace: string,
    readonly name: string,
    readonly label_selector: string,
    readonly field_selector: string,
    readonly command: string[],
    readonly container: string,
    readonly dry_run: boolean,
    readonly impersonate: Record<string, string>,
    /** Not a resource request: discovery, /version, /healthz, /openapi. */
    readonly meta: boolean,
  ) {}
}

const environment = withHttpVariable(baseEnvironment())
  .registerType("K8sRequest", {
    ctor: K8sRequestValue,
    fields: {
      verb: "string",
      api_group: "string",
      api_version: "string",
      resource: "string",
      subresource: "string",
      namespace: "string",
      name: "string",
      label_selector: "string",
      field_selector: "string",
      command: "list<string>",
      container: "string",
      dry_run: "bool",
      impersonate: "map<string, string>",
      meta: "bool",
    },
  })
  .registerVariable("k8s", "K8sRequest");

function celValue(facts: K8sFacts | HttpFacts): K8sRequestValue {
  const f = asK8s(facts);
  const i = f.info;
  return new K8sRequestValue(
    i.verb,
    i.apiGroup,
    i.apiVersion,
    i.resource,
    i.subresource,
    i.namespace,
    i.name,
    f.labelSelector,
    f.fieldSelector,
    f.command,
    f.container,
    f.dryRun,
    f.impersonate,
    !i.isResource,
  );
}

/** `pods/exec`, `deployments.apps`, `namespaces/kube-system`: the resource as kubectl names it. */
function resourceName(i: K8sRequestInfo): string {
  const group = i.apiGroup ? `.${i.apiGroup}` : "";
  const sub = i.subresource ? `/${i.subresource}` : "";
  return `${i.resource}${group}${sub}`;
}

export const k8sFamily: FamilyDefinition<K8sFacts> = {
  name: "k8s",
  variable: "k8s",
  environment,
  celValue,
  alsoSees: { variables: ["http"], values: (f) => ({ http: httpCelValue(asK8s(f).http) }) },
  // Only the http body is gathered on demand; every k8s facet comes from the head.
  readsDeferred: (ast) => astReadsFields(ast, "http", BODY_FIELDS),
  summary: (facts) => {
    const f = asK8s(facts);
    const i = f.info;
    if (!i.isResource) return `${i.verb} ${f.http.path}`;
    const where = i.namespace ? ` -n ${i.namespace}` : "";
    const name = i.name ? ` ${i.name}` : "";
    const cmd = f.command.length > 0 ? ` -- ${f.command.join(" ")}` : "";
    return `${i.verb} ${resourceName(i)}${name}${where}${cmd}`.slice(0, 300);
  },
  action: (facts) => {
    const f = asK8s(facts);
    const i = f.info;
    const out: Record<string, unknown> = {
      verb: i.verb,
      api_group: i.apiGroup,
      api_version: i.apiVersion,
      resource: i.resource,
      subresource: i.subresource,
      namespace: i.namespace,
      name: i.name,
      method: f.http.method,
      host: f.http.host,
      path: f.http.path,
    };
    if (!i.isResource) out.meta = true;
    if (f.labelSelector) out.label_selector = f.labelSelector;
    if (f.fieldSelector) out.field_selector = f.fieldSelector;
    if (f.command.length > 0) out.command = f.command.slice(0, 64);
    if (f.container) out.container = f.container;
    if (f.dryRun) out.dry_run = true;
    if (Object.keys(f.impersonate).length > 0) out.impersonate = { ...f.impersonate };
    return out;
  },
  fingerprint: (facts) => {
    const f = asK8s(facts);
    return createHash("sha256")
      .update(`k8s\0${f.http.method}\0${f.http.host}\0${f.http.path}\0${f.command.join("\0")}\0${f.http.bodyTruncated ? "truncated" : "whole"}\0${f.http.body}`)
      .digest("hex");
  },
};
