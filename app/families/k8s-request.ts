// What a Kubernetes API request is, from its method, path and query alone,
// by the API server's own rules (k8s.io/apiserver pkg/endpoints/request
// RequestInfoFactory.NewRequestInfo), so a rule reads `k8s.verb`,
// `k8s.resource`, `k8s.namespace` as the server's authorizer will:
//
//   /api/v1/...                 the core group ("")
//   /apis/GROUP/VERSION/...     a named group
//   /{watch,proxy}/...          after the version: the verb from the path
//   namespaces/NS/RESOURCE/...  namespaced (namespaces/NS/{status,finalize}
//                               is the namespace's own subresource)
//   RESOURCE[/NAME[/SUBRESOURCE]]
//   GET without a name          list, or watch when ?watch is true;
//                               a metadata.name= field selector names it
//   DELETE without a name       deletecollection
// Anything else (/version, /healthz, /openapi/v2, the discovery documents
// /api, /apis, /api/v1, /apis/G/V) is not a resource request: `meta`, with
// the method's verb (get, post, ...).
//
// Beyond the server's rules, a subresource that is an action (exec, attach,
// portforward, proxy, log) is the verb, as rules name them. Pure: no I/O.

export interface K8sRequestInfo {
  /** False for /version, discovery, /healthz, /openapi/...: the server's non-resource requests. */
  isResource: boolean;
  verb: string;
  /** "" for the core group (/api) and non-resource requests. */
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  /** "" for cluster-scoped resources. */
  namespace: string;
  name: string;
}

/** Path prefixes after the version that carry the verb (specialVerbs). */
const SPECIAL_VERBS = new Set(["proxy", "watch"]);
/** Subresources of a namespace itself: /namespaces/NS/status is the namespace's status. */
const NAMESPACE_SUBRESOURCES = new Set(["status", "finalize"]);
/** Subresources that are actions: the verb rules see is the subresource. */
const ACTION_SUBRESOURCES = new Set(["exec", "attach", "portforward", "proxy", "log"]);

const METHOD_VERBS: Record<string, string> = { POST: "create", GET: "get", HEAD: "get", PUT: "update", PATCH: "patch", DELETE: "delete" };

/**
 * @param path the request path (decoded or not; segments are percent-decoded here)
 * @param query every value of every query parameter, in order
 */
export function parseRequestInfo(method: string, path: string, query: ReadonlyMap<string, readonly string[]>): K8sRequestInfo {
  const m = method.toUpperCase();
  const info: K8sRequestInfo = {
    isResource: false,
    verb: m.toLowerCase(),
    apiGroup: "",
    apiVersion: "",
    resource: "",
    subresource: "",
    namespace: "",
    name: "",
  };
  let parts = splitPath(path);
  if (parts.length < 3) return info;
  const prefix = parts[0];
  if (prefix !== "api" && prefix !== "apis") return info;
  parts = parts.slice(1);
  if (prefix === "apis") {
    // /apis/GROUP/VERSION alone is the group version's discovery document.
    if (parts.length < 3) return info;
    info.apiGroup = parts[0]!;
    parts = parts.slice(1);
  }
  info.isResource = true;
  info.apiVersion = parts[0]!;
  parts = parts.slice(1);

  if (SPECIAL_VERBS.has(parts[0]!)) {
    // The server refuses /watch or /proxy with nothing after it; so do we (no resource: nothing to match).
    if (parts.length < 2) return { ...info, verb: parts[0]! };
    info.verb = parts[0]!;
    parts = parts.slice(1);
  } else {
    info.verb = METHOD_VERBS[m] ?? "";
  }

  if (parts[0] === "namespaces") {
    if (parts.length > 1) {
      info.namespace = parts[1]!;
      if (parts.length > 2 && !NAMESPACE_SUBRESOURCES.has(parts[2]!)) parts = parts.slice(2);
    }
  }

  // resource/name/subresource/anything-else; a proxy's path is not a subresource.
  if (parts.length >= 3 && info.verb !== "proxy") info.subresource = parts[2]!;
  if (parts.length >= 2) info.name = parts[1]!;
  if (parts.length >= 1) info.resource = parts[0]!;

  if (info.name === "" && info.verb === "get") {
    info.verb = watchRequested(query) ? "watch" : "list";
    const named = exactName(first(query, "fieldSelector"));
    if (named !== undefined) info.name = named;
  }
  if (info.name === "" && info.verb === "delete") info.verb = "deletecollection";
  if (ACTION_SUBRESOURCES.has(info.subresource)) info.verb = info.subresource;
  return info;
}

/** Non-empty segments, each percent-decoded (as Go's URL.Path is). */
function splitPath(path: string): string[] {
  const trimmed = path.replace(/^\/+|\/+$/g, "");
  if (trimmed === "") return [];
  return trimmed.split("/").map(decodeSegment);
}

function decodeSegment(s: string): string {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function first(query: ReadonlyMap<string, readonly string[]>, key: string): string | undefined {
  return query.get(key)?.[0];
}

/** `watch` parsed as Go's strconv.ParseBool does; a value it rejects still counts as a watch (the server's fallback). */
function watchRequested(query: ReadonlyMap<string, readonly string[]>): boolean {
  const v = first(query, "watch");
  if (v === undefined) return false;
  return !["false", "0", "f", "F", "FALSE", "False"].includes(v);
}

/** The name a `metadata.name=NAME` (or `==`) term of a field selector pins, when it is a valid path segment. */
function exactName(selector: string | undefined): string | undefined {
  if (!selector) return undefined;
  for (const term of selector.split(",")) {
    const m = /^\s*metadata\.name\s*==?\s*(.*?)\s*$/.exec(term);
    if (!m) continue;
    const name = m[1]!;
    if (name === "" || name === "." || name === ".." || /[/%]/.test(name)) return undefined;
    return name;
  }
  return undefined;
}

/**
 * Every value of every parameter of a query string, in order (`command`
 * repeats for exec), parsed as the API server's Go does (net/url
 * ParseQuery, errors ignored as URL.Query() ignores them): a pair holding a
 * `;` or a malformed escape is dropped, `+` is a space. A lenient parser
 * would see `command=a;b&command=rm` as ["a;b", "rm"] while the server runs
 * ["rm"].
 */
export function queryValues(search: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const q = search.startsWith("?") ? search.slice(1) : search;
  for (const pair of q.split("&")) {
    if (pair === "" || pair.includes(";")) continue;
    const eq = pair.indexOf("=");
    const key = goQueryUnescape(eq >= 0 ? pair.slice(0, eq) : pair);
    const value = goQueryUnescape(eq >= 0 ? pair.slice(eq + 1) : "");
    if (key === undefined || value === undefined) continue;
    const list = out.get(key);
    if (list) list.push(value);
    else out.set(key, [value]);
  }
  return out;
}

/** Go's url.QueryUnescape: `+` is a space, `%XX` a byte (two hex digits or an error); the bytes as UTF-8. */
function goQueryUnescape(s: string): string | undefined {
  if (!s.includes("%") && !s.includes("+")) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "+") bytes.push(0x20);
    else if (c === "%") {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(...Buffer.from(c, "utf8"));
  }
  return Buffer.from(bytes).toString("utf8");
}
