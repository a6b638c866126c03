# clawpatrol's embedded default: what `make run` starts.
# Loopback only; state (database, CA, keys) under ./.state/ in the checkout.
# A fuller example of every block is in config/example.hcl.
schema_version = 1

gateway {
  state_dir = "../.state"
  # The dashboard, the onboarding API and the client downloads (/install.sh).
  dashboard_listen = "127.0.0.1:8080"
  public_url = "http://127.0.0.1:8080"
  proxy {
    # HTTP CONNECT and SOCKS5 on one port: curl -x http://127.0.0.1:3128 ...
    listen = "127.0.0.1:3128"
  }
  events {
    jsonl = "events.jsonl"
    retention_days = 30
  }
  # Devices join over WireGuard spoken by the gateway itself (no root):
  # `clawpatrol join http://127.0.0.1:8080` on this machine. To take devices
  # from elsewhere, listen on a reachable address and set public_url to match.
  wireguard {
    mode = "userspace"
    listen = "127.0.0.1:51820"
    subnet_cidr = "10.77.0.0/16"
  }
}

defaults {
  verdict = "allow"              # no rule matched: allow
  unknown_host = "passthrough"   # TLS to hosts no endpoint claims: spliced untouched
  profile = profile.default      # proxy clients without a device token get this profile
}

# httpbin echoes the request it received: the quickest way to see a
# placeholder replaced by the real secret.
endpoint "https" "httpbin" {
  hosts = ["httpbin.org", "postman-echo.com"]
  credential = bearer_token.demo
}

# The offline demo: `make run` starts an HTTPS echo server on
# localhost:8443 whose certificate the gateway's own CA issues at start
# (`all --demo-upstream 127.0.0.1:8443`), so the first requests work with no
# internet. trust_gateway_ca trusts that CA for this upstream only; never set
# it for a real host. (Claiming `localhost` suits a gateway on your own
# machine, not a shared one: its plain HTTP on port 80 is claimed too.)
endpoint "https" "demo" {
  hosts = ["localhost"]
  ports = [8443]
  trust_gateway_ca = true
  credential = bearer_token.demo
}

endpoint "https" "github" {
  hosts = ["api.github.com"]
  credential = github_token.github
}

# Secrets come from `clawpatrol-gateway secret set NAME` (encrypted in the
# state database), or the environment (CLAWPATROL_SECRET_DEMO), or a file.
credential "bearer_token" "demo" {}
credential "github_token" "github" {}

profile "default" {
  credentials = [bearer_token.demo, github_token.github]
}

rule "no-deletes" {
  endpoints = [https.demo, https.httpbin, https.github]
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deleting needs a human"
}

rule "no-admin-paths" {
  endpoint = https.httpbin
  priority = 10
  condition = "http.path.startsWith('/admin')"
  verdict = "deny"
  reason = "admin paths are off limits to agents"
}
