#!/usr/bin/env bash
# govulncheck against a vulnerability database built locally from the
# golang.org/x/vulndb module (the public database cannot be reached from
# every build machine). The database is built once per vulndb version into
# the git-ignored .cache/vulndb. Exits non-zero when the code calls a
# known-vulnerable symbol.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
go=${GO:-go}
vulndb=golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
govulncheck=golang.org/x/vuln/cmd/govulncheck@v1.9.0
db="$root/.cache/vulndb/${vulndb##*@}"
if [ ! -s "$db/index/db.json" ]; then
  src=$(GOFLAGS=-mod=mod "$go" mod download -json "$vulndb" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$db.tmp" && mkdir -p "$(dirname "$db")"
  GOFLAGS=-mod=mod "$go" run "${vulndb%@*}/cmd/indexdb@${vulndb##*@}" -vulns "$src/data/osv" -out "$db.tmp"
  mv "$db.tmp" "$db"
fi
# Findings listed in test/vulncheck-accepted.txt (each with its reason)
# do not fail the check; any other does.
set +e
out=$("$go" run "$govulncheck" -db "file://$db" ./... 2>&1)
rc=$?
set -e
printf '%s\n' "$out"
[ "$rc" -eq 0 ] && exit 0
# (go run exits 1 whatever govulncheck's status: tell findings by the
# report's wording.)
grep -q '^Your code is affected by' <<<"$out" || exit "$rc"
found=$(grep -oE '^Vulnerability #[0-9]+: GO-[0-9]+-[0-9]+' <<<"$out" | sed 's/.*: //' | sort -u)
accepted=$(grep -vE '^\s*(#|$)' test/vulncheck-accepted.txt | sort -u)
unaccepted=$(comm -23 <(printf '%s\n' "$found") <(printf '%s\n' "$accepted"))
if [ -z "$found" ] || [ -n "$unaccepted" ]; then
  echo "vulncheck: not accepted: ${unaccepted:-(unparsed output)}" >&2
  exit 1
fi
echo "vulncheck: only accepted findings ($(tr '\n' ' ' <<<"$found")); see test/vulncheck-accepted.txt"
