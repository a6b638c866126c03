// Client downloads on the public API: the `clawpatrol` binaries the gateway
// ships (`make client` output, or the image's copy), their checksums, and an
// install script that picks the right one, verifies it and shows progress.
import { existsSync } from "node:fs";
import path from "node:path";
import { Elysia } from "elysia";
import { ApiError } from "./errors.ts";
import { certificateSha256Hex, formatFingerprint } from "../tls/fingerprint.ts";

export const CLIENT_FILES = ["clawpatrol-linux-x64", "clawpatrol-linux-arm64"] as const;

/**
 * How devices trust the public API: plain HTTP; a certificate the gateway's
 * CA signed (first contact pins the CA's fingerprint); or the operator's own
 * (trusted through the device's usual roots).
 */
export type PublicTlsMode = "none" | "mint_from_ca" | "files" | "acme";

export interface DownloadOptions {
  dir: string;
  publicUrl: () => string | undefined;
  /** The gateway's CA certificate (PEM), served at /ca.crt; undefined: 404. */
  caCertPem?: () => string | undefined;
  tlsMode?: () => PublicTlsMode;
}

export function downloadRoutes(opts: DownloadOptions) {
  const file = (name: string) => {
    const base = name.endsWith(".sha256") ? name.slice(0, -".sha256".length) : name;
    if (!(CLIENT_FILES as readonly string[]).includes(base)) throw new ApiError(404, "not_found", `no download named ${name}`);
    const p = path.join(opts.dir, name);
    if (!existsSync(p)) throw new ApiError(404, "not_built", `${name} is not available on this gateway (build it with \`make client\`)`);
    return p;
  };
  const ca = () => {
    const pem = opts.caCertPem?.();
    if (!pem) throw new ApiError(404, "no_ca", "this gateway serves no CA certificate");
    return pem;
  };
  // The configured public URL, else the one this request came in on.
  const info = (request: Request) => joinInfo(opts.publicUrl() ?? new URL(request.url).origin, opts.tlsMode?.() ?? "none", ca());
  return new Elysia({ name: "downloads" })
    .get("/download/:name", ({ params }) => {
      const f = Bun.file(file(params.name));
      return new Response(f, {
        headers: {
          "content-type": params.name.endsWith(".sha256") ? "text/plain; charset=utf-8" : "application/octet-stream",
          "content-length": String(f.size),
          "content-disposition": `attachment; filename="${params.name}"`,
        },
      });
    })
    // First contact fetches this without verification and checks its fingerprint.
    .get("/ca.crt", () => new Response(`${ca().trim()}\n`, { headers: { "content-type": "application/x-pem-file" } }))
    // What the dashboard's Devices page shows: the fingerprint and the lines to copy.
    .get("/join.json", ({ request }) => info(request))
    .get("/install.sh", ({ request }) => {
      const i = info(request);
      return new Response(installScript(i, i.pinned ? ca() : undefined), {
        headers: { "content-type": "text/x-shellscript; charset=utf-8" },
      });
    });
}

export interface JoinInfo {
  url: string;
  mode: PublicTlsMode;
  /** First contact pins the CA (a certificate our CA signed, over https). */
  pinned: boolean;
  /** SHA-256 of the CA certificate's DER, `AB:CD:…` (as `clawpatrol-gateway ca show` prints it). */
  ca_sha256: string;
  /** The one-liner that installs the client (verifying the CA first where it must be pinned). */
  install: string;
  /** The join command for the device. */
  join: string;
}

/** The lines an operator copies to a device, for this gateway's URL and TLS mode. */
export function joinInfo(url: string, mode: PublicTlsMode, caPem: string): JoinInfo {
  const base = url.replace(/\/+$/, "");
  const hex = certificateSha256Hex(caPem);
  const fp = formatFingerprint(hex);
  const pinned = mode === "mint_from_ca" && base.startsWith("https:");
  // The fingerprint is of the DER (openssl's form); the PEM body decoded is that DER.
  const install = pinned
    ? `curl -fsSk ${base}/ca.crt -o clawpatrol-ca.crt && { sed '/-----/d' clawpatrol-ca.crt | base64 -d | sha256sum | grep -q '^${hex} ' || { echo 'clawpatrol: CA fingerprint mismatch, not installing' >&2; false; }; } && curl -fsS --cacert clawpatrol-ca.crt ${base}/install.sh | sh`
    : `curl -fsSL ${base}/install.sh | sh`;
  const join = pinned ? `clawpatrol join ${base} --ca-sha256 ${fp}` : `clawpatrol join ${base}`;
  return { url: base, mode, pinned, ca_sha256: fp, install, join };
}

/**
 * `curl -fsSL URL/install.sh | sh`: downloads the client for this machine and
 * checks its sha256, then prints `info`'s join line. With pinnedCaPem (the
 * script was fetched over TLS verified with that CA) every download trusts
 * only that CA.
 */
export function installScript(info: JoinInfo, pinnedCaPem?: string): string {
  const base = info.url.replace(/'/g, "");
  const pinned = pinnedCaPem !== undefined;
  const curlCa = pinned ? ` --cacert "$tmp/ca.crt"` : "";
  return `#!/bin/sh
# Installs the clawpatrol client from ${base}
set -eu
case "$(uname -s)" in Linux) ;; *) echo "clawpatrol: only Linux is supported by this installer" >&2; exit 1 ;; esac
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) echo "clawpatrol: no client for $(uname -m)" >&2; exit 1 ;;
esac
name="clawpatrol-linux-$arch"
if [ "$(id -u)" -eq 0 ]; then dest=/usr/local/bin; else dest="$HOME/.local/bin"; fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${pinned ? `# The gateway's CA, as this script was served over TLS verified with it.
cat >"$tmp/ca.crt" <<'CLAWPATROL_CA'
${pinnedCaPem.trim()}
CLAWPATROL_CA
` : ""}echo "downloading $name from ${base}"
curl -fL${curlCa} --progress-bar -o "$tmp/$name" '${base}/download/'"$name"
curl -fsSL${curlCa} -o "$tmp/$name.sha256" '${base}/download/'"$name.sha256"
(cd "$tmp" && sha256sum -c "$name.sha256" >/dev/null) || { echo "clawpatrol: checksum mismatch, not installed" >&2; exit 1; }
install -m 0755 "$tmp/$name" "$dest/clawpatrol"
echo "installed $dest/clawpatrol"
case ":$PATH:" in *":$dest:"*) ;; *) echo "add $dest to your PATH" ;; esac
echo "next: ${info.join}"
`;
}
