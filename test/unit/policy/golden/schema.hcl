endpoint "https" "a" {
  hosts = ["a.example.com"]
}
