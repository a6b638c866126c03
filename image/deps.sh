#!/usr/bin/env bash
# Installs the Debian packages `make image` and `make test-image` need.
# Idempotent and quiet when everything is present; needs root to install.
set -euo pipefail
# mkosi + debootstrap: the OS tree; systemd-boot: the boot loader and the UKI
# stub; binutils: objcopy; dosfstools/mtools: the ESP without mounting;
# e2fsprogs/fdisk: root filesystem and GPT; qemu-*/ovmf: qcow2 and the boot test.
need=(mkosi debootstrap systemd-boot binutils dosfstools mtools e2fsprogs fdisk qemu-utils qemu-system-x86 ovmf)
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "image/deps.sh: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "image/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
