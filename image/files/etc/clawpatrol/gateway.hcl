# clawpatrol appliance configuration.
#
# Edit, then `systemctl reload clawpatrol-gateway` (the gateway also picks up
# saved changes on its own; a config with errors is logged and the last good
# one kept). Check before saving:  clawpatrol-gateway validate
# More than one file: move this to /etc/clawpatrol/gateway.d/*.hcl (used only
# when this file does not exist). Every block is shown in
# /opt/clawpatrol/config/example.hcl.
schema_version = 1

gateway {
  state_dir      = "/var/lib/clawpatrol"           # CA, keys, state database
  control_socket = "/run/clawpatrol/control.sock"  # operator CLI and dashboard

  # Explicit proxy capture (HTTP CONNECT and SOCKS5 on one port) until the
  # kernel WireGuard packet plane lands. Clients need a device token:
  #   clawpatrol-gateway devices add NAME --profile default
  #   curl --cacert ca.crt -x http://NAME:TOKEN@APPLIANCE:3128 https://...
  proxy {
    listen = "0.0.0.0:3128"
  }

  events {
    retention_days = 30
  }
}

defaults {
  verdict      = "allow"        # no rule matched: allow
  unknown_host = "passthrough"  # TLS to hosts no endpoint claims: spliced untouched
  # No default profile on purpose: a proxy client without a device token is
  # refused (407), so the appliance is not an open proxy.
}

profile "default" {
  credentials = []
}
