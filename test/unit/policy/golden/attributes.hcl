schema_version = 1

gateway {
  state_dir = "../.state"
  listen    = "0.0.0.0:80"
  proxy {
    port = 3128
  }
  events {
    retention_days = 0
  }
  tls {}
}

defaults {
  verdict       = allow
  unknown_host  = "block"
  inspect_limit = "lots"
}

endpoint "https" "github" {
  host = "api.github.com"
}

endpoint "https" "gitlab" {
  hosts = "gitlab.com"
  ports = [443, 70000]
  allow_plaintext_credentials = "yes"
}

endpoint "https" "bad_hosts" {
  hosts = ["ok.example.com", "not a host", "*.Wild.Example.com", "a*b.example.com"]
}

credential "header_token" "h" {
  prefix = "Token "
}

credential "cookie_token" "c" {
  cookie = 42
}

credential "bearer_token" "b" {
  header = "X-Nope"
}

rule "typed" {
  endpoint = https.bad_hosts
  priority = "high"
  disabled = "yes"
  verdict  = "maybe"
  reasons  = "typo"
}
