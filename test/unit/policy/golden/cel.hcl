schema_version = 1

endpoint "https" "a" {
  hosts = ["a.example.com"]
}

rule "parse-error" {
  endpoint  = https.a
  condition = "http.method == "
  verdict   = "deny"
}

rule "type-error" {
  endpoint  = https.a
  condition = "http.method == 1"
  verdict   = "deny"
}

rule "not-bool" {
  endpoint  = https.a
  condition = "http.path"
  verdict   = "deny"
}

rule "unknown-variable" {
  endpoint  = https.a
  condition = "request.method == 'GET'"
  verdict   = "deny"
}

rule "heredoc-error" {
  endpoint  = https.a
  condition = <<-CEL
    http.method == 'POST' &&
    http.headers.size() > 'three'
  CEL
  verdict   = "deny"
}

rule "fine" {
  endpoint  = https.a
  condition = "device.profile == 'default' && http.query['a'] == 'b'"
  verdict   = "deny"
}
