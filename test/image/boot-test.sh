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
# Issue 21 (operator access, updates, backup and restore): the settings name
# an SSH key for `admin` and an update-signing key. The host logs in with the
# key (SSH forwarded like :443), runs `systemctl status clawpatrol-gateway`,
# and checks that root, passwords and an old cipher are refused. A second
# disk carries two bundles signed with that key: one with another version
# string (`make bundle`'s tools/make-bundle.ts, VERSION overridden) and a
# broken one (test/image/broken-bundle.ts); smoke.sh updates to the first
# and sees the second roll back. smoke.sh then writes a backup (+ what the
# device and operator keep) and waits; the host fetches it over SSH. A second
# VM boots the same image fresh (a new overlay), with settings naming no SSH
# key (no sshd must listen), restores the backup and passes the first
# appliance's device's traffic (test/image/smoke/restore.sh).
#
#   BOOT_TEST_TIMEOUT=900   seconds before a VM is killed
#   BOOT_TEST_LOG=...       where the serial log goes (default dist/boot-test.log;
#                           the second VM's: the same name with -restore)
#   BOOT_TEST_RESTORE=0     leave out the second VM (backup is still made and fetched)
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
LOG2=${LOG%.log}-restore.log
RESTORE=${BOOT_TEST_RESTORE:-1}
BUN=./node_modules/.bin/bun
WORK=$(mktemp -d)
QEMU_PID=""
cleanup() {
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
T0=$(date +%s)
say() { printf 'boot-test [%4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- inputs: the operator's SSH key, an update-signing key, two bundles --------
ssh-keygen -q -t ed25519 -N '' -C boot-test-operator -f "$WORK/operator_key"
$BUN app/main.ts update keygen "$WORK/update-keys" >/dev/null 2>&1
GOOD_VERSION=0.1.0+smoke.2
BROKEN_VERSION=0.1.0+smoke.broken
mkdir -p "$WORK/in"
NM=$(ls -d "${IMAGE_WORK:-dist/.work}"/node_modules-prod/*/node_modules 2>/dev/null | head -1 || true)
$BUN tools/make-bundle.ts --key "$WORK/update-keys/update.key" --version "$GOOD_VERSION" --out "$WORK/in" --fast ${NM:+--node-modules "$NM"} >/dev/null 2>"$WORK/bundle.err" ||
  { echo "boot-test: FAIL: make-bundle: $(cat "$WORK/bundle.err")" >&2; exit 1; }
mv "$WORK/in/clawpatrol-$GOOD_VERSION.cpup" "$WORK/in/good.cpup"
$BUN test/image/broken-bundle.ts --key "$WORK/update-keys/update.key" --version "$BROKEN_VERSION" --runtime-of "$GOOD_VERSION" --out "$WORK/in/broken.cpup"
printf 'GOOD_VERSION=%s\nBROKEN_VERSION=%s\n' "$GOOD_VERSION" "$BROKEN_VERSION" >"$WORK/in/meta.env"
tar -cf "$WORK/in.tar" -C "$WORK/in" .
say "inputs in $(($(date +%s) - T0))s: bundle $GOOD_VERSION ($(du -h "$WORK/in/good.cpup" | cut -f1)), broken $BROKEN_VERSION, operator and update keys"

# First boot's settings, as a cloud or hypervisor would pass them: a system
# credential (base64, so newlines and quotes survive QEMU's option parser).
# smoke.sh checks the operator and public URL; the keys are issue 21's.
settings_b64() { python3 -c 'import json,sys,base64; print(base64.b64encode(json.dumps(json.loads(sys.argv[1])).encode()).decode())' "$1"; }
SETTINGS1=$(python3 -c 'import json,sys; print(json.dumps({"public_url": "https://gw.smoke.test", "operator": "smoke-admin",
  "ssh_authorized_keys": [open(sys.argv[1]).read().strip()], "update_keys": [open(sys.argv[2]).read()]}))' "$WORK/operator_key.pub" "$WORK/update-keys/update.pub")
SETTINGS2='{"public_url": "https://gw.smoke.test", "operator": "fresh-admin"}'

# run_vm NAME LOG MODE SETTINGS_JSON INPUT_TAR HOSTFWD: boots the image on a
# fresh overlay (1 GiB bigger than the raw disk) in the background.
run_vm() {
  local name=$1 log=$2 mode=$3 settings=$4 input=$5 fwd=$6 raw_bytes
  raw_bytes=$(stat -c %s "$RAW")
  qemu-img create -q -f qcow2 -F raw -b "$(realpath "$RAW")" "$WORK/$name.qcow2" $((raw_bytes + (1 << 30)))
  cp "$OVMF_VARS" "$WORK/$name-vars.fd"
  : >"$log"
  qemu-system-x86_64 \
    -machine q35,accel=tcg -cpu max -smp 2 -m 1536 \
    -nodefaults -nographic -no-reboot -monitor none \
    -drive if=pflash,format=raw,unit=0,readonly=on,file="$OVMF_CODE" \
    -drive if=pflash,format=raw,unit=1,file="$WORK/$name-vars.fd" \
    -drive file="$WORK/$name.qcow2",format=qcow2,if=virtio \
    -drive file="$input",format=raw,if=none,id=cpin,readonly=on -device virtio-blk-pci,drive=cpin,serial=cp-in \
    -nic user,model=virtio-net-pci,restrict=on,"$fwd" \
    -device virtio-rng-pci \
    -smbios type=11,value=io.systemd.credential:clawpatrol.smoke="$mode" \
    -smbios type=11,value=io.systemd.credential.binary:clawpatrol.settings="$(settings_b64 "$settings")" \
    -serial file:"$log" &
  QEMU_PID=$!
}

# follow LOG HOOK: prints the smoke lines as they arrive, calls HOOK each
# round, returns when the VM stops (1 on the timeout).
follow() {
  local log=$1 hook=$2 start seen=0 now m pat
  start=$(date +%s)
  local -A shown=()
  local milestones=("Linux version|kernel started" "clawpatrol appliance: first boot|first-boot banner printed")
  while kill -0 "$QEMU_PID" 2>/dev/null; do
    now=$(($(date +%s) - start))
    for m in "${milestones[@]}"; do
      pat=${m%%|*}
      if [ -z "${shown[$pat]:-}" ] && grep -qa -- "$pat" "$log"; then shown[$pat]=1; say "${m#*|}"; fi
    done
    mapfile -t lines < <(grep -a -o 'CLAWPATROL-SMOKE: .*' "$log" | tr -d '\r' || true)
    while [ "$seen" -lt "${#lines[@]}" ]; do say "${lines[$seen]#CLAWPATROL-SMOKE: }"; seen=$((seen + 1)); done
    $hook "$log"
    if [ "$now" -ge "$TIMEOUT" ]; then
      echo "boot-test: FAIL: timed out after ${TIMEOUT}s; last serial lines of $log:" >&2
      tail -n 30 "$log" | tr -d '\r' >&2
      return 1
    fi
    sleep 2
  done
  wait "$QEMU_PID" || true
  QEMU_PID=""
  mapfile -t lines < <(grep -a -o 'CLAWPATROL-SMOKE: .*' "$log" | tr -d '\r' || true)
  while [ "$seen" -lt "${#lines[@]}" ]; do say "${lines[$seen]#CLAWPATROL-SMOKE: }"; seen=$((seen + 1)); done
}

# verdict NAME LOG: the VM's smoke result.
verdict() {
  local name=$1 log=$2
  if grep -aq 'CLAWPATROL-SMOKE: RESULT PASS' "$log" && ! grep -aq 'CLAWPATROL-SMOKE: FAIL' "$log"; then return 0; fi
  if ! grep -aq 'CLAWPATROL-SMOKE: RESULT' "$log"; then
    echo "boot-test: FAIL: the $name VM stopped without a smoke result; last serial lines:" >&2
    tail -n 40 "$log" | tr -d '\r' >&2
  else
    echo "boot-test: FAIL: $name VM (see the FAIL lines above; serial log $log)" >&2
  fi
  return 1
}

# --- the first appliance ----------------------------------------------------------
HOST_PORT=$(free_port)
SSH_PORT=$(free_port)
OFFBOX="" OPERATOR=""
SSHO=(-i "$WORK/operator_key" -p "$SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile="$WORK/known_hosts"
  -o BatchMode=yes -o ConnectTimeout=30 -o LogLevel=ERROR)

# The dashboard from the host: first contact pinned by the banner's fingerprint.
offbox_check() {
  local log=$1 banner served health
  banner=$(grep -a -o 'CA SHA-256: *[0-9A-F:]*' "$log" | head -1 | sed 's/^CA SHA-256: *//' | tr -d ':' | tr 'A-F' 'a-f')
  curl -sSk --max-time 20 "https://127.0.0.1:$HOST_PORT/ca.crt" -o "$WORK/ca.crt" 2>"$WORK/offbox.err" || { echo "FAIL off-box: /ca.crt: $(tr '\n' ' ' <"$WORK/offbox.err")"; return; }
  served=$(sed '/-----/d' "$WORK/ca.crt" | base64 -d | sha256sum | cut -d' ' -f1)
  if [ -z "$banner" ] || [ "$banner" != "$served" ]; then echo "FAIL off-box: served CA sha256 $served, banner '$banner'"; return; fi
  health=$(curl -sS --max-time 20 --cacert "$WORK/ca.crt" --resolve "gw.smoke.test:$HOST_PORT:127.0.0.1" "https://gw.smoke.test:$HOST_PORT/health" 2>&1)
  if [ "$health" = '{"ok":true}' ]; then
    echo "PASS off-box: from the host, /ca.crt matches the banner's SHA-256 (${served:0:16}…) and https://gw.smoke.test/health verifies with it"
  else
    echo "FAIL off-box: https://gw.smoke.test/health from the host: $health"
  fi
}

# The operator from the host: a shell by key only; then the backup handed over.
operator_check() {
  local status out
  status=$(timeout 120 ssh "${SSHO[@]}" admin@127.0.0.1 systemctl status clawpatrol-gateway --no-pager 2>&1)
  echo "$status" | grep -q 'Active: active (running)' || { echo "FAIL ssh-operator: ssh admin@ systemctl status: $(echo "$status" | head -5 | tr '\n' ' ')"; return; }
  if out=$(timeout 60 ssh "${SSHO[@]}" root@127.0.0.1 true 2>&1); then echo "FAIL ssh-operator: root logged in"; return; fi
  echo "$out" | grep -q 'Permission denied' || { echo "FAIL ssh-operator: root: $out"; return; }
  if out=$(timeout 60 ssh -p "$SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile="$WORK/known_hosts" -o BatchMode=yes \
    -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive admin@127.0.0.1 true 2>&1); then
    echo "FAIL ssh-operator: logged in without a key"; return
  fi
  echo "$out" | grep -q 'Permission denied (publickey)' || { echo "FAIL ssh-operator: without a key: $out"; return; }
  # A CBC cipher must not be negotiated (sshd -T inside checks the whole list: sshd-hardened).
  if timeout 60 ssh "${SSHO[@]}" -c aes128-cbc admin@127.0.0.1 true >/dev/null 2>&1; then echo "FAIL ssh-operator: aes128-cbc accepted"; return; fi
  timeout 120 ssh "${SSHO[@]}" admin@127.0.0.1 sudo -n cat /run/clawpatrol-smoke/handoff.tar >"$WORK/handoff.tar" 2>"$WORK/handoff.err" &&
    tar -tf "$WORK/handoff.tar" | grep -q backup.cpbk || { echo "FAIL ssh-operator: fetching the backup: $(cat "$WORK/handoff.err")"; return; }
  timeout 60 ssh "${SSHO[@]}" admin@127.0.0.1 sudo -n touch /run/clawpatrol-smoke/host-done
  echo "PASS ssh-operator: from the host, admin logs in with the settings' key and runs systemctl status clawpatrol-gateway ($(echo "$status" | grep -o 'Active: [a-z]* ([a-z]*)')); root, password/keyboard-interactive and aes128-cbc refused; sudo fetched the backup ($(stat -c %s "$WORK/handoff.tar") bytes)"
}

first_hooks() {
  local log=$1
  if [ -z "$OFFBOX" ] && grep -aq 'CLAWPATROL-SMOKE: PASS dashboard-listen' "$log"; then OFFBOX=$(offbox_check "$log"); say "$OFFBOX"; fi
  if [ -z "$OPERATOR" ] && grep -aq 'CLAWPATROL-SMOKE: READY handoff' "$log"; then OPERATOR=$(operator_check); say "$OPERATOR"; fi
}
no_hooks() { :; }

echo "boot-test: booting $RAW (QEMU TCG, UEFI, 2 vCPUs); serial log: $LOG"
T1=$(date +%s)
run_vm first "$LOG" 1 "$SETTINGS1" "$WORK/in.tar" "hostfwd=tcp:127.0.0.1:$HOST_PORT-:443,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22"
follow "$LOG" first_hooks || exit 1
FIRST_S=$(($(date +%s) - T1))
result=0
verdict first "$LOG" || result=1
for check in "$OFFBOX" "$OPERATOR"; do
  if [ "${check%% *}" != PASS ]; then
    echo "boot-test: FAIL: ${check:-a host-side check never ran (the dashboard or the handoff never came)}" >&2
    result=1
  fi
done
[ $result = 0 ] || exit 1
say "first appliance: PASS in ${FIRST_S}s (boot, checks, update, rollback, backup, power-off)"

# --- the second appliance: restore ------------------------------------------------
if [ "$RESTORE" = 1 ]; then
  echo "boot-test: booting a second appliance from a fresh overlay to restore the backup; serial log: $LOG2"
  T2=$(date +%s)
  run_vm second "$LOG2" restore "$SETTINGS2" "$WORK/handoff.tar" "hostfwd=tcp:127.0.0.1:$(free_port)-:22"
  follow "$LOG2" no_hooks || exit 1
  SECOND_S=$(($(date +%s) - T2))
  verdict second "$LOG2" || exit 1
  say "second appliance: PASS in ${SECOND_S}s (fresh boot, no sshd, restore, the first one's device)"
else
  say "second appliance: left out (BOOT_TEST_RESTORE=0)"
fi
echo "boot-test: PASS in $(($(date +%s) - T0))s"
