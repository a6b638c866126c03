schema_version = 1

endpoint "https" "api" {
  hosts = ["api.example.com"]
}

credential "postgres_password" "app" {
  user = "app_rw"
}

credential "bearer_token" "api" {
}

endpoint "postgres" "db" {
  host       = "db.internal:5432"
  credential = postgres_password.app
}

endpoint "postgres" "bad_sslmode" {
  host    = "db2.internal:5432"
  sslmode = "verify-ca"
}

endpoint "postgres" "wrong_credential" {
  host       = "db3.internal:5432"
  credential = bearer_token.api
}

rule "http-reads-sql" {
  endpoint  = https.api
  condition = "sql.verb == 'delete'"
  verdict   = "deny"
}

rule "sql-reads-http" {
  endpoint  = postgres.db
  condition = "http.method == 'POST' || sql.verb == 'drop'"
  verdict   = "deny"
}

rule "mixed-endpoints" {
  endpoints = [https.api, postgres.db]
  condition = "true"
  verdict   = "deny"
}

rule "sql-in-a-string-is-fine" {
  endpoint  = postgres.db
  condition = "sql.statement.contains('http.method') && sql.tables.exists(t, t == 'public.users')"
  verdict   = "deny"
}
