#!/usr/bin/env bash
# Checks the unit files in systemd/ (and the boot test's smoke unit) with
# systemd-analyze: `verify` must pass, and `security --offline` must rate
# each service at or under its recorded exposure ceiling.
# Skips when systemd-analyze is missing, unless CI=true.
# Runs against a scratch root holding the image's stock units (or the host's
# before the first `make image`) and stand-ins for the binaries.
set -uo pipefail
cd "$(dirname "$0")/../.."
if ! command -v systemd-analyze >/dev/null; then
  if [ "${CI:-}" = true ]; then echo "units: FAIL systemd-analyze not installed (apt-get install systemd)" >&2; exit 1; fi
  echo "units: SKIP systemd-analyze not installed"
  exit 0
fi
# Exposure ceilings (0 = locked down, 10 = unprotected); lower them as the
# units tighten, never raise them without saying why.
declare -A CEILING=(
  [clawpatrol-gateway.service]=2.5
  [clawpatrol-dnsvip.service]=1.7
  # 1.8: AF_NETLINK, to read the machine's addresses for the certificate it mints (dashboard_tls)
  [clawpatrol-dashboard.service]=1.8
  [clawpatrol-firstboot.service]=2.0
  # root, but no capabilities, no network, writing only /etc/ssh and the update keys
  [clawpatrol-access.service]=2.0
)
units=(systemd/*.service test/image/smoke/clawpatrol-smoke.service)
fail=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# A scratch root: the stock units (from the built image tree when there is
# one, else the host's), the units under test in /etc/systemd/system, and
# stand-ins for the binaries they run.
TREE=${IMAGE_WORK:-dist/.work}/root
root=$scratch/root
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin" "$root/usr/bin" "$root/opt/clawpatrol/current/test/image/smoke" "$root/opt/clawpatrol/current/bin"
if [ -d "$TREE/usr/lib/systemd/system" ]; then
  cp -a "$TREE/usr/lib/systemd/system" "$root/usr/lib/systemd/"
  echo "units: stock units from the image tree $TREE"
else
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  echo "units: stock units from the host (run make image to check against the image's)"
fi
rm -f "$root"/usr/lib/systemd/system/clawpatrol-*.service
for f in opt/clawpatrol/current/bin/bun usr/bin/curl usr/bin/systemctl usr/bin/sh opt/clawpatrol/current/test/image/smoke/smoke.sh; do
  printf '#!/bin/sh\n' >"$root/$f"; chmod +x "$root/$f"
done
ln -s usr/bin "$root/bin" 2>/dev/null || true
mkdir -p "$scratch/units"
cp "${units[@]}" "$scratch/units/"
cp "${units[@]}" "$root/etc/systemd/system/"

for u in "$scratch"/units/*.service; do
  name=${u##*/}
  out=$(systemd-analyze verify --man=no --root="$root" "$root/etc/systemd/system/$name" 2>&1)
  # Without a running systemd some messages are about the host, not the unit.
  out=$(echo "$out" | grep -v -E 'Failed to (connect to|open) (bus|private bus)|System has not been booted with systemd' || true)
  if [ -n "$out" ]; then
    echo "units: FAIL verify $name:"; echo "$out" | sed 's/^/    /'; fail=1
  else
    echo "units: PASS verify $name"
  fi
  ceiling=${CEILING[$name]:-}
  [ -z "$ceiling" ] && continue
  score=$(systemd-analyze security --offline=yes --root="$root" --no-pager "$root/etc/systemd/system/$name" 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -z "$score" ]; then
    echo "units: FAIL security $name: no score"; fail=1
  elif awk -v s="$score" -v c="$ceiling" 'BEGIN { exit !(s <= c) }'; then
    echo "units: PASS security $name: exposure $score (ceiling $ceiling)"
  else
    echo "units: FAIL security $name: exposure $score over the ceiling $ceiling"; fail=1
    systemd-analyze security --offline=yes --root="$root" --no-pager "$root/etc/systemd/system/$name" 2>/dev/null | grep -E '^✗' | sed 's/^/    /'
  fi
done
# The image enables every service (a unit shipped but never started is a bug).
for name in clawpatrol-gateway clawpatrol-dnsvip clawpatrol-dashboard clawpatrol-firstboot clawpatrol-access; do
  if sed -n '/^systemctl enable/,/[^\\]$/p' image/mkosi.postinst | grep -q "$name.service"; then
    echo "units: PASS enabled $name.service (image/mkosi.postinst)"
  else
    echo "units: FAIL $name.service is not enabled in image/mkosi.postinst"; fail=1
  fi
done
exit $fail
