schema_version = 1

endpoint "https" "a" {
  hosts = ["a.example.com"
}
