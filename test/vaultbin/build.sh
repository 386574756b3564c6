#!/usr/bin/env bash
# Makes sure a vault binary is available for tests and the demo, and prints
# its path. Order: $VAULT_BIN, `vault` on PATH, the cached build in
# .cache/bin/vault (rebuilt when this module changes). A cold build takes
# about ten minutes on two cores; with Go's build cache warm, seconds.
#
# Vault's server code is BUSL-licensed: this binary is a test and demo tool
# only and is never part of the product's packages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -n "${VAULT_BIN:-}" ]; then
  [ -x "$VAULT_BIN" ] || { echo "VAULT_BIN=$VAULT_BIN is not executable" >&2; exit 1; }
  echo "$VAULT_BIN"; exit 0
fi
if command -v vault >/dev/null 2>&1; then command -v vault; exit 0; fi

out="$root/.cache/bin/vault"
if [ -x "$out" ] && [ "$out" -nt "$here/go.mod" ] && [ "$out" -nt "$here/go.sum" ] && [ "$out" -nt "$here/main.go" ]; then
  echo "$out"; exit 0
fi
mkdir -p "$(dirname "$out")"
echo "building vault (hashicorp/vault v1.21.1, -tags minimal) into $out ..." >&2
start=$(date +%s)
(cd "$here" && GOTOOLCHAIN=local go build -tags minimal -trimpath -o "$out.tmp" .)
mv "$out.tmp" "$out"
echo "built vault in $(( $(date +%s) - start ))s" >&2
echo "$out"
