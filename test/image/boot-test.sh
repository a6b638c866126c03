#!/usr/bin/env bash
# The appliance boot test: `make test-image` (after `make image`).
#
# Boots dist/clawpatrol-appliance.raw under QEMU (TCG, -cpu max: Bun needs
# AVX2; UEFI via OVMF) exactly as shipped: the disk is opened with
# snapshot=on (nothing is written back), and the in-image smoke unit runs only
# because the VM gets the system credential clawpatrol.smoke through SMBIOS.
# The smoke unit (test/image/smoke/smoke.sh) checks the services from inside,
# prints `CLAWPATROL-SMOKE: PASS|FAIL|SKIP ...` lines to the serial console and
# powers off. This script follows the serial log, and passes only on
# `CLAWPATROL-SMOKE: RESULT PASS` with no FAIL line, within the timeout.
#
#   BOOT_TEST_TIMEOUT=900   seconds before the VM is killed
#   BOOT_TEST_LOG=...       where the serial log goes (default dist/boot-test.log)
set -euo pipefail
cd "$(dirname "$0")/../.."
RAW=${1:-dist/clawpatrol-appliance.raw}
TIMEOUT=${BOOT_TEST_TIMEOUT:-900}
LOG=${BOOT_TEST_LOG:-dist/boot-test.log}
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

[ -f "$RAW" ] || { echo "boot-test: $RAW not found (run: make image)" >&2; exit 2; }
bash image/deps.sh
mkdir -p "$(dirname "$LOG")"
WORK=$(mktemp -d)
QEMU_PID=""
cleanup() {
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cp "$OVMF_VARS" "$WORK/vars.fd"
# First boot's initial settings, as a cloud or hypervisor would pass them: a
# system credential (base64, so the newline and quotes survive QEMU's option
# parser). smoke.sh checks the operator and the public URL it names.
SETTINGS_B64=$(printf 'public_url = "https://gw.smoke.test"\noperator = "smoke-admin"\n' | base64 -w0)
: >"$LOG"

START=$(date +%s)
echo "boot-test: booting $RAW (QEMU TCG, UEFI, 2 vCPUs); serial log: $LOG"
qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp 2 -m 1536 \
  -nodefaults -nographic -no-reboot -monitor none \
  -drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
  -drive if=pflash,format=raw,unit=1,file="$WORK/vars.fd" \
  -drive file="$RAW",format=raw,if=virtio,snapshot=on \
  -nic user,model=virtio-net-pci,restrict=on \
  -device virtio-rng-pci \
  -smbios type=11,value=io.systemd.credential:clawpatrol.smoke=1 \
  -smbios type=11,value=io.systemd.credential.binary:clawpatrol.settings="$SETTINGS_B64" \
  -serial file:"$LOG" &
QEMU_PID=$!

# Follow the smoke lines (and a few boot milestones) as they arrive.
seen=0
milestones=("Linux version|kernel started" "clawpatrol appliance: first boot|first-boot banner printed")
declare -A shown=()
while kill -0 "$QEMU_PID" 2>/dev/null; do
  now=$(($(date +%s) - START))
  for m in "${milestones[@]}"; do
    pat=${m%%|*}
    if [ -z "${shown[$pat]:-}" ] && grep -qa -- "$pat" "$LOG"; then
      shown[$pat]=1
      printf 'boot-test [%4ss] %s\n' "$now" "${m#*|}"
    fi
  done
  mapfile -t lines < <(grep -a -o 'CLAWPATROL-SMOKE: .*' "$LOG" | tr -d '\r' || true)
  while [ "$seen" -lt "${#lines[@]}" ]; do
    printf 'boot-test [%4ss] %s\n' "$now" "${lines[$seen]#CLAWPATROL-SMOKE: }"
    seen=$((seen + 1))
  done
  if [ "$now" -ge "$TIMEOUT" ]; then
    echo "boot-test: FAIL: timed out after ${TIMEOUT}s; last serial lines:" >&2
    tail -n 30 "$LOG" | tr -d '\r' >&2
    exit 1
  fi
  sleep 2
done
wait "$QEMU_PID" || true
QEMU_PID=""
ELAPSED=$(($(date +%s) - START))
mapfile -t lines < <(grep -a -o 'CLAWPATROL-SMOKE: .*' "$LOG" | tr -d '\r' || true)
while [ "$seen" -lt "${#lines[@]}" ]; do
  printf 'boot-test [%4ss] %s\n' "$ELAPSED" "${lines[$seen]#CLAWPATROL-SMOKE: }"
  seen=$((seen + 1))
done

if grep -aq 'CLAWPATROL-SMOKE: RESULT PASS' "$LOG" && ! grep -aq 'CLAWPATROL-SMOKE: FAIL' "$LOG"; then
  echo "boot-test: PASS in ${ELAPSED}s (boot, checks and power-off)"
  exit 0
fi
if ! grep -aq 'CLAWPATROL-SMOKE: RESULT' "$LOG"; then
  echo "boot-test: FAIL: the VM stopped without a smoke result after ${ELAPSED}s; last serial lines:" >&2
  tail -n 40 "$LOG" | tr -d '\r' >&2
else
  echo "boot-test: FAIL after ${ELAPSED}s (see the FAIL lines above; serial log $LOG)" >&2
fi
exit 1
