schema_version = 1

endpoint "https" "a" {
  hosts = ["a.example.com"]
}

endpoint "https" "b" {
  hosts = ["*.b.example.com"]
}

credential "bearer_token" "t" {}

rule "both-verdicts" {
  endpoint = https.a
  verdict  = "allow"
  approve  = [dashboard]
}

rule "no-verdict" {
  endpoint = https.a
}

rule "both-endpoint-forms" {
  endpoint  = https.a
  endpoints = [https.b]
  verdict   = "deny"
}

rule "no-endpoint" {
  verdict = "deny"
}

rule "deny-with-credential" {
  endpoints  = [https.a, https.b]
  verdict    = "deny"
  credential = bearer_token.t
}

rule "empty-lists" {
  endpoints = []
  approve   = []
}
