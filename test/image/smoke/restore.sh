# The boot test's second appliance (sourced by smoke.sh when the
# clawpatrol.smoke credential says `restore`): booted fresh from the same
# image, with settings that name no SSH key. It checks that no sshd listens,
# then restores the first appliance's backup (boot-test.sh attaches it as the
# tar on the cp-in disk, with the config the operator copies beside it and
# what the device kept), and the device enrolled on the first appliance
# passes traffic through this one.
say "START restore: kernel $(uname -r), boot took $(cut -d' ' -f1 /proc/uptime)s to reach the smoke unit"
CA="$STATE/ca.crt"
API=https://127.0.0.1
UPSTREAM_IP=192.168.251.2
url=https://$UPSTREAM_HOST/

if wait_for 240 systemctl is-active --quiet clawpatrol-gateway.service && wait_for 120 systemctl is-active --quiet clawpatrol-dashboard.service; then
  pass fresh-appliance "gateway and dashboard active after $(cut -d' ' -f1 /proc/uptime)s"
else
  fail fresh-appliance "gateway $(systemctl is-active clawpatrol-gateway), dashboard $(systemctl is-active clawpatrol-dashboard)"
fi
# No key in the settings: clawpatrol-access ran, wrote no key file, and sshd did not start.
wait_for 60 sh -c "systemctl show -p ActiveState --value clawpatrol-access.service | grep -qx active"
if systemctl is-active --quiet clawpatrol-access.service && [ ! -s /etc/ssh/authorized_keys/admin ] &&
  ! systemctl is-active --quiet ssh.service && ! ss -Hltn 'sport = :22' | grep -q .; then
  pass no-keys-no-sshd "no SSH key in the settings: ssh.service $(systemctl is-active ssh.service) ($(systemctl show -p ConditionResult --value ssh.service | sed 's/no/condition not met/;s/yes/condition met/')), nothing listens on :22"
else
  fail no-keys-no-sshd "ssh.service $(systemctl is-active ssh.service), :22 '$(ss -Hltn 'sport = :22' | oneline)', keys '$(head -c 200 /etc/ssh/authorized_keys/admin 2>&1 | oneline)'"
fi
fresh_fp=$(fingerprint "$CA")

H=$WORK/handoff
mkdir -p "$H"
if ! tar -xf /dev/disk/by-id/virtio-cp-in -C "$H" 2>"$WORK/in.err" || ! . "$H/expect.env" || ! . "$H/device.env"; then
  fail restore-input "no handoff on the cp-in disk: $(oneline <"$WORK/in.err")"
  say "RESULT FAIL passed=$passed failed=$failed skipped=$skipped in $(($(date +%s) - t0))s"
  return 1
fi

# The upstream first: the restored config names its CA file ($WORK/ca.crt).
ip netns add smoke-up && ip link add veth-up type veth peer name veth-upns && ip link set veth-upns netns smoke-up &&
  ip addr add 192.168.251.1/30 dev veth-up && ip link set veth-up up &&
  ip -n smoke-up addr add $UPSTREAM_IP/30 dev veth-upns && ip -n smoke-up link set veth-upns up && ip -n smoke-up link set lo up &&
  ip -n smoke-up route add default via 192.168.251.1
echo "$UPSTREAM_IP $UPSTREAM_HOST" >>/etc/hosts
# The upstream expects the first appliance's secret: it reaches it only from the restored secret store.
SMOKE_SECRET=$SECRET ip netns exec smoke-up bun $APP/test/image/smoke/upstream.ts "$WORK" $UPSTREAM_PORT $UPSTREAM_HOST 0.0.0.0 >"$WORK/upstream.log" 2>&1 &
wait_for 120 test -f "$WORK/ready" || fail upstream "the test TLS server did not start: $(oneline <"$WORK/upstream.log")"
chmod 0755 "$WORK"; chmod 0644 "$WORK/ca.crt"

# What the operator does: stop the roles, restore, put the config back, start.
t=$(date +%s)
systemctl stop clawpatrol-dashboard.service clawpatrol-dnsvip.service clawpatrol-gateway.service
rout=$(clawpatrol-gateway restore "$H/backup.cpbk" --passphrase-file "$H/passphrase" 2>&1); rrc=$?
cat "$H/gateway.hcl" >"$CONF"
systemctl start clawpatrol-gateway.service clawpatrol-dnsvip.service clawpatrol-dashboard.service
if [ $rrc = 0 ] && wait_for 180 curl -sf --unix-socket "$SOCK" http://gateway/health && wait_for 120 curl -sf --cacert "$CA" "$API/health"; then
  pass restore "in $(($(date +%s) - t))s: $(echo "$rout" | head -1 | oneline)"
else
  fail restore "rc=$rrc: $(echo "$rout" | oneline); $(journalctl -b -u clawpatrol-gateway --no-pager -n 10 -o cat | oneline)"
fi
served=$(curl -sSk --max-time 10 https://127.0.0.1/ca.crt -o "$WORK/served-ca.crt" && fingerprint "$WORK/served-ca.crt")
if [ "$(fingerprint "$CA")" = "$CA_FP" ] && [ "$served" = "$CA_FP" ] && [ "$fresh_fp" != "$CA_FP" ] && [ "$(wg show wg0 public-key 2>&1)" = "$GW_PUB" ]; then
  pass restore-identity "the first appliance's CA (${CA_FP:0:16}…, served at /ca.crt; this one's own was ${fresh_fp:0:16}…) and WireGuard key ($GW_PUB)"
else
  fail restore-identity "CA $(fingerprint "$CA") served '$served' want $CA_FP (fresh $fresh_fp); wg0 $(wg show wg0 public-key 2>&1) want $GW_PUB"
fi
login=$(curl -sS --max-time 30 --cacert "$CA" -X POST -H 'content-type: application/json' -d "{\"name\":\"smoke-admin\",\"password\":\"$PASSWORD\"}" "$API/api/auth/login" 2>&1)
if echo "$login" | grep -q '"mustChangePassword":false' && clawpatrol-gateway operator list 2>&1 | grep -q '^smoke-admin '; then
  pass restore-operator "smoke-admin logs in with the password set on the first appliance"
else
  fail restore-operator "$(echo "$login" | cut -c1-200 | oneline); $(clawpatrol-gateway operator list 2>&1 | oneline)"
fi

# The device enrolled on the first appliance, unchanged: its key and address.
ip netns add smoke-dev && ip link add veth-gw type veth peer name veth-dev && ip link set veth-dev netns smoke-dev &&
  ip addr add 192.168.250.1/30 dev veth-gw && ip link set veth-gw up &&
  ip -n smoke-dev addr add 192.168.250.2/30 dev veth-dev && ip -n smoke-dev link set veth-dev up && ip -n smoke-dev link set lo up &&
  ip -n smoke-dev link add wg-dev type wireguard &&
  ip netns exec smoke-dev wg set wg-dev private-key <(echo "$DEV_KEY") peer "$GW_PUB" endpoint 192.168.250.1:51820 allowed-ips 0.0.0.0/0 persistent-keepalive 5 &&
  ip -n smoke-dev addr add "$DEV_ADDR/32" dev wg-dev && ip -n smoke-dev link set wg-dev mtu 1420 up && ip -n smoke-dev route add default dev wg-dev
out=$(ip netns exec smoke-dev curl -sS --max-time 60 --cacert "$CA" --resolve "$UPSTREAM_HOST:443:$UPSTREAM_IP" \
  -H 'Authorization: Bearer clawpatrol-placeholder-smoke' "$url" 2>&1)
if [ "$out" = "upstream-ok auth=injected" ]; then
  pass restore-device-traffic "device smoke-wg ($DEV_ADDR, enrolled on the first appliance) -> wg0 here -> intercepted, the restored secret injected"
else
  fail restore-device-traffic "$out; $(journalctl -b -u clawpatrol-gateway --no-pager -n 8 -o cat | oneline)"
fi
ip netns del smoke-dev 2>/dev/null; ip link del veth-gw 2>/dev/null

say "RESULT $([ $failed -eq 0 ] && echo PASS || echo FAIL) passed=$passed failed=$failed skipped=$skipped in $(($(date +%s) - t0))s (uptime $(cut -d' ' -f1 /proc/uptime)s)"
[ $failed -eq 0 ]
