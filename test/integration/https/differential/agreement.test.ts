// Property: for any sequence of well-formed requests pipelined on one agent
// connection, the requests each upstream parses are, one by one, the
// requests the gateway judged and allowed (method and target), and each
// answer reaches the agent in order. fast-check generates the sequences:
// methods with and without bodies, Content-Length and chunked framing with
// arbitrary chunk cuts, paths with escapes and repeated slashes, queries.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { makeTestPki } from "../../support/pki.ts";
import { startTestGateway, tempDir, type TestGateway } from "../../support/gateway.ts";
import { agentSend, describeSeen, waitFor } from "./harness.ts";
import { nginxAvailable, startBun, startLenient, startNginx, startPython, type DiffUpstream } from "./upstreams.ts";
import { normalisePath } from "../../../../app/endpoints/http1/target.ts";
import type { GatewayEvent } from "../../../../app/events/types.ts";

const HOST = "api.test";
let t: TestGateway;
const upstreams: DiffUpstream[] = [];

beforeAll(async () => {
  const dir = tempDir("agree");
  const pki = makeTestPki(dir, [HOST]);
  upstreams.push(await startLenient(pki), await startBun(pki), await startPython(pki));
  if (nginxAvailable()) upstreams.push(await startNginx(pki, dir));
  t = await startTestGateway(`
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "https" "api" {
  hosts = ["${HOST}"]
  ports = [${upstreams.map((u) => u.port).join(", ")}]
  ca_cert = "${pki.caCertPath}"
}
profile "agents" {}
`);
}, 60_000);

afterAll(async () => {
  await t?.stop();
  for (const u of upstreams) await u.stop();
});

interface GenRequest {
  method: string;
  path: string;
  query: string;
  body: string | undefined;
  chunks: number[];
  hostName: string;
}

const segment = fc.constantFrom("a", "b", "v1", "%61", "~x", "c%2b", "x-y", "%7E");
const pathArb = fc
  .array(fc.tuple(fc.constantFrom("/", "//"), segment), { minLength: 1, maxLength: 4 })
  .map((parts) => parts.map(([s, p]) => s + p).join(""));
const requestArb: fc.Arbitrary<GenRequest> = fc.record({
  method: fc.constantFrom("GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"),
  path: pathArb,
  query: fc.constantFrom("", "?q=1", "?a=%20b&c"),
  body: fc.option(fc.stringMatching(/^[a-zA-Z0-9 ]{0,40}$/), { nil: undefined }),
  chunks: fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 4 }),
  hostName: fc.constantFrom("Host", "host", "HOST"),
});

const hasBody = (r: GenRequest) => ["POST", "PUT", "PATCH"].includes(r.method);

function wire(r: GenRequest, h: string, last: boolean): string {
  let head = `${r.method} ${r.path}${r.query} HTTP/1.1\r\n${r.hostName}: ${h}\r\n`;
  if (last) head += "Connection: close\r\n";
  if (!hasBody(r)) return head + "\r\n";
  const body = r.body ?? "";
  if (r.chunks.length === 0) return head + `Content-Length: ${body.length}\r\n\r\n${body}`;
  // Chunked, cut at the generated sizes, the rest in one last chunk.
  let out = head + "Transfer-Encoding: chunked\r\n\r\n";
  let at = 0;
  for (const n of r.chunks) {
    const piece = body.slice(at, at + n);
    if (piece.length === 0) break;
    out += `${piece.length.toString(16)}\r\n${piece}\r\n`;
    at += piece.length;
  }
  if (at < body.length) out += `${(body.length - at).toString(16)}\r\n${body.slice(at)}\r\n`;
  return out + "0\r\n\r\n";
}

for (const name of ["lenient", "bun", "python", "nginx"]) {
  // nginx may be missing only outside CI (differential.test.ts throws in CI without it).
  const absent = name === "nginx" && !nginxAvailable();
  describe.skipIf(absent)(`against ${name}`, () => {
    test("the upstream's parse and the gateway's agree request by request", async () => {
      const u = upstreams.find((x) => x.name === name)!;
      await fc.assert(
        fc.asyncProperty(fc.array(requestArb, { minLength: 1, maxLength: 5 }), async (reqs) => {
          const h = `${HOST}:${u.port}`;
          const seenBefore = (await u.seen()).length;
          const eventsBefore = t.events.length;
          const data = reqs.map((r, i) => wire(r, h, i === reqs.length - 1)).join("");
          const r = await agentSend(t, u.port, data, { host: HOST, methods: reqs.map((q) => q.method), responses: reqs.length });
          const want = reqs.map((q) => {
            const p = normalisePath(q.path);
            if (!p.ok) throw new Error(`generator made an ambiguous path: ${q.path}`);
            return `${q.method} ${p.path}${q.query}`;
          });
          expect(r.statuses).toEqual(reqs.map(() => 200));
          await waitFor(async () => (await u.seen()).length >= seenBefore + reqs.length, `${name} to log ${reqs.length} requests`);
          const upstreamParse = (await u.seen()).slice(seenBefore).map(describeSeen);
          const gatewayParse = (t.events.slice(eventsBefore) as GatewayEvent[])
            .filter((e) => e.kind === "http" && e.port === u.port && e.verdict === "allow")
            .map((e) => `${e.method} ${e.path}`);
          expect(gatewayParse).toEqual(want);
          expect(upstreamParse).toEqual(want);
          want.forEach((w, i) => {
            if (reqs[i]!.method !== "HEAD") expect(r.bodies[i]).toStartWith(w);
          });
        }),
        { numRuns: 25 },
      );
    }, 60_000);
  });
}
