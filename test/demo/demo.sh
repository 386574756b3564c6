#!/usr/bin/env bash
# First-boot enrollment of one device against a local Vault dev server.
#
# It starts Vault, sets up a demo fleet, starts enroll-server with a fresh
# development CA, enrolls one device with enroll-client, and shows what an
# operator wants to see. Everything it starts is stopped on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN_DIR:-$root/bin}
vault_bin=${VAULT_BIN:-$(command -v vault || echo "$root/.cache/bin/vault")}
work=$(mktemp -d "${TMPDIR:-/tmp}/edge-enroll-demo.XXXXXX")
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# The device knows nothing of the admin's Vault session exported below for
# enrollctl (and would say it ignores it): run it without.
client() { env -u VAULT_ADDR -u VAULT_TOKEN -u VAULT_BIN "$bin/enroll-client" "$@"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url what
  for _ in $(seq 1 200); do
    if curl -fsS --cacert "$work/tls/ca.crt" -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$2 did not come up; its log:" >&2
  return 1
}

vault_port=$(free_port)
while ! python3 -c "import socket; socket.socket().bind(('127.0.0.1', $vault_port+1))" 2>/dev/null; do vault_port=$(free_port); done
server_port=$(free_port)
export VAULT_ADDR="http://127.0.0.1:$vault_port" VAULT_TOKEN=demo-root

say "Starting a Vault dev server at $VAULT_ADDR (in memory, gone when the demo ends)"
HOME="$work" "$vault_bin" server -dev -dev-listen-address="127.0.0.1:$vault_port" \
  -dev-root-token-id="$VAULT_TOKEN" -dev-no-store-token -log-level=warn >"$work/vault.log" 2>&1 &
pids+=($!)
mkdir -p "$work/tls"
wait_http "$VAULT_ADDR/v1/sys/health" vault || { cat "$work/vault.log"; exit 1; }

say "Setting up fleet 'demo' in Vault (run twice: the second run changes nothing)"
"$bin/enrollctl" setup -fleet demo
"$bin/enrollctl" setup -fleet demo | tail -1

say "Writing the server's Vault credentials and a development CA"
"$bin/enrollctl" server-credentials -out "$work/server/vault-credentials.json"
"$bin/enrollctl" dev-ca -dir "$work/tls" -hosts localhost,127.0.0.1

say "Writing a secret at the device's own path (and one for another device)"
"$vault_bin" kv put -mount=edge-kv fleets/demo/devices/sensor-0001/config greeting="hello, sensor-0001" >/dev/null
"$vault_bin" kv put -mount=edge-kv fleets/demo/devices/sensor-0002/config greeting="not for sensor-0001" >/dev/null

cat >"$work/server/config.yaml" <<YAML
listen: 127.0.0.1:$server_port
tls:
  cert_file: $work/tls/server.crt
  key_file: $work/tls/server.key
vault:
  address: $VAULT_ADDR
  credentials_file: $work/server/vault-credentials.json
state_path: $work/server/state.db
log:
  level: info
  format: text
fleets:
  - name: demo
YAML

say "Starting enroll-server on https://localhost:$server_port"
"$bin/enroll-server" run -config "$work/server/config.yaml" >"$work/server.log" 2>&1 &
pids+=($!)
wait_http "https://localhost:$server_port/readyz" enroll-server || { cat "$work/server.log"; exit 1; }

say "Writing the device image's bootstrap bundle (checked against the running server and Vault)"
# The dev server speaks plain http on loopback: -dev-http-vault says that is meant.
"$bin/enrollctl" bundle -fleet demo -server-url "https://localhost:$server_port" \
  -server-ca "$work/tls/ca.crt" -dev-http-vault -out "$work/device/bundle.json"
ls -l "$work/device/bundle.json" "$work/server/vault-credentials.json" | awk '{print $1, $NF}'

cat >"$work/device/config.yaml" <<YAML
device_id: sensor-0001
bundle_path: $work/device/bundle.json
state_path: $work/device/state.db
sinks:
  - path: $work/device/token
YAML

say "First boot of device sensor-0001"
client run -once -config "$work/device/config.yaml"

say "The device's state"
# The demo ran the client once, not as a daemon: status says so and exits 3
# (documented: no daemon running), which is expected here.
rc=0
client status -config "$work/device/config.yaml" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
  echo "enroll-client status failed (exit $rc)" >&2; exit 1
fi

say "Its token works, as its own identity: it reads its own secret"
export VAULT_TOKEN=$(cat "$work/device/token")
"$vault_bin" token lookup -format=json | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print("role:", d["meta"]["role_name"], "| policies:", ",".join(d["policies"]), "| entity:", d["entity_id"])'
"$vault_bin" kv get -mount=edge-kv -field=greeting fleets/demo/devices/sensor-0001/config

say "...and is refused another device's secret"
if "$vault_bin" kv get -mount=edge-kv fleets/demo/devices/sensor-0002/config >/dev/null 2>"$work/denied.txt"; then
  echo "UNEXPECTED: the device could read another device's secret" >&2; exit 1
fi
grep -o 'permission denied' "$work/denied.txt" | head -1

say "The device in the server's inventory (admin API, authorised by the admin's own Vault token)"
VAULT_TOKEN=demo-root "$bin/enrollctl" devices -server-url "https://localhost:$server_port" -server-ca "$work/tls/ca.crt"

say "Demo complete: sensor-0001 enrolled with its own Vault identity"
