schema_version = 1

endpoint "https" "a" {
  hosts = ["a.example.com"]
}

credential "anthropic_manual_key" "judge" {}
credential "bearer_token" "tok" {}

approver "llm_approver" "incomplete" {
  timeout = "soon"
}

approver "llm_approver" "bad" {
  model             = "claude-sonnet-4-5"
  credential        = bearer_token.tok
  policy            = ""
  api               = "gemini"
  fail_mode         = "open"
  cache_ttl         = "-1s"
  base_url          = "ftp://example.com"
  require_approvers = 0
  on_timeout        = "ignore"
  temperature       = 0
}

approver "llm_approver" "templated" {
  model      = "claude-sonnet-4-5"
  credential = anthropic_manual_key.judge
  policy     = <<-EOT
    Deny anything that deletes.
  EOT
  message    = "{{method}} {{url}} by {{device}}"
  async      = "yes"
}

approver "llm_approver" "unknown_cred" {
  model      = "m"
  credential = anthropic_manual_key.nope
  policy     = "p"
}

approver "human_approver" "nochannel" {
  target = "#x"
}

approver "human_approver" "pager" {
  channel = "pager"
}

approver "human_approver" "asyncs" {
  channel       = "slack"
  async         = true
  timeout       = "10m"
  async_timeout = "5m"
  message       = "{{host}} }}"
}

approver "human_approver" "noasync" {
  channel       = "discord"
  async_timeout = "2h"
}

rule "remembering" {
  endpoint = https.a
  approve  = [dashboard]
  remember = "forever"
}

rule "remember-without-approve" {
  endpoint = https.a
  verdict  = "allow"
  remember = "10m"
}

approver "llm_approver" "two" {
  model             = "m"
  credential        = anthropic_manual_key.judge
  policy            = "p"
  require_approvers = 2
}
