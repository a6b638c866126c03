#!/usr/bin/env bash
# Installs the Debian packages `make image` and `make test-image` need.
# Idempotent and quiet when everything is present; needs root to install.
set -euo pipefail
# mkosi + debootstrap: the OS tree; systemd-boot: the boot loader and the UKI
# stub; binutils: objcopy; dosfstools/mtools: the ESP without mounting;
# e2fsprogs/fdisk: root filesystem and GPT; qemu-*/ovmf: qcow2 and the boot test.
need=(mkosi debootstrap systemd-boot binutils dosfstools mtools e2fsprogs fdisk qemu-utils qemu-system-x86 ovmf)
exec bash "$(dirname "$0")/../tools/apt-need.sh" image/deps.sh "${need[@]}"
