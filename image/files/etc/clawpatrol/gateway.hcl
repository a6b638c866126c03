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

  # The dashboard and public API (device onboarding, client downloads at
  # /download/... and /install.sh), served by clawpatrol-dashboard.service
  # over HTTPS on every address, IPv4 and IPv6 ("0.0.0.0:443" for IPv4 only).
  # Where browsers and devices reach it (first boot sets it from the
  # clawpatrol.settings credential or cloud-init user data):
  # public_url     = "https://gateway.example.com"
  dashboard_listen = "[::]:443"

  # The certificate: signed by this appliance's CA for the host of
  # public_url, the machine's addresses and loopback (state_dir/dashboard.crt,
  # minted again when they change or near expiry). Devices pin the CA with
  # the SHA-256 printed at first boot and by `clawpatrol-gateway ca show`:
  #   clawpatrol join https://HOST --ca-sha256 FINGERPRINT
  # Your own certificate instead (readable by the clawpatrol user):
  #   dashboard_tls {
  #     cert_file = "/etc/clawpatrol/dashboard.crt"
  #     key_file  = "/etc/clawpatrol/dashboard.key"
  #   }
  dashboard_tls {
    mint_from_ca = true
  }

  # Transparent capture: the kernel's WireGuard interface wg0 (UDP 51820)
  # terminates the devices' tunnels; everything arriving on it is routed
  # (ip rule iif wg0 lookup 100) into the gateway's TUN cp0. Devices enroll
  # with `clawpatrol join URL` (POST /api/onboard/start), the operator approves:
  #   clawpatrol-gateway devices pending
  #   clawpatrol-gateway devices approve CODE --profile default
  # The gateway sets forwarding and rp_filter itself (the unit lets it write
  # /proc/sys/net only).
  wireguard {
    mode        = "kernel"
    listen      = "0.0.0.0:51820"
    subnet_cidr = "10.77.0.0/16"  # devices' tunnel addresses; the gateway is 10.77.0.1
    interface   = "wg0"
    tun         = "cp0"
    tun_offload = true   # the kernel hands the TUN TSO super-packets (IFF_VNET_HDR)
    # The address devices send their WireGuard packets to. Unknown when the
    # image is built: without it devices are told the host of public_url,
    # else the host they joined through, with port 51820. Set it when
    # WireGuard arrives at another address:
    # endpoint  = "203.0.113.10:51820"
  }

  # Device DNS: the gateway forwards every :53 datagram from devices to the
  # DNS-VIP responder (clawpatrol-dnsvip.service) here. It answers
  # clawpatrol.internal and the hostnames bound to a virtual IP (vip_hosts,
  # from vip_range), and forwards the rest to /etc/resolv.conf's nameserver
  # (systemd-resolved) unless `upstream` is set.
  dns {
    listen    = "127.0.0.1:53"
    vip_range = "100.80.0.0/16"
    # vip_hosts = ["db.internal.example.com"]
    # upstream  = "10.0.2.3:53"
  }

  # Explicit proxy capture (HTTP CONNECT and SOCKS5 on one port), for clients
  # that cannot run WireGuard. Clients need a device token:
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
