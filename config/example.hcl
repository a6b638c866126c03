# clawpatrol gateway — an example policy using every feature.
#
# Check it with:   clawpatrol-gateway validate config/example.hcl
# Try rules with:  clawpatrol-gateway test config/example.hcl FIXTURES.json
#
# References are bare (no quotes): https.github, github_token.gh,
# profile.default, human_approver.oncall. The gateway resolves them at load
# and reports any it cannot find as FILE:LINE.

schema_version = 1

gateway {
  # Relative paths resolve against this file's directory.
  # CLAWPATROL_STATE_DIR in the environment overrides this.
  state_dir        = "../.state"
  dashboard_listen = "127.0.0.1:8080"
  # control_socket defaults to <state_dir>/control.sock

  # The dashboard and public API over HTTPS (needed off loopback: session
  # cookies are Secure). Without this block they speak plain HTTP. Either
  # your own certificate (PEM; relative paths from this file; an edited pair
  # is picked up within five minutes, or at restart):
  #   dashboard_tls {
  #     cert_file = "/etc/clawpatrol/dashboard.crt"
  #     key_file  = "/etc/clawpatrol/dashboard.key"
  #   }
  # or one the gateway's CA signs, kept in state_dir (dashboard.crt), for the
  # host of public_url, the dashboard_listen address (every non-loopback
  # address of the machine for 0.0.0.0 / [::]) and loopback; minted again
  # when those names change or 30 days before it expires. Devices pin the
  # CA's SHA-256 (`ca show`): clawpatrol join https://HOST --ca-sha256 FP
  #   dashboard_tls { mint_from_ca = true }
  # or one an ACME CA (Let's Encrypt) issues for public_url's host, over
  # HTTP-01: port 80 must reach this machine; it answers the CA's challenges
  # there and redirects the rest to public_url. Renewed with a third of its
  # lifetime left; until the first arrives, the CA-minted one is served.
  #   dashboard_tls {
  #     acme {
  #       directory = "https://acme-v02.api.letsencrypt.org/directory"
  #       email     = "ops@example.com"
  #       # challenge   = "http-01"      (the default; tls-alpn-01 not yet)
  #       # http_listen = "0.0.0.0:80"   (default: dashboard_listen's host, port 80)
  #       # ca_file     = "root.pem"     (a private ACME CA's root)
  #     }
  #   }

  # Upstream certificates are verified against Bun's roots, the system store
  # (/etc/ssl/certs, what update-ca-certificates manages; re-read when it
  # changes), NODE_EXTRA_CA_CERTS and an endpoint's ca_cert. More roots for
  # every upstream (a TLS-inspecting egress's CA), PEM, relative to this file:
  #   upstream_ca_file = "/etc/clawpatrol/egress-ca.pem"

  # Explicit proxy capture: HTTP CONNECT (SOCKS5 also accepted on listen).
  proxy {
    listen        = "127.0.0.1:3128"
    socks5_listen = "127.0.0.1:1080"
  }

  events {
    jsonl          = "events.jsonl" # relative to state_dir
    retention_days = 30
    # Every event also to ClickHouse, for one view of many gateways (README:
    # "Audit export to ClickHouse"). Rows wait in a spool under state_dir
    # while the server is away; only url is required.
    #   clickhouse {
    #     url          = "https://clickhouse.example:8443"
    #     credential   = clickhouse_password.audit   # credential "clickhouse_password" "audit" { user = "clawpatrol" }
    #     gateway_name = "gw-eu-1"                   # default: the host name
    #     spool_max    = "256MiB"
    #   }
  }

  # Devices over WireGuard. userspace: the gateway speaks WireGuard itself
  # (no root); kernel: it manages the kernel's wg0 and reads a TUN (the appliance).
  wireguard {
    mode         = "userspace"
    listen       = "127.0.0.1:51820"
    subnet_cidr  = "10.77.0.0/16"     # each device gets a /32; the gateway is the first host
    subnet6_cidr = "fd77:7a70::/64"   # optional: IPv6 through the tunnel, a /128 each
  }

  # The DNS-VIP responder: device DNS (any :53) is answered here; names bound
  # to VIPs get their VIP, everything else is forwarded to the upstream.
  dns {
    listen    = "127.0.0.1:5353"
    vip_range = "100.80.0.0/16"
  }
}

defaults {
  verdict       = "allow"        # when no rule matches an intercepted request
  unknown_host  = "passthrough"  # TLS to hosts no endpoint claims: splice untouched
  profile       = profile.default # for proxy clients without a device token
  udp           = "drop"
  inspect_limit = "1MiB"         # request bodies beyond this are not inspected;
                                 # rules that read the body then fail closed
  # Relays never reach the gateway itself: loopback, link-local (the cloud
  # metadata address 169.254.169.254), the host's own addresses, the tunnel
  # address (beyond DNS and clawpatrol.internal) or another device. Name the
  # exceptions here: "IP", "CIDR", "IP:PORT", "[IPv6]:PORT". Devices stay
  # isolated from each other whatever this says.
  # allow_destinations = ["127.0.0.1:5432", "192.168.1.10"]
  # Per-device quotas (the defaults shown): past one, a device's new flow
  # gets a reset or ICMP and an event names the device and the quota.
  # quota_tcp_flows            = 1024
  # quota_udp_flows            = 256
  # quota_dns_connections      = 16
  # quota_new_flows_per_second = 200
  # quota_buffered_bytes       = "64MiB"
  # After TLS termination (intercepted HTTPS), so a few trickling clients
  # cannot hold sessions open: a request head must arrive whole within
  # header_timeout; a kept-alive connection idle for idle_timeout is closed;
  # a request body slower than min_rate bytes/s (after header_timeout of
  # grace; time the upstream makes us wait does not count) is cut off.
  header_timeout = "30s"
  idle_timeout   = "120s"
  min_rate       = "1KiB"        # "0" turns the body rate check off
}

# ---------------------------------------------------------------- endpoints

endpoint "https" "github" {
  hosts      = ["api.github.com", "*.githubusercontent.com"]
  credential = github_token.gh # injected unless a rule names another
  # ports: the TCP ports whose TLS is peeked for these hosts (default [443]);
  # e.g. ports = [443, 8443] for a service on both.
  # ca_cert: a PEM file (relative to this file) of a private CA that signs
  # this upstream, trusted for it beside the gateway's roots (the system
  # store, NODE_EXTRA_CA_CERTS, gateway.upstream_ca_file); e.g.
  #   ca_cert = "internal-ca.pem"
  # trust_gateway_ca = true trusts the gateway's own CA for this upstream
  # (only for a server whose certificate that CA issued, as make run's demo
  # echo server; never for a real host). Default false.
  # Plain http:// to these hosts (port 80 and the ports above) is judged too,
  # with http.scheme == "http"; the credential goes into it only with
  #   allow_plaintext_credentials = true
}

endpoint "https" "anthropic" {
  hosts      = ["api.anthropic.com"]
  credential = anthropic_manual_key.claude
}

# PostgreSQL: the agent connects to db.internal:5432 (its real address, or
# the VIP the DNS-VIP responder hands out) with any user and a placeholder
# password; the gateway authenticates upstream as app_rw with the real one
# (SCRAM-SHA-256; md5 only with allow_md5 = true; cleartext only over TLS).
# sslmode: disable | prefer (the default) | require | verify-full.
endpoint "postgres" "app_db" {
  host       = "db.internal:5432"   # or hosts = ["db-a:5432", "db-b:5432"]
  sslmode    = "verify-full"
  # ca_cert  = "db-ca.pem"          # else the system store
  credential = postgres_password.app_db
}

# Kubernetes: kubectl on the device uses `clawpatrol kubeconfig prod` (this
# server, the gateway's CA, a placeholder token). Rules see k8s.verb,
# k8s.resource, k8s.namespace, k8s.name, k8s.command (exec's argv), ... and
# http.*, e.g. condition = "k8s.verb == 'exec' && k8s.command.exists(c, c == 'rm')";
# Impersonate-* headers are denied unless a rule allows them.
# credential: bearer_token, or k8s_client_cert { certificate = "admin.crt" }
# whose secret is the key (presented over mutual TLS; never on the device).
endpoint "kubernetes" "prod" {
  server     = "https://k8s.internal:6443"
  # ca_cert  = "cluster-ca.pem"     # the cluster's CA; else the system store
  credential = bearer_token.k8s_prod
}
credential "bearer_token" "k8s_prod" {}

# SSH: the agent runs `ssh git.internal ...` or `git clone git@git.internal:...`
# with no key; the gateway is the SSH server it sees (a host key of its own,
# kept across restarts) and logs in upstream as `git` with the real key.
# host_key pins the upstream's key; without it the first key seen is kept
# and a later change refused.
endpoint "ssh" "git" {
  hosts      = ["git.internal"]         # "bastion.internal:2222" for another port
  # host_key = "ssh-ed25519 AAAA..."
  credential = ssh_key.git
}
credential "ssh_key" "git" {            # the secret is the OpenSSH private key
  user = "git"
}

# -------------------------------------------------------------- credentials
# Secret values never live here: set them with
#   clawpatrol-gateway secret set NAME   (stored encrypted)
# or CLAWPATROL_SECRET_<NAME> in the environment, or secret_file.

credential "github_token" "gh" {}

credential "bearer_token" "gh_readonly" {
  # Relative to this file; read when the credential is injected, not at load.
  secret_file = "secrets/gh-readonly.token"
}

credential "anthropic_manual_key" "claude" {
  # What the whole key may cost per UTC day (per = "device" for each device's share).
  budget { daily_usd = 200 }
}

# What LLM tokens cost, USD per million (the API's reported usage times
# these). A model no price matches is charged at the highest price here.
price "claude-sonnet-4*" {
  input_per_mtok       = 3
  output_per_mtok      = 15
  cache_read_per_mtok  = 0.30
  cache_write_per_mtok = 3.75
}
price "claude-opus-4*" {
  input_per_mtok       = 15
  output_per_mtok      = 75
  cache_read_per_mtok  = 1.50
  cache_write_per_mtok = 18.75
}

# The secret is the password (secret set app_db, CLAWPATROL_SECRET_APP_DB, or secret_file).
credential "postgres_password" "app_db" {
  user = "app_rw"
}

# ----------------------------------------------------------------- profiles

profile "default" {
  credentials = [github_token.gh, anthropic_manual_key.claude, postgres_password.app_db, bearer_token.k8s_prod, ssh_key.git]
  # Each device may spend $20 a UTC day on LLM APIs; then 429 until midnight
  # (or over_budget = [dashboard] to ask a person).
  budget { daily_usd = 20 }
}

# Contractors see GitHub only, and only with the read-only token.
profile "contractor" {
  credentials = [bearer_token.gh_readonly]
  endpoints   = [https.github]
}

# ---------------------------------------------------------------- approvers
# `dashboard` (a person on the web dashboard) is built in.

approver "human_approver" "oncall" {
  channel = "slack"
  target  = "#agent-approvals"
  timeout = "5m"
}

# -------------------------------------------------------------------- rules
# Higher priority is evaluated first; ties keep declaration order.
# The first rule whose condition is true decides.

rule "no-deletes" {
  endpoint  = https.github
  priority  = 100
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
  reason    = "deleting on GitHub needs a human"
}

rule "merge-needs-approval" {
  endpoint  = https.github
  priority  = 50
  condition = "http.method == 'PUT' && http.path.matches('^/repos/[^/]+/[^/]+/pulls/[0-9]+/merge$')"
  approve   = [dashboard, human_approver.oncall]
  reason    = "merging a pull request"
}

rule "contractor-readonly" {
  endpoint    = https.github
  priority    = 40
  profiles    = [profile.contractor]
  condition   = "http.method in ['GET', 'HEAD']"
  verdict     = "allow"
  credential  = bearer_token.gh_readonly
}

rule "contractor-no-writes" {
  endpoint = https.github
  priority = 39
  profiles = [profile.contractor]
  verdict  = "deny"
  reason   = "contractors have read-only GitHub access"
}

# Reads the request body: only the small, cheap Haiku model for batch jobs.
rule "no-opus-in-batch" {
  endpoints = [https.anthropic]
  priority  = 10
  condition = <<-CEL
    http.method == 'POST' &&
    http.path == '/v1/messages' &&
    'x-batch-job' in http.headers &&
    string(http.body_json.model).contains('opus')
  CEL
  verdict   = "deny"
  reason    = "batch jobs must not use opus models"
}

# Tried before it is enforced: judged and recorded as "would deny" beside the
# real verdict (dashboard feed, Analytics), never applied. Remove the line to enforce.
rule "no-force-push" {
  endpoint  = https.github
  mode      = "shadow"
  condition = "http.method == 'PATCH' && http.path.contains('/git/refs/') && has(http.body_json.force) && http.body_json.force == true"
  verdict   = "deny"
  reason    = "force-pushes rewrite shared history"
}

# Kept for reference; switch on when needed.
rule "no-admin-api" {
  endpoint  = https.anthropic
  disabled  = true
  condition = "http.path.startsWith('/v1/organizations')"
  verdict   = "deny"
}

# sql rules see sql.verb, sql.tables, sql.functions, sql.statement,
# sql.database and sql.user, per statement (a multi-statement query is
# denied whole when one statement is; writes hidden in CTEs and DO bodies
# count). A statement the parser cannot read leaves the facets unknown, and
# a rule that reads them denies it.
rule "db-read-only" {
  endpoint  = postgres.app_db
  priority  = 10
  condition = "sql.verb in ['insert', 'update', 'delete', 'merge', 'truncate', 'drop', 'alter', 'create', 'grant', 'revoke']"
  verdict   = "deny"
  reason    = "the agent has read-only database access"
}

rule "db-no-pii" {
  endpoint  = postgres.app_db
  priority  = 20
  condition = "sql.tables.exists(t, t == 'public.customers' || t == 'customers')"
  approve   = [dashboard]
  reason    = "reading customer data"
}

# --------------------------------------------------------------- ClickHouse
# Native protocol (clickhouse-client, drivers on :9000): the agent logs in
# with any user and a placeholder password; the gateway swaps in the real
# ones. tls = true: TLS on both legs (the agent's with a leaf from the
# gateway's CA). HTTPS interface: intercepted like https, rules see http.*
# and the SQL (query parameter or body) as sql.*. Both read ClickHouse's
# dialect at the token level: sql.verb, sql.tables (as written), sql.settings,
# sql.format; sql.database follows USE. What the reader does not know leaves
# the facets unknown, and a rule that reads them denies.
endpoint "clickhouse_native" "warehouse" {
  hosts      = ["ch.internal:9000"]
  tls        = false
  credential = clickhouse_password.warehouse
}

endpoint "clickhouse_https" "warehouse_http" {
  hosts      = ["ch.internal"]
  ports      = [8443]
  credential = clickhouse_password.warehouse
}

# The secret is the password (secret set warehouse, or CLAWPATROL_SECRET_WAREHOUSE).
credential "clickhouse_password" "warehouse" {
  user = "analyst"
}

profile "analysts" {
  credentials = [clickhouse_password.warehouse]
}

# One family per rule: clickhouse_native rules are sql, clickhouse_https
# rules are clickhouse_http (http.* and sql.*).
rule "warehouse-read-only" {
  endpoint  = clickhouse_native.warehouse
  condition = "sql.verb in ['insert', 'drop', 'truncate', 'alter', 'create', 'rename', 'optimize', 'kill'] || ('max_threads' in sql.settings && int(sql.settings['max_threads']) > 8)"
  verdict   = "deny"
  reason    = "the agent reads the warehouse, with at most 8 threads"
}

rule "warehouse-http-read-only" {
  endpoint  = clickhouse_https.warehouse_http
  condition = "http.method != 'GET' && sql.verb != 'select'"
  verdict   = "deny"
  reason    = "the agent reads the warehouse"
}

# ------------------------------------------------------------ command gate
# `clawpatrol run --gate npm,rm,git -- claude` (and `gate = ["npm", "rm"]`
# on a profile, which the run reads from the gateway) puts each named command
# behind a shim: the device's warden asks these rules before it runs the real
# binary. exec rules see exec.command, exec.path, exec.argv, exec.args,
# exec.cwd, exec.env, exec.paths (path arguments, absolute, symlinks
# resolved), exec.tty, exec.uid, and exec.prefix([...]). Per rule: timeout
# (the process tree is killed), env_scrub (on top of LD_PRELOAD,
# LD_LIBRARY_PATH, DOCKER_HOST, KUBECONFIG, AWS_*, GOOGLE_APPLICATION_CREDENTIALS,
# ...), allowed_paths, sandbox = "ghost" (only the workspace, default the
# cwd, is writable; $HOME an empty tmpfs); in defaults: exec_timeout (default
# 30m), env_scrub, allowed_paths. A profile that sees no exec endpoint has every
# gated command denied. `clawpatrol-gateway devices kill NAME` is the kill switch;
# `clawpatrol-gateway import clawrden policy.yaml` turns a clawrden policy into rules.
endpoint "exec" "tools" {}

rule "git-push-needs-a-person" {
  endpoint  = exec.tools
  condition = "exec.prefix(['git', 'push'])"
  approve   = [dashboard]
  reason    = "pushing code"
  timeout   = "5m"
  env_scrub = ["GIT_ASKPASS", "SSH_AUTH_SOCK"]
}

rule "no-rm-rf-outside-the-workspace" {
  endpoint      = exec.tools
  condition     = "prefix(exec.argv, ['rm', '-rf']) || prefix(exec.argv, ['rm', '-fr'])"
  verdict       = "allow"
  allowed_paths = ["/home/agent/work"]
  reason        = "rm -rf inside the workspace"
}

rule "npm-install-in-a-ghost" {
  endpoint  = exec.tools
  condition = "exec.prefix(['npm', 'install'])"
  verdict   = "allow"
  sandbox   = "ghost"
  workspace = "/home/agent/work"
}
