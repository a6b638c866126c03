# A second file: references resolve across files, names must stay unique.
endpoint "https" "github" {
  hosts = ["github.com"]
}

rule "no-deletes" {
  endpoint = https.github
  verdict  = "deny"
}

rule "team-allow" {
  endpoint = https.gitlab
  verdict  = "allow"
}
