// The offline demo's upstream: a small HTTPS echo server that `make run`
// starts beside the gateway (`all --demo-upstream HOST:PORT`), so the first
// requests a newcomer makes succeed on a machine with no network but
// loopback. It answers as httpbin does for the paths README uses:
//   /headers        {"headers": {...}}: the request's headers as received
//   anything else   {"method", "path", "headers", "body"}: the request echoed
// Its certificate is issued at start by the gateway's own CA (names
// `localhost` and the listen address), which the default config's demo
// endpoint trusts with `trust_gateway_ca = true`. No state, nothing written.
import type { CertificateAuthority } from "../tls/ca.ts";
import { issueServerCertificate, P256_KEY_ALGORITHM, privateKeyToPem, x509 } from "../tls/pki.ts";
import { parseHostPort } from "../endpoints/attrs.ts";

const HOUR_MS = 60 * 60 * 1000;
/** Issued afresh at every start; a week is plenty for a development run. */
const CERT_VALIDITY_MS = 7 * 24 * HOUR_MS;
/** Echoed bodies are cut here: the demo shows requests, it does not store uploads. */
const MAX_ECHO_BODY = 64 * 1024;

export interface DemoEcho {
  host: string;
  port: number;
  /** The certificate served (PEM), issued by the gateway's CA. */
  certPem: string;
  stop(): void;
}

/** `HOST:PORT` as `--demo-upstream` takes it; undefined when it is not one. */
export function parseDemoListen(text: string): { host: string; port: number } | undefined {
  const hp = parseHostPort(text, 0);
  return hp && hp.port > 0 ? hp : undefined;
}

export async function startDemoEcho(ca: CertificateAuthority, listen: { host: string; port: number }, now: () => number = Date.now): Promise<DemoEcho> {
  const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
  const names = [...new Set(["localhost", listen.host])];
  const t = now();
  const cert = await issueServerCertificate({
    ca,
    names,
    notBefore: new Date(t - HOUR_MS),
    notAfter: new Date(t + CERT_VALIDITY_MS),
    publicKey: keys.publicKey,
    subjectKeyIdentifier: await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  });
  const certPem = cert.toString("pem");
  const server = Bun.serve({
    hostname: listen.host,
    port: listen.port,
    tls: { cert: `${certPem}\n${ca.certPem}\n`, key: await privateKeyToPem(keys.privateKey) },
    async fetch(req) {
      const url = new URL(req.url);
      const headers: Record<string, string> = {};
      req.headers.forEach((v, k) => {
        headers[k] = v;
      });
      if (url.pathname === "/headers") return Response.json({ headers });
      const raw = new Uint8Array(await req.arrayBuffer());
      const body = new TextDecoder().decode(raw.subarray(0, MAX_ECHO_BODY));
      return Response.json({ method: req.method, path: url.pathname + url.search, headers, ...(raw.length > 0 ? { body } : {}) });
    },
  });
  return {
    host: listen.host,
    port: server.port ?? listen.port,
    certPem,
    stop: () => void server.stop(true),
  };
}
