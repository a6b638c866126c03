// The request-info parser against the API server's own cases
// (k8s.io/apiserver pkg/endpoints/request/requestinfo_test.go), plus the
// action subresources rules name as verbs.
import { describe, expect, test } from "bun:test";
import { parseRequestInfo, queryValues, type K8sRequestInfo } from "../../../app/families/k8s-request.ts";

type Row = [method: string, url: string, verb: string, group: string, version: string, namespace: string, resource: string, subresource: string, name: string];

const RESOURCE_CASES: Row[] = [
  // resource paths
  ["GET", "/api/v1/namespaces", "list", "", "v1", "", "namespaces", "", ""],
  ["GET", "/api/v1/namespaces/other", "get", "", "v1", "other", "namespaces", "", "other"],
  ["GET", "/api/v1/namespaces/other/pods", "list", "", "v1", "other", "pods", "", ""],
  ["GET", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"],
  ["HEAD", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"],
  ["GET", "/api/v1/pods", "list", "", "v1", "", "pods", "", ""],
  ["HEAD", "/api/v1/pods", "list", "", "v1", "", "pods", "", ""],
  ["GET", "/api/v1/namespaces/other/pods/foo", "get", "", "v1", "other", "pods", "", "foo"],
  ["GET", "/api/v1/namespaces/other/pods", "list", "", "v1", "other", "pods", "", ""],
  // special verbs
  ["GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "", "v1", "other", "pods", "", "foo"],
  ["GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "", "v1", "other", "pods", "", "foo"],
  ["GET", "/api/v1/watch/pods", "watch", "", "v1", "", "pods", "", ""],
  ["GET", "/api/v1/pods?watch=true", "watch", "", "v1", "", "pods", "", ""],
  ["GET", "/api/v1/pods?watch=false", "list", "", "v1", "", "pods", "", ""],
  ["GET", "/api/v1/pods?watch=1", "watch", "", "v1", "", "pods", "", ""],
  ["GET", "/api/v1/watch/namespaces/other/pods", "watch", "", "v1", "other", "pods", "", ""],
  ["GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "", "v1", "other", "pods", "", ""],
  ["GET", "/api/v1/namespaces/other/pods?watch=true&fieldSelector=metadata.name%3Dfoo", "watch", "", "v1", "other", "pods", "", "foo"],
  ["GET", "/api/v1/namespaces/other/pods?fieldSelector=metadata.name%3D%3Dfoo", "list", "", "v1", "other", "pods", "", "foo"],
  ["GET", "/api/v1/namespaces/other/pods?fieldSelector=status.phase%3DRunning", "list", "", "v1", "other", "pods", "", ""],
  // subresource identification
  ["GET", "/api/v1/namespaces/other/pods/foo/status", "get", "", "v1", "other", "pods", "status", "foo"],
  ["GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "proxy", "", "v1", "other", "pods", "proxy", "foo"],
  ["PUT", "/api/v1/namespaces/other/finalize", "update", "", "v1", "other", "namespaces", "finalize", "other"],
  ["PUT", "/api/v1/namespaces/other/status", "update", "", "v1", "other", "namespaces", "status", "other"],
  // verb identification
  ["PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "", "v1", "other", "pods", "", "foo"],
  ["DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "", "v1", "other", "pods", "", "foo"],
  ["POST", "/api/v1/namespaces/other/pods", "create", "", "v1", "other", "pods", "", ""],
  ["DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "", "v1", "other", "pods", "", ""],
  // deletecollection verb identification
  ["DELETE", "/api/v1/nodes", "deletecollection", "", "v1", "", "nodes", "", ""],
  ["DELETE", "/api/v1/namespaces", "deletecollection", "", "v1", "", "namespaces", "", ""],
  ["DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "", "v1", "other", "pods", "", ""],
  ["DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "extensions", "v1", "other", "pods", "", ""],
  // api group identification
  ["POST", "/apis/extensions/v1/namespaces/other/pods", "create", "extensions", "v1", "other", "pods", "", ""],
  ["GET", "/apis/apps/v1/namespaces/default/deployments/web", "get", "apps", "v1", "default", "deployments", "", "web"],
  ["PATCH", "/apis/apps/v1/namespaces/default/deployments/web/scale", "patch", "apps", "v1", "default", "deployments", "scale", "web"],
  // cluster-scoped
  ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", "get", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "admin"],
  ["POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "create", "authorization.k8s.io", "v1", "", "selfsubjectaccessreviews", "", ""],
  ["GET", "/api/v1/nodes/n1", "get", "", "v1", "", "nodes", "", "n1"],
  // action subresources are the verb rules see
  ["POST", "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true", "exec", "", "v1", "default", "pods", "exec", "web"],
  ["GET", "/api/v1/namespaces/default/pods/web/exec?command=ls", "exec", "", "v1", "default", "pods", "exec", "web"],
  ["POST", "/api/v1/namespaces/default/pods/web/attach", "attach", "", "v1", "default", "pods", "attach", "web"],
  ["GET", "/api/v1/namespaces/default/pods/web/portforward?ports=8080", "portforward", "", "v1", "default", "pods", "portforward", "web"],
  ["GET", "/api/v1/namespaces/default/pods/web/log?container=app", "log", "", "v1", "default", "pods", "log", "web"],
  // percent-encoded segments are decoded, as Go's URL.Path is
  ["GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Anode", "get", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "system:node"],
];

function parse(method: string, url: string): K8sRequestInfo {
  const q = url.indexOf("?");
  return parseRequestInfo(method, q >= 0 ? url.slice(0, q) : url, queryValues(q >= 0 ? url.slice(q + 1) : ""));
}

describe("resource requests", () => {
  test.each(RESOURCE_CASES)("%s %s", (method, url, verb, group, version, namespace, resource, subresource, name) => {
    expect(parse(method, url)).toEqual({ isResource: true, verb, apiGroup: group, apiVersion: version, namespace, resource, subresource, name });
  });
});

describe("non-resource requests (meta)", () => {
  const META: [string, string, string][] = [
    ["GET", "/api", "get"],
    ["GET", "/apis", "get"],
    ["GET", "/api/v1", "get"],
    ["GET", "/apis/apps/v1", "get"],
    ["GET", "/version", "get"],
    ["GET", "/healthz", "get"],
    ["GET", "/openapi/v2", "get"],
    ["GET", "/openapi/v3/apis/apps/v1", "get"],
    ["GET", "/", "get"],
    ["POST", "/foo/bar/baz", "post"],
    ["GET", "/other/api/v1/pods", "get"],
  ];
  test.each(META)("%s %s", (method, url, verb) => {
    const info = parse(method, url);
    expect(info.isResource).toBe(false);
    expect(info.verb).toBe(verb);
    expect(info.resource).toBe("");
  });
});

test("queryValues keeps every value of a repeated parameter, in order", () => {
  const q = queryValues("command=sh&command=-c&command=echo%20hi%20%26%26%20ls&stdout=true");
  expect(q.get("command")).toEqual(["sh", "-c", "echo hi && ls"]);
  expect(q.get("stdout")).toEqual(["true"]);
  expect(queryValues("").size).toBe(0);
});

test("queryValues drops what Go's ParseQuery drops: a pair with ';' or a malformed escape", () => {
  // The server would run ["rm", "-rf"]: a rule on command[0] must see that too.
  expect(queryValues("command=a;b&command=rm&command=-rf").get("command")).toEqual(["rm", "-rf"]);
  expect(queryValues("command=%zz&command=rm").get("command")).toEqual(["rm"]);
  expect(queryValues("command=a+b&command=%E2%9C%93&flag").get("command")).toEqual(["a b", "✓"]);
  expect(queryValues("flag&x=").get("flag")).toEqual([""]);
});
