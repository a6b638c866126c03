// A real TLS upstream for the integration tests (Bun.serve with its own CA).
// It records every request it receives and answers:
//   /echo            the request as JSON (method, path, headers, body)
//   /sse?n=N&gap=MS  N server-sent events, MS apart
//   /download?mb=N   N MiB of deterministic bytes, streamed
//   /upload          sha256 and size of the request body
//   /echo-auth       the Authorization header back, in a header and the body (a careless API)
//   /ws              WebSocket echo
import { createHash } from "node:crypto";
import type { Server } from "bun";
import type { TestPki } from "./pki.ts";

export interface SeenRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  bodyBytes: number;
}

export interface TestUpstream {
  port: number;
  seen: SeenRequest[];
  stop(): void;
}

/** Deterministic bytes for block i of a download, so the client can check them. */
export function downloadBlock(i: number, size = 1 << 20): Uint8Array {
  const out = new Uint8Array(size);
  let x = (i * 2654435761) >>> 0;
  for (let j = 0; j < size; j += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[j] = x & 0xff;
    out[j + 1] = (x >>> 8) & 0xff;
    out[j + 2] = (x >>> 16) & 0xff;
    out[j + 3] = (x >>> 24) & 0xff;
  }
  return out;
}

/** `where.plain`: plain HTTP (no TLS; `pki` unused). */
export function startUpstream(pki: TestPki | undefined, where: { hostname?: string; port?: number; plain?: boolean } = {}): TestUpstream {
  const seen: SeenRequest[] = [];
  const server: Server<undefined> = Bun.serve({
    hostname: where.hostname ?? "127.0.0.1",
    port: where.port ?? 0,
    ...(where.plain || !pki ? {} : { tls: { cert: pki.certPem, key: pki.keyPem } }),
    idleTimeout: 60,
    maxRequestBodySize: 1 << 30,
    async fetch(req, srv) {
      const url = new URL(req.url);
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => {
        headers[k] = v;
      });
      if (url.pathname === "/ws") {
        seen.push({ method: req.method, path: url.pathname, headers, bodyBytes: 0 });
        if (srv.upgrade(req)) return undefined;
        return new Response("upgrade failed", { status: 400 });
      }
      if (url.pathname === "/upload") {
        const hash = createHash("sha256");
        let size = 0;
        if (req.body) {
          for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
            hash.update(chunk);
            size += chunk.length;
          }
        }
        seen.push({ method: req.method, path: url.pathname + url.search, headers, bodyBytes: size });
        return Response.json({ sha256: hash.digest("hex"), size });
      }
      const body = new Uint8Array(await req.arrayBuffer());
      seen.push({ method: req.method, path: url.pathname + url.search, headers, bodyBytes: body.length });
      switch (url.pathname) {
        case "/echo":
          return Response.json({
            method: req.method,
            path: url.pathname + url.search,
            headers,
            body: new TextDecoder().decode(body),
          });
        case "/echo-auth": {
          const auth = req.headers.get("authorization") ?? "";
          return new Response(`you sent: ${auth}\n`, { headers: { "x-echo-auth": auth } });
        }
        case "/sse": {
          const n = Number(url.searchParams.get("n") ?? 3);
          const gap = Number(url.searchParams.get("gap") ?? 200);
          const stream = new ReadableStream({
            async pull(controller) {
              for (let i = 0; i < n; i++) {
                controller.enqueue(new TextEncoder().encode(`data: {"i":${i},"t":${Date.now()}}\n\n`));
                await Bun.sleep(gap);
              }
              controller.close();
            },
          });
          return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache" } });
        }
        case "/download": {
          const mb = Number(url.searchParams.get("mb") ?? 1);
          let i = 0;
          const stream = new ReadableStream({
            pull(controller) {
              if (i >= mb) return controller.close();
              controller.enqueue(downloadBlock(i));
              i += 1;
            },
          });
          return new Response(stream, { headers: { "content-type": "application/octet-stream", "content-length": String(mb << 20) } });
        }
        default:
          return new Response("not found\n", { status: 404 });
      }
    },
    websocket: {
      message(ws, message) {
        ws.send(message);
      },
    },
  });
  return { port: server.port!, seen, stop: () => server.stop(true) };
}
