// Client downloads on the public API: the `clawpatrol` binaries the gateway
// ships (`make client` output, or the image's copy), their checksums, and an
// install script that picks the right one, verifies it and shows progress.
import { existsSync } from "node:fs";
import path from "node:path";
import { Elysia } from "elysia";
import { ApiError } from "./errors.ts";

export const CLIENT_FILES = ["clawpatrol-linux-x64", "clawpatrol-linux-arm64"] as const;

export function downloadRoutes(opts: { dir: string; publicUrl: () => string | undefined }) {
  const file = (name: string) => {
    const base = name.endsWith(".sha256") ? name.slice(0, -".sha256".length) : name;
    if (!(CLIENT_FILES as readonly string[]).includes(base)) throw new ApiError(404, "not_found", `no download named ${name}`);
    const p = path.join(opts.dir, name);
    if (!existsSync(p)) throw new ApiError(404, "not_built", `${name} is not available on this gateway (build it with \`make client\`)`);
    return p;
  };
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
    // The configured public URL, else the one this request came in on.
    .get("/install.sh", ({ request }) =>
      new Response(installScript(opts.publicUrl() ?? new URL(request.url).origin), {
        headers: { "content-type": "text/x-shellscript; charset=utf-8" },
      }),
    );
}

/** `curl -fsSL URL/install.sh | sh`: downloads the client for this machine and checks its sha256. */
export function installScript(publicUrl: string): string {
  const base = publicUrl.replace(/'/g, "");
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
echo "downloading $name from ${base}"
curl -fL --progress-bar -o "$tmp/$name" '${base}/download/'"$name"
curl -fsSL -o "$tmp/$name.sha256" '${base}/download/'"$name.sha256"
(cd "$tmp" && sha256sum -c "$name.sha256" >/dev/null) || { echo "clawpatrol: checksum mismatch, not installed" >&2; exit 1; }
install -m 0755 "$tmp/$name" "$dest/clawpatrol"
echo "installed $dest/clawpatrol"
case ":$PATH:" in *":$dest:"*) ;; *) echo "add $dest to your PATH" ;; esac
echo "next: clawpatrol join ${base}"
`;
}
