#!/usr/bin/env bash
# Installs the Debian packages the test suites use. Idempotent and quiet when
# everything is present; needs root (CI is root) to install anything.
set -euo pipefail
# curl/openssl: the HTTPS integration tests; wireguard-go/wireguard-tools/iproute2:
# WireGuard interop in network namespaces; libsodium23: the fast WireGuard crypto backend.
# nftables: random loss on the WireGuard underlay (tunnel matrix; no netem here); python3: the
# matrix's QUIC probe (a connected UDP socket that reports ECONNREFUSED). chromium: the
# dashboard's browser test (test/e2e), driven by playwright-core; never a downloaded browser;
# fonts-dejavu-core: a font for its screenshots (chromium does not pull one in without recommends).
# postgresql (15), postgresql-client, pgbouncer: the Postgres endpoint's real upstream (test/integration/support/postgres.ts),
# its clients (psql, pgbench) and the pooling baseline of the Postgres benchmark; socat: that
# benchmark's hop from libpq to the gateway's proxy (its smoke mode runs with the tests).
# nginx-light: one of the upstreams of the HTTPS differential tests (test/integration/https/differential).
# openssh-server (sshd 9.2) and git: the SSH endpoint's real upstream and clients. clickhouse-server and
# clickhouse-client (18.16): the ClickHouse endpoints' real upstream and client, and the audit export's sink.
# kubectl is not installed from Debian: the machine image has a newer one at /usr/bin/kubectl, and
# Debian's kubernetes-client (1.20) conflicts with it. bsdutils (script), bc and gcc: the command gate's
# tests (a pty of the warden's own, an interactive tool, an LD_PRELOAD library built for the bypass case).
# nghttp2-client (nghttp, h2load) and python3-grpcio: the HTTP/2 and gRPC interception tests.
# python3-requests, dpkg-dev (dpkg-scanpackages for a local apt repository): the client matrix (npm comes with Node)
# (test/integration/clients/); golang-go, wget, python3-pip, ca-certificates: the clients that trust the
# system store (Go's net/http, wget, pip; update-ca-certificates). make: README's newcomer block runs `make -n run`. pebble: Let's Encrypt's test ACME server, for the dashboard's ACME certificate.
need=(curl openssl iproute2 wireguard-go wireguard-tools libsodium23 nftables python3 chromium fonts-dejavu-core
  postgresql postgresql-client pgbouncer socat nginx-light openssh-server git clickhouse-server clickhouse-client
  bsdutils bc gcc python3-requests dpkg-dev nghttp2-client python3-grpcio pebble
  golang-go wget python3-pip ca-certificates make)
# The benchmarks' smoke modes run with the tests (hey, mitmproxy, iperf3, ...): their list is test/bench/deps.sh.
bash "$(dirname "$0")/bench/deps.sh"
exec bash "$(dirname "$0")/../tools/apt-need.sh" test/deps.sh "${need[@]}"
