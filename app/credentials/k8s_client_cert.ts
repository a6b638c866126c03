// k8s_client_cert: a client certificate and its private key, presented to
// the Kubernetes API server in the upstream TLS handshake (mutual TLS). The
// certificate is the credential block's `certificate` file; the key is the
// secret (secret_file, CLAWPATROL_SECRET_NAME or the store), a PEM that
// never leaves the gateway. It has no header slot: the request's
// Authorization (the device's placeholder token) is removed, since an API
// server refuses a request whose bearer token it does not know even when
// the certificate is good. The TLS side is the upstream pool's
// (app/endpoints/https/upstream.ts, `clientCert`).
import type { CredentialPlugin } from "./plugin.ts";
import { echoForms, placeholderFor } from "./slot.ts";

export const k8sClientCert: CredentialPlugin = {
  type: "k8s_client_cert",
  inject(req) {
    for (let i = req.headers.length - 1; i >= 0; i--) if (req.headers[i]![0].toLowerCase() === "authorization") req.headers.splice(i, 1);
  },
  placeholder: (cred) => placeholderFor("clawpatrol-placeholder-", cred.name),
  revealingForms: (secret) => echoForms(secret, ...pemBodyForms(secret)),
};

/** The key's base64 body, whole and line by line (a log or an error could quote either). */
function pemBodyForms(pem: string): string[] {
  const lines = pem
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("-----"));
  return [lines.join(""), ...lines.filter((l) => l.length >= 16)];
}
