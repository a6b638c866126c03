schema_version = 1

rule "broken" {
  endpoint = https.github
  endpoint = https.gitlab
  verdict  = "allow" "deny"
}
