#!/usr/bin/env bash
# Installs what `make bench-https` needs: the load generator (hey), the peer
# proxy (mitmproxy 8.1.1 from Debian), the direct-baseline upstream
# (nginx-light), and the tools the bench uses to isolate itself (unshare,
# ip). Idempotent and quiet when everything is present; needs root to
# install anything (the bench itself needs root too: it runs in a network
# namespace of its own with the upstream on port 443).
set -euo pipefail
# package:command it provides
# bench-netstack: iperf3, and wireguard-go + wg for the device side of the tunnel.
# bench-postgres: PostgreSQL 15 and pgbench, pgbouncer, socat (libpq's hop to the proxy).
# bench-https's HTTP/2 rows: h2load (nghttp2-client), socat (its hop to the proxies).
need=(hey:hey mitmproxy:mitmdump nginx-light:nginx curl:curl openssl:openssl util-linux:unshare iproute2:ip
  iperf3:iperf3 wireguard-go:wireguard-go wireguard-tools:wg
  postgresql-15:/usr/lib/postgresql/15/bin/postgres postgresql-client-15:pgbench pgbouncer:pgbouncer socat:socat nghttp2-client:h2load)
missing=()
for pair in "${need[@]}"; do
  pkg=${pair%%:*} cmd=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "$cmd" ]; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "test/bench/deps.sh: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "test/bench/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Do not let package scripts start the system nginx: the bench runs its own.
policy_rc=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy_rc" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy_rc"
  chmod +x "$policy_rc"
  made_policy=1
fi
trap 'if [ "$made_policy" = 1 ]; then rm -f "$policy_rc"; fi' EXIT
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
