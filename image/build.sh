#!/usr/bin/env bash
# Builds the clawpatrol appliance: `make image`.
#
#   dist/clawpatrol-appliance.raw    UEFI, GPT: ESP (systemd-boot + a UKI) + ext4 root
#   dist/clawpatrol-appliance.qcow2  the same disk, compressed
#
# 1. stage the extra tree: /opt/clawpatrol/versions/V (app/, config/,
#    production node_modules from package-lock.json, bin/bun, dist/ with the
#    client binaries from `make client`) and current -> versions/V, the units
#    from systemd/, image/files/
# 2. mkosi 14 builds a Debian bookworm directory tree (Format=directory),
#    reusing its cached package install between runs (Incremental)
# 3. the disk is assembled without mounting anything (the build machines
#    cannot mount vfat): UKI with objcopy, ESP with mkfs.vfat -C + mtools,
#    root with mkfs.ext4 -d, GPT with sfdisk, both written in with dd.
#
# Needs root (mkosi, debootstrap). Work files: $IMAGE_WORK (default
# dist/.work); `make clean` removes them, and the next build is cold.
# IMAGE_REBUILD_CACHE=1 forces a fresh package install.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DIST=$REPO/dist
WORK=${IMAGE_WORK:-$DIST/.work}
NAME=clawpatrol-appliance
# Fixed identifiers: the same inputs give the same disk layout.
ROOT_FS_UUID=6c2a7f3e-5b1d-4e8a-9c0f-3a7d2e1b4c55
ESP_VOLUME_ID=C1A3BEEF
DISK_GUID=8d5f0c2a-1e47-4b9a-a3d6-7c2e9f1b0a11
ESP_PART_UUID=2b7e4d1c-9a35-4f60-8e2d-5c1a7b3f9e02
ROOT_PART_UUID=5e9a1c3d-7b24-4d8f-b6e0-1f2a3c4d5e6f
ESP_MIB=128
CMDLINE="root=UUID=$ROOT_FS_UUID rw console=tty0 console=ttyS0,115200"

START=$(date +%s)
step() { printf '[image %4ss] %s\n' "$(($(date +%s) - START))" "$*"; }
die() { echo "image/build.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (mkosi and debootstrap install packages into a tree)"
bash image/deps.sh

# --- 1. the extra tree ---------------------------------------------------------
step "staging Bun, the app and the units"
BUN=""
for c in node_modules/@oven/bun-linux-x64/bin/bun node_modules/bun/bin/bun.exe node_modules/bun/bin/bun; do
  if [ -f "$c" ] && head -c4 "$c" | grep -q ELF; then BUN=$c; break; fi
done
[ -n "$BUN" ] || die "no Bun binary under node_modules/ (run: npm ci)"
BUN_VERSION=$("$BUN" --version)
# The app is installed as the first version beside which bundle updates
# (`clawpatrol-gateway update`) install theirs: /opt/clawpatrol/versions/V
# holds app/, config/, node_modules, bin/bun, dist/, image/libexec and the
# smoke files, /opt/clawpatrol/current points at it and the units run from
# current/. V is the string `make bundle` would give this checkout.
APP_VERSION=${IMAGE_APP_VERSION:-$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' package.json | head -1)+$(date -u +%Y%m%d).$(git rev-parse --short HEAD 2>/dev/null || echo nogit)}
EXTRA=$WORK/extra
rm -rf "$EXTRA"
APP=$EXTRA/opt/clawpatrol/versions/$APP_VERSION
mkdir -p "$EXTRA/usr/local/bin" "$APP/bin" "$APP/image/libexec" "$APP/test/image/smoke" \
  "$EXTRA/usr/lib/systemd/system" "$EXTRA/usr/lib/sysusers.d"
install -m 0755 "$BUN" "$APP/bin/bun"
ln -s "versions/$APP_VERSION" "$EXTRA/opt/clawpatrol/current"
# `bun` on the PATH is the running version's.
ln -s /opt/clawpatrol/current/bin/bun "$EXTRA/usr/local/bin/bun"

# Production dependencies only, installed from the lockfile; reused while the
# lockfile is unchanged.
LOCK_HASH=$( (cat package.json package-lock.json; echo "prune 1") | sha256sum | cut -c1-16)
PROD=$WORK/node_modules-prod/$LOCK_HASH
if [ ! -d "$PROD/node_modules" ]; then
  step "npm ci --omit=dev (lockfile $LOCK_HASH)"
  rm -rf "$WORK/node_modules-prod"
  mkdir -p "$PROD"
  cp package.json package-lock.json "$PROD/"
  (cd "$PROD" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  # elysia's peer dependencies for its types only (~35 MB); nothing loads them at run time.
  rm -rf "$PROD/node_modules/typescript" "$PROD/node_modules/@types" "$PROD/node_modules/bun-types" \
    "$PROD/node_modules/undici-types" "$PROD/node_modules/.bin/tsc" "$PROD/node_modules/.bin/tsserver"
fi
cp -a app config package.json package-lock.json "$APP/"
cp -a "$PROD/node_modules" "$APP/node_modules"
install -m 0644 image/libexec/*.ts "$APP/image/libexec/"
install -m 0644 test/image/smoke/upstream.ts "$APP/test/image/smoke/upstream.ts"
install -m 0755 test/image/smoke/smoke.sh "$APP/test/image/smoke/smoke.sh"
install -m 0644 test/image/smoke/restore.sh "$APP/test/image/smoke/restore.sh"
# The client binaries the gateway serves at /download/... (dist/ beside app/).
# `make client` cross-compiles arm64 with a Bun runtime it downloads once into
# Bun's cache; without that runtime cached (and no network), x64 only.
BUN_CACHE=${BUN_INSTALL_CACHE_DIR:-${BUN_INSTALL:-$HOME/.bun}/install/cache}
if [ -e "$BUN_CACHE/bun-linux-aarch64-v$BUN_VERSION" ] || [ "${IMAGE_CLIENT_ARM64:-0}" = 1 ]; then
  step "client: make client (x64 + arm64)"
  make --no-print-directory client >"$WORK/client.log" 2>&1 || die "make client failed (log: $WORK/client.log)"
  CLIENTS=(clawpatrol-linux-x64 clawpatrol-linux-arm64)
else
  step "client: x64 only (no bun-linux-aarch64-v$BUN_VERSION in $BUN_CACHE; IMAGE_CLIENT_ARM64=1 downloads it)"
  mkdir -p "$DIST"
  "$BUN" build --compile --minify --target=bun-linux-x64 client/main.ts app/net/tun/tun-worker.ts \
    --outfile "$DIST/clawpatrol-linux-x64" >"$WORK/client.log" 2>&1 || die "client build failed (log: $WORK/client.log)"
  (cd "$DIST" && sha256sum clawpatrol-linux-x64 >clawpatrol-linux-x64.sha256)
  CLIENTS=(clawpatrol-linux-x64)
fi
mkdir -p "$APP/dist"
for c in "${CLIENTS[@]}"; do
  (cd "$DIST" && sha256sum -c --quiet "$c.sha256") || die "dist/$c does not match dist/$c.sha256"
  install -m 0755 "$DIST/$c" "$APP/dist/$c"
  install -m 0644 "$DIST/$c.sha256" "$APP/dist/$c.sha256"
done
install -m 0644 systemd/*.service test/image/smoke/clawpatrol-smoke.service "$EXTRA/usr/lib/systemd/system/"
install -m 0644 systemd/clawpatrol.sysusers "$EXTRA/usr/lib/sysusers.d/clawpatrol.conf"
cp -a image/files/. "$EXTRA/"
echo "$APP_VERSION" >"$APP/VERSION"
printf 'clawpatrol %s (git %s%s), bun %s, built %s\n' "$APP_VERSION" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$(git diff --quiet HEAD -- app config 2>/dev/null || echo ', with local changes')" \
  "$BUN_VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$APP/BUILD"
chown -R root:root "$EXTRA"
step "staged: $APP_VERSION, bun $BUN_VERSION, app $(du -sh "$APP" | cut -f1) ($(du -sh "$APP/node_modules" | cut -f1) node_modules)"

# --- 2. the OS tree with mkosi ----------------------------------------------------
MIRROR=$(grep -rhoE 'https?://[^ ]*debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TREE=$WORK/root
# mkosi 14 keeps the package install as $TREE.cache-pre-inst; it rebuilds it
# unless $TREE.cache-pre-dev also exists (only made with a build script), and
# never notices a changed package list: key the cache on mkosi.default.
CACHE_KEY=$(sha256sum image/mkosi.default | cut -c1-16)
FORCE=(--force)
if [ "${IMAGE_REBUILD_CACHE:-0}" = 1 ] || [ "$(cat "$WORK/cache-key" 2>/dev/null)" != "$CACHE_KEY" ]; then
  FORCE=(--force --force)
  step "mkosi: building the package cache (cold; several minutes on 2 cores)"
else
  step "mkosi: from the cached package install"
fi
mkdir -p "$WORK/apt-cache" "$TREE.cache-pre-dev" /run/systemd/nspawn
rm -f "$WORK/mkosi.rc"
{
  unshare --mount --propagation private -- bash -c '
    set -e
    mount -t tmpfs tmpfs /run/systemd/nspawn
    exec "$@"' mkosi-wrap \
    mkosi --directory "$REPO/image" \
      --output "$TREE" \
      --cache "$WORK/apt-cache" \
      --extra-tree "$EXTRA" \
      --mirror "$MIRROR" \
      --incremental "${FORCE[@]}" \
      build && echo 0 >"$WORK/mkosi.rc" || echo $? >"$WORK/mkosi.rc"
} 2>&1 | tee "$WORK/mkosi.log" |
  grep --line-buffered -v -E '^(Get:|Hit:|Ign:|Selecting|Preparing|Unpacking|Setting up|Processing|\(Reading database|I: (Retrieving|Validating|Extracting|Unpacking|Configuring)|W: |debconf:|dpkg: warning)' |
  sed -u 's/^/  mkosi: /' || true
[ "$(cat "$WORK/mkosi.rc" 2>/dev/null)" = 0 ] || die "mkosi failed (full log: $WORK/mkosi.log)"
[ -x "$TREE/opt/clawpatrol/current/bin/bun" ] && [ -f "$TREE/usr/lib/systemd/system/clawpatrol-gateway.service" ] ||
  die "mkosi did not produce the tree (see the output above)"
echo "$CACHE_KEY" >"$WORK/cache-key"
step "tree: $(du -sh "$TREE" | cut -f1)"

# --- 3. the disk --------------------------------------------------------------------
KERNEL=$(ls "$TREE"/boot/vmlinuz-* | sort -V | tail -1)
KVER=${KERNEL##*/vmlinuz-}
INITRD=$TREE/boot/initrd.img-$KVER
[ -f "$INITRD" ] || die "no initramfs for $KVER in the tree (mkosi.postinst runs update-initramfs)"
step "UKI: kernel $KVER"
UKI=$WORK/clawpatrol.efi
printf '%s\n' "$CMDLINE" >"$WORK/cmdline"
python3 - "$WORK" "$KERNEL" "$INITRD" "$TREE/usr/lib/os-release" "$UKI" <<'PY'
# Add the sections after the stub's last one, each page-aligned (as ukify does).
import subprocess, sys
work, kernel, initrd, osrel, out = sys.argv[1:]
stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
end = 0
for line in subprocess.run(["objdump", "-h", "-w", stub], capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) > 4 and f[0].isdigit():
        end = max(end, int(f[3], 16) + int(f[2], 16))
import os
align = lambda n: (n + 0xFFFF) & ~0xFFFF
args, vma = [], align(end)
for name, path in ((".osrel", osrel), (".cmdline", f"{work}/cmdline"), (".linux", kernel), (".initrd", initrd)):
    args += ["--add-section", f"{name}={path}", "--change-section-vma", f"{name}={vma:#x}"]
    vma = align(vma + os.path.getsize(path))
subprocess.run(["objcopy", *args, stub, out], check=True)
PY

step "ESP: ${ESP_MIB} MiB FAT32 with systemd-boot"
ESP=$WORK/esp.img
rm -f "$ESP"
mkfs.vfat -C -F 32 -n ESP -i "$ESP_VOLUME_ID" "$ESP" $((ESP_MIB * 1024)) >/dev/null
printf 'timeout 0\neditor no\n' >"$WORK/loader.conf"
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/EFI/Linux ::/loader
mcopy -i "$ESP" /usr/lib/systemd/boot/efi/systemd-bootx64.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$ESP" "$UKI" ::/EFI/Linux/clawpatrol.efi
mcopy -i "$ESP" "$WORK/loader.conf" ::/loader/loader.conf

# Root: the tree plus room for the state database and logs (the partition
# and filesystem are not grown on first boot yet).
TREE_MIB=$(du -sm --apparent-size "$TREE" | cut -f1)
ROOT_MIB=$(( (TREE_MIB * 13 / 10 + 1024 + 255) / 256 * 256 ))
step "root: ext4 ${ROOT_MIB} MiB from the ${TREE_MIB} MiB tree"
ROOTFS=$WORK/root.img
rm -f "$ROOTFS"
E2FSPROGS_FAKE_TIME=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
  mkfs.ext4 -q -L clawpatrol-root -U "$ROOT_FS_UUID" -E "hash_seed=$ROOT_FS_UUID" -d "$TREE" "$ROOTFS" "${ROOT_MIB}M" >/dev/null

step "disk: GPT, ESP + root"
RAW=$DIST/$NAME.raw
mkdir -p "$DIST"
rm -f "$RAW.tmp"
truncate -s $(( (1 + ESP_MIB + ROOT_MIB + 1) * 1024 * 1024 )) "$RAW.tmp"
sfdisk --quiet "$RAW.tmp" <<EOF
label: gpt
label-id: $DISK_GUID
start=1MiB, size=${ESP_MIB}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PART_UUID, name="esp"
start=$((1 + ESP_MIB))MiB, size=${ROOT_MIB}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$ROOT_PART_UUID, name="root-x86-64"
EOF
dd if="$ESP" of="$RAW.tmp" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$ROOTFS" of="$RAW.tmp" bs=1M seek=$((1 + ESP_MIB)) conv=notrunc,sparse status=none
mv "$RAW.tmp" "$RAW"
rm -f "$ROOTFS" "$ESP"

step "qcow2: compressing"
QCOW=$DIST/$NAME.qcow2
rm -f "$QCOW"
qemu-img convert -c -m 2 -W -O qcow2 "$RAW" "$QCOW.tmp"
mv "$QCOW.tmp" "$QCOW"

step "done in $(($(date +%s) - START))s"
printf '  %-36s %s apparent, %s on disk\n' "$RAW" "$(du -h --apparent-size "$RAW" | cut -f1)" "$(du -h "$RAW" | cut -f1)"
printf '  %-36s %s\n' "$QCOW" "$(du -h "$QCOW" | cut -f1)"
echo "  boot test: make test-image"
