schema_version = 1

endpoint "https" "missing" {
  hosts   = ["a.example.com"]
  ca_cert = "certs/missing.pem"
}

endpoint "https" "not_pem" {
  hosts   = ["b.example.com"]
  ca_cert = "ca-cert.hcl"
}
