schema_version = 1

gateway {
  state_dir = "/tmp/x"
}

gateway {
  state_dir = "/tmp/y"
}

endpoint "https" "a" {
  hosts = ["a.example.com"]
}

endpoint "https" "a" {
  hosts = ["b.example.com"]
}

credential "bearer_token" "tok" {}
credential "github_token" "tok" {}

profile "p" {}
profile "p" {}

rule "r" {
  endpoint = https.a
  verdict  = "allow"
}

rule "r" {
  endpoint = https.a
  verdict  = "deny"
}
