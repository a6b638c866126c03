schema_version = 1
colour = "blue"

firewall "main" {
  open = true
}

endpoint "https" {
  hosts = ["a.example.com"]
}

endpoint "mysql" "db" {
  hosts = ["db.internal"]
}

credential "api_key" "k" {}

approver "pager" "oncall" {}

profile {
  credentials = []
}
