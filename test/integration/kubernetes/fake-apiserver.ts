// A FAKE Kubernetes API server, at the HTTP level only: no kube-apiserver
// can run on this machine (Debian has no package; it needs etcd, a
// scheduler and a kubelet). It answers with the API's real shapes, enough
// for the real kubectl 1.32 to run its ordinary commands against it:
//
//   /version, /api, /apis, /api/v1, /apis/apps/v1, /apis/authorization.k8s.io/v1
//                       legacy discovery documents (no aggregated discovery:
//                       kubectl falls back to these, as with older servers)
//   pods                a PodList; one Pod by name; DELETE answers the Pod
//   pods?watch=true     watch events, chunked, one JSON object per line, sent
//                       one by one as the test emits them (the connection
//                       stays open between them)
//   pods/NAME/exec      a WebSocket speaking v5.channel.k8s.io: the command's
//                       stdout on channel 1, then a Status on channel 3
//   configmaps          GET by name (404 Status until created), POST creates
//   selfsubjectaccessreviews  allowed: true
//   anything else       a Status (NotFound)
//
// Every request is authenticated as the server would: a bearer token it
// knows, or (mode "cert") a client certificate its CA signed; otherwise 401
// with a Status. It records what it received (the Authorization header, the
// client certificate's CN) for the tests to check.
import { createHash } from "node:crypto";
import tls from "node:tls";
import { Http1Parser, type RequestHead } from "../../../app/endpoints/http1/parser.ts";
import { getHeader } from "../../../app/endpoints/http1/headers.ts";

export interface SeenApiRequest {
  method: string;
  target: string;
  authorization: string | undefined;
  /** The CN of the client certificate presented, if any. */
  clientCN: string | undefined;
  impersonate: string | undefined;
  upgrade: string | undefined;
  protocols: string | undefined;
}

export interface FakeApiServer {
  port: number;
  seen: SeenApiRequest[];
  /** Sends a watch event to every open pod watch (and to watches opened later). */
  emit(event: { type: string; object: unknown }): void;
  /** Open pod watches. */
  watches(): number;
  /** ConfigMaps created through POST, by name. */
  configMaps: Map<string, unknown>;
  close(): Promise<void>;
}

export interface FakeApiOptions {
  host: string;
  certPem: string;
  keyPem: string;
  /** bearer: `Authorization: Bearer <token>`; cert: a client certificate signed by clientCaPem with CN clientCN. */
  auth: { mode: "bearer"; token: string } | { mode: "cert"; clientCaPem: string; clientCN: string };
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export function pod(name: string, namespace = "default", rv = "100"): Record<string, unknown> {
  return {
    kind: "Pod",
    apiVersion: "v1",
    metadata: { name, namespace, uid: `uid-${name}`, resourceVersion: rv, creationTimestamp: "2026-12-07T12:00:00Z", labels: { app: "web" } },
    spec: { containers: [{ name: "app", image: "nginx:1.27" }], nodeName: "node-1" },
    status: { phase: "Running", podIP: "10.244.0.7", containerStatuses: [{ name: "app", ready: true, restartCount: 0, image: "nginx:1.27", imageID: "", containerID: "containerd://abc", started: true, state: { running: { startedAt: "2026-12-07T12:00:01Z" } }, lastState: {} }] },
  };
}

function status(code: number, reason: string, message: string, details?: Record<string, unknown>): Record<string, unknown> {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, ...(details ? { details } : {}), code };
}

const resource = (name: string, kind: string, namespaced: boolean, verbs: string[], extra: Record<string, unknown> = {}) => ({ name, singularName: "", namespaced, kind, verbs, ...extra });

const DISCOVERY: Record<string, unknown> = {
  "/version": { major: "1", minor: "32", gitVersion: "v1.32.0-fake", gitCommit: "fake", gitTreeState: "clean", buildDate: "2026-01-01T00:00:00Z", goVersion: "go1.23", compiler: "gc", platform: "linux/amd64" },
  "/api": { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: "k8s.fake:6443" }] },
  "/apis": {
    kind: "APIGroupList",
    apiVersion: "v1",
    groups: [
      { name: "apps", versions: [{ groupVersion: "apps/v1", version: "v1" }], preferredVersion: { groupVersion: "apps/v1", version: "v1" } },
      { name: "authorization.k8s.io", versions: [{ groupVersion: "authorization.k8s.io/v1", version: "v1" }], preferredVersion: { groupVersion: "authorization.k8s.io/v1", version: "v1" } },
    ],
  },
  "/api/v1": {
    kind: "APIResourceList",
    groupVersion: "v1",
    resources: [
      resource("pods", "Pod", true, ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], { shortNames: ["po"], categories: ["all"] }),
      resource("pods/exec", "PodExecOptions", true, ["create", "get"]),
      resource("pods/log", "Pod", true, ["get"]),
      resource("pods/portforward", "PodPortForwardOptions", true, ["create", "get"]),
      resource("configmaps", "ConfigMap", true, ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], { shortNames: ["cm"] }),
      resource("namespaces", "Namespace", false, ["create", "delete", "get", "list", "patch", "update", "watch"], { shortNames: ["ns"] }),
    ],
  },
  "/apis/apps/v1": {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: "apps/v1",
    resources: [resource("deployments", "Deployment", true, ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"], { shortNames: ["deploy"], categories: ["all"] })],
  },
  "/apis/authorization.k8s.io/v1": {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: "authorization.k8s.io/v1",
    resources: [resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", false, ["create"])],
  },
};

export function startFakeApiServer(o: FakeApiOptions): Promise<FakeApiServer> {
  const seen: SeenApiRequest[] = [];
  const events: { type: string; object: unknown }[] = [];
  const watchers = new Set<(e: { type: string; object: unknown }) => void>();
  const configMaps = new Map<string, unknown>();
  const sockets = new Set<tls.TLSSocket>();

  const server = tls.createServer(
    {
      cert: o.certPem,
      key: o.keyPem,
      ...(o.auth.mode === "cert" ? { ca: o.auth.clientCaPem, requestCert: true, rejectUnauthorized: false } : {}),
      ALPNProtocols: ["http/1.1"],
    },
    (sock) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
      sock.on("error", () => sock.destroy());
      const parser = new Http1Parser("request");
      let head: RequestHead | undefined;
      let body: Uint8Array[] = [];
      let busy = false;
      sock.on("data", (d: Buffer) => {
        if (busy) return; // an upgraded or streaming connection: the client's bytes are read elsewhere
        for (const ev of parser.push(d)) {
          if (ev.type === "head" && "method" in ev.head) {
            head = ev.head;
            body = [];
          } else if (ev.type === "body") body.push(ev.data);
          else if (ev.type === "end" && head) {
            const h = head;
            head = undefined;
            if (h.upgrade !== undefined) {
              busy = true;
              parser.acceptUpgrade();
            }
            const r = answer(sock, h, Buffer.concat(body));
            if (r === "streaming") busy = true;
          } else if (ev.type === "error") sock.destroy();
        }
      });
    },
  );

  const send = (sock: tls.TLSSocket, code: number, obj: unknown, head: RequestHead) => {
    const text = JSON.stringify(obj);
    sock.write(`HTTP/1.1 ${code} ${code === 200 ? "OK" : code === 201 ? "Created" : "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${head.keepAlive ? "" : "Connection: close\r\n"}\r\n${text}`);
    if (!head.keepAlive) sock.end();
  };

  function authenticate(sock: tls.TLSSocket, h: RequestHead): { ok: boolean; cn: string | undefined } {
    const cert = o.auth.mode === "cert" ? sock.getPeerCertificate() : undefined;
    const cn = cert && "subject" in cert && cert.subject ? String(cert.subject.CN) : undefined;
    if (o.auth.mode === "bearer") return { ok: getHeader(h.headers, "authorization") === `Bearer ${o.auth.token}`, cn };
    // An API server refuses a request whose bearer token it does not know, even with a good certificate.
    return { ok: sock.authorized && cn === o.auth.clientCN && getHeader(h.headers, "authorization") === undefined, cn };
  }

  function answer(sock: tls.TLSSocket, h: RequestHead, body: Buffer): "done" | "streaming" {
    const url = new URL(h.target, "https://fake");
    const auth = authenticate(sock, h);
    seen.push({
      method: h.method,
      target: h.target,
      authorization: getHeader(h.headers, "authorization"),
      clientCN: auth.cn,
      impersonate: getHeader(h.headers, "impersonate-user"),
      upgrade: h.upgrade,
      protocols: getHeader(h.headers, "sec-websocket-protocol"),
    });
    if (!auth.ok) {
      send(sock, 401, status(401, "Unauthorized", "Unauthorized"), h);
      return "done";
    }
    const path = url.pathname;
    if (h.method === "GET" && DISCOVERY[path]) {
      send(sock, 200, DISCOVERY[path], h);
      return "done";
    }
    const podPath = /^\/api\/v1\/namespaces\/([^/]+)\/pods(?:\/([^/]+))?(?:\/([^/]+))?$/.exec(path);
    if (podPath) {
      const [, ns, name, sub] = podPath;
      if (sub === "exec" && h.upgrade?.toLowerCase() === "websocket") return execWebSocket(sock, h, url);
      if (!name && h.method === "GET" && ["true", "1"].includes(url.searchParams.get("watch") ?? "")) return watch(sock);
      if (!name && h.method === "GET") {
        send(sock, 200, { kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: "100" }, items: [pod("web-0", ns)] }, h);
        return "done";
      }
      if (name && !sub && (h.method === "GET" || h.method === "DELETE")) {
        send(sock, 200, pod(name, ns), h);
        return "done";
      }
    }
    const cm = /^\/api\/v1\/namespaces\/([^/]+)\/configmaps(?:\/([^/]+))?$/.exec(path);
    if (cm) {
      const [, , name] = cm;
      if (h.method === "GET" && name) {
        const found = configMaps.get(name);
        if (found) send(sock, 200, found, h);
        else send(sock, 404, status(404, "NotFound", `configmaps "${name}" not found`, { name, kind: "configmaps" }), h);
        return "done";
      }
      if (h.method === "POST" && !name) {
        const obj = JSON.parse(body.toString("utf8")) as { metadata: { name: string; resourceVersion?: string; uid?: string } };
        obj.metadata.resourceVersion = "101";
        obj.metadata.uid = "uid-cm";
        configMaps.set(obj.metadata.name, obj);
        send(sock, 201, obj, h);
        return "done";
      }
    }
    if (h.method === "POST" && path === "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") {
      // kubectl sends this one as protobuf ("k8s\0..."); the answer may be JSON (it accepts both).
      send(sock, 201, { kind: "SelfSubjectAccessReview", apiVersion: "authorization.k8s.io/v1", metadata: {}, spec: {}, status: { allowed: true, reason: "the fake allows everything" } }, h);
      return "done";
    }
    send(sock, 404, status(404, "NotFound", "the server could not find the requested resource"), h);
    return "done";
  }

  /** Watch events as the server streams them: chunked, one JSON object and a newline per chunk. */
  function watch(sock: tls.TLSSocket): "streaming" {
    sock.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    const write = (e: { type: string; object: unknown }) => {
      const line = Buffer.from(JSON.stringify(e) + "\n");
      sock.write(`${line.length.toString(16)}\r\n`);
      sock.write(line);
      sock.write("\r\n");
    };
    for (const e of events) write(e);
    watchers.add(write);
    sock.on("close", () => watchers.delete(write));
    return "streaming";
  }

  /** `kubectl exec` over v5.channel.k8s.io: stdout on channel 1, the Status on channel 3, then a close frame. */
  function execWebSocket(sock: tls.TLSSocket, h: RequestHead, url: URL): "streaming" {
    const key = getHeader(h.headers, "sec-websocket-key") ?? "";
    const offered = (getHeader(h.headers, "sec-websocket-protocol") ?? "").split(",").map((s) => s.trim());
    if (!offered.includes("v5.channel.k8s.io")) {
      send(sock, 400, status(400, "BadRequest", `no supported subprotocol in ${offered.join(", ")}`), { ...h, keepAlive: false });
      return "streaming";
    }
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n`);
    const argv = url.searchParams.getAll("command");
    const stdout = argv[0] === "ls" ? "bin\netc\nusr\n" : `ran: ${argv.join(" ")}\n`;
    sock.write(frame(0x2, Buffer.concat([Buffer.from([1]), Buffer.from(stdout)])));
    sock.write(frame(0x2, Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify({ metadata: {}, status: "Success" }))])));
    sock.write(frame(0x8, Buffer.from([0x03, 0xe8])));
    sock.end();
    return "streaming";
  }

  return new Promise((resolve) => {
    server.listen(0, o.host, () => {
      const port = (server.address() as { port: number }).port;
      resolve({
        port,
        seen,
        configMaps,
        emit(e) {
          events.push(e);
          for (const w of watchers) w(e);
        },
        watches: () => watchers.size,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

/** One unmasked WebSocket frame (server to client), FIN set. */
function frame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff]);
  return Buffer.concat([head, payload]);
}
