schema_version = 1

defaults {
  profile = "nobody"
}

endpoint "https" "github" {
  hosts      = ["api.github.com"]
  credential = bearer_token.gh
}

credential "github_token" "gh" {}

profile "default" {
  credentials = [github_token.gh, https.github, github_token.missing]
  endpoints   = [https.gitlab, "https.github"]
}

rule "refs" {
  endpoint   = https.gitlab
  profiles   = [profile.default, profile.ghost, default]
  approve    = [dashboard, human_approver.oncall, slack.channel]
  credential = https.github
}

rule "expression" {
  endpoint = "${https.github}-x"
  verdict  = "allow"
}
