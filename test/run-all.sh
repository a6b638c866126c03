#!/usr/bin/env bash
# Runs every suite with bun's test runner and ends with one plain line
# `N passed, N failed` (`, N skipped` when some were skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
./node_modules/.bin/bun test --timeout 60000 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
pass=$(grep -Eo '^ *[0-9]+ pass$' "$out" | tail -1 | grep -Eo '[0-9]+' || echo 0)
fail=$(grep -Eo '^ *[0-9]+ fail$' "$out" | tail -1 | grep -Eo '[0-9]+' || echo 0)
skip=$(grep -Eo '^ *[0-9]+ skip$' "$out" | tail -1 | grep -Eo '[0-9]+' || echo 0)
rm -f "$out"
line="$pass passed, $fail failed"
[ "$skip" != "0" ] && line="$line, $skip skipped"
echo "$line"
exit "$status"
