#!/usr/bin/env bash
# apt-need.sh WHO PACKAGE...: installs the Debian packages of the list that
# are not installed yet. Idempotent and quiet when everything is present;
# needs root to install anything (CI is root). WHO names the caller in messages.
set -euo pipefail
who=$1
shift
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "$who: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "$who: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
