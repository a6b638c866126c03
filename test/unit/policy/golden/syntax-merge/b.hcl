# fine

rule "x" {
  verdict = "allow
}
