schema_version = 1

endpoint "https" "github" {
  hosts = ["api.github.com"]
}

rule "no-deletes" {
  endpoint  = https.github
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
}
