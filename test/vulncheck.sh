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
"$go" run "$govulncheck" -db "file://$db" ./...
