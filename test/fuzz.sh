#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME each (default 30s).
# `make test` runs them for a few seconds; `make fuzz` for longer. Go keeps
# what each run learned in its cache, so later runs start from there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go=${GO:-go}
fuzztime=${FUZZTIME:-30s}
fail=0
while IFS=: read -r file _ line; do
  pkg=./$(dirname "$file")
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  echo "fuzz: $pkg $name ($fuzztime)"
  if ! "$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1; then
    cat /tmp/fuzz.$$.log
    fail=1
  fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sed 's|^\./||')
rm -f /tmp/fuzz.$$.log
exit $fail
