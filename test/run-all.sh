#!/usr/bin/env bash
# Runs every suite and ends with one plain line `N passed, N failed`
# (`, N skipped` when some were skipped):
#   1. the type check (one test: it passes or fails)
#   2. bun's test runner over test/ (unit and integration)
#   3. the appliance: systemd unit checks, `make image` and the QEMU boot test
#      (root only; in CI it must run). CLAWPATROL_SKIP_IMAGE=1 leaves it out
#      for a quick local run, and says so in the count.
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0
fail=0
skip=0
status=0
count() { # the number after a word in bun's summary, e.g. "  12 pass"
  grep -Eo "^ *[0-9]+ $1\$" "$2" | tail -1 | grep -Eo '[0-9]+' || echo 0
}

echo "== typecheck"
if ./node_modules/.bin/tsc --noEmit -p .; then pass=$((pass + 1)); else fail=$((fail + 1)); status=1; echo "typecheck: FAIL"; fi

echo "== bun test"
out=$(mktemp)
./node_modules/.bin/bun test --timeout 120000 "$@" 2>&1 | tee "$out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
pass=$((pass + $(count pass "$out")))
fail=$((fail + $(count fail "$out")))
skip=$((skip + $(count skip "$out")))
# The names of failed tests, kept to be printed again beside the summary:
# a CI log is often read from its tail.
failed_names=$(grep -a '^(fail)' "$out" | awk '!seen[$0]++' || true)
rm -f "$out"

echo "== appliance image"
if [ "$#" -gt 0 ]; then
  echo "image: not run (a subset of tests was asked for)"
elif [ "${CLAWPATROL_SKIP_IMAGE:-}" = "1" ] && [ "${CI:-}" != "true" ]; then
  echo "image: skipped (CLAWPATROL_SKIP_IMAGE=1)"
  skip=$((skip + 2))
elif [ "$(id -u)" -ne 0 ] && [ "${CI:-}" != "true" ]; then
  echo "image: skipped (needs root)"
  skip=$((skip + 2))
else
  if bash test/image/units.test.sh; then pass=$((pass + 1)); else fail=$((fail + 1)); status=1; fi
  log=$(mktemp)
  if make -s image && bash test/image/boot-test.sh 2>&1 | tee "$log"; then :; else status=1; fi
  result=$(grep -ao 'RESULT [A-Z]* passed=[0-9]* failed=[0-9]* skipped=[0-9]*' "$log" | tail -1)
  if [ -n "$result" ]; then
    pass=$((pass + $(echo "$result" | sed 's/.*passed=\([0-9]*\).*/\1/')))
    fail=$((fail + $(echo "$result" | sed 's/.*failed=\([0-9]*\).*/\1/')))
    skip=$((skip + $(echo "$result" | sed 's/.*skipped=\([0-9]*\).*/\1/')))
  else
    echo "image: the boot test gave no result"
    fail=$((fail + 1))
    status=1
  fi
  rm -f "$log"
fi

if [ -n "${failed_names:-}" ]; then
  echo "== failed tests"
  echo "$failed_names"
fi
line="$pass passed, $fail failed"
[ "$skip" != "0" ] && line="$line, $skip skipped"
echo "$line"
exit "$status"
