#!/usr/bin/env bash
# The appliance boot test: `make test-image` (after `make image`).
#
# Boots dist/clawpatrol-appliance.raw under QEMU (TCG, -cpu max: Bun needs
# AVX2; UEFI via OVMF) exactly as shipped: the disk is a qcow2 overlay on the
# raw image (nothing is written back), 1 GiB bigger, as a cloud volume would
# be (the root must grow to it), and the in-image smoke unit runs only
# because the VM gets the system credential clawpatrol.smoke through SMBIOS.
# The smoke unit (test/image/smoke/smoke.sh) checks the services from inside,
# prints `CLAWPATROL-SMOKE: PASS|FAIL|SKIP ...` lines to the serial console and
# powers off. This script follows the serial log, and passes only on
# `CLAWPATROL-SMOKE: RESULT PASS` with no FAIL line, within the timeout.
#
# Off the box: the VM's :443 is forwarded to a host port. Once the smoke
# unit has seen the dashboard up, this script fetches /ca.crt from the host
# as a new device would (unverified), checks its SHA-256 against the one the
# first-boot banner printed on the serial console, and then asks for
# https://gw.smoke.test/health trusting only that CA.
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

# The host port the VM's HTTPS dashboard is forwarded to (restrict=on keeps explicit forwards).
HOST_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
OFFBOX=""

# The dashboard from the host: first contact pinned by the banner's fingerprint.
offbox_check() {
  local banner served
  banner=$(grep -a -o 'CA SHA-256: *[0-9A-F:]*' "$LOG" | head -1 | sed 's/^CA SHA-256: *//' | tr -d ':' | tr 'A-F' 'a-f')
  curl -sSk --max-time 20 "https://127.0.0.1:$HOST_PORT/ca.crt" -o "$WORK/ca.crt" 2>"$WORK/offbox.err" || { echo "FAIL off-box: /ca.crt: $(tr '\n' ' ' <"$WORK/offbox.err")"; return; }
  served=$(sed '/-----/d' "$WORK/ca.crt" | base64 -d | sha256sum | cut -d' ' -f1)
  if [ -z "$banner" ] || [ "$banner" != "$served" ]; then echo "FAIL off-box: served CA sha256 $served, banner '$banner'"; return; fi
  local health
  health=$(curl -sS --max-time 20 --cacert "$WORK/ca.crt" --resolve "gw.smoke.test:$HOST_PORT:127.0.0.1" "https://gw.smoke.test:$HOST_PORT/health" 2>&1)
  if [ "$health" = '{"ok":true}' ]; then
    echo "PASS off-box: from the host, /ca.crt matches the banner's SHA-256 (${served:0:16}…) and https://gw.smoke.test/health verifies with it"
  else
    echo "FAIL off-box: https://gw.smoke.test/health from the host: $health"
  fi
}

RAW_BYTES=$(stat -c %s "$RAW")
qemu-img create -q -f qcow2 -F raw -b "$(realpath "$RAW")" "$WORK/disk.qcow2" $((RAW_BYTES + (1 << 30)))
START=$(date +%s)
echo "boot-test: booting $RAW (QEMU TCG, UEFI, 2 vCPUs); serial log: $LOG"
qemu-system-x86_64 \
  -machine q35,accel=tcg -cpu max -smp 2 -m 1536 \
  -nodefaults -nographic -no-reboot -monitor none \
  -drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
  -drive if=pflash,format=raw,unit=1,file="$WORK/vars.fd" \
  -drive file="$WORK/disk.qcow2",format=qcow2,if=virtio \
  -nic user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:"$HOST_PORT"-:443 \
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
  if [ -z "$OFFBOX" ] && grep -aq 'CLAWPATROL-SMOKE: PASS dashboard-listen' "$LOG"; then
    OFFBOX=$(offbox_check)
    printf 'boot-test [%4ss] %s\n' "$now" "$OFFBOX"
  fi
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

if [ "${OFFBOX%% *}" != PASS ]; then
  echo "boot-test: FAIL after ${ELAPSED}s: ${OFFBOX:-the off-box check never ran (the dashboard never came up)}" >&2
  exit 1
fi
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
