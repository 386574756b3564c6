#!/usr/bin/env bash
# `make bench`: speed and memory against the real Vault on this machine.
#
# The enrollment benchmark runs twice. First with Vault, the enrollment
# server and the simulated devices sharing every processor: the ratio then
# measures what the server and devices cost in processor time next to the
# minimal client. Then, where there are two processors or more, with Vault
# on processor 0 and everything else on the others, as in production where
# Vault has a machine of its own: the ratio then measures how close the
# server comes to the rate Vault itself can sustain.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
go=${GO:-go}
export VAULT_BIN=${VAULT_BIN:-$("$here/vaultbin/build.sh")}
devices=${BENCH_DEVICES:-1000}
bin="$root/.cache/bench"
mkdir -p "$bin"
"$go" test -c -o "$bin/e2e.test" "$root/test/e2e"
"$go" test -c -o "$bin/attest.test" "$root/enroll-server/attest"
filter() { grep -E '^(bench:|Benchmark|ok|FAIL|---|panic)' || true; }
enrollment() {
  (cd "$root/test/e2e" && "$@" "$bin/e2e.test" -test.run '^$' -test.bench '^BenchmarkEnrollment$' \
    -test.benchtime "${devices}x" -test.count 1) 2>&1 | filter
}

echo "bench: --- Vault, server and devices sharing all $(nproc) processors ---"
enrollment env
cpus=$(nproc)
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then
  echo "bench: --- Vault on processor 0; server and devices on processors 1-$((cpus - 1)) ---"
  enrollment env VAULT_CPUS=0 taskset -c "1-$((cpus - 1))"
fi
(cd "$root/test/e2e" && "$bin/e2e.test" -test.run '^$' -test.bench '^BenchmarkFootprint$' -test.benchtime 1x) 2>&1 | filter
(cd "$root/enroll-server/attest" && "$bin/attest.test" -test.run '^$' -test.bench '^BenchmarkAttestationRoundTrip$' -test.benchtime 100x) 2>&1 | filter
(cd "$root/test/e2e" && "$bin/e2e.test" -test.run '^$' -test.bench '^BenchmarkRefresh$' -test.benchtime "${devices}x" -test.count 1) 2>&1 | filter
# The server's Vault calls by path, one device at a time, each request apart
# from its acknowledgement: first enrollment, refresh, rejoin, re-enrollment
# with a TPM.
(cd "$root/test/e2e" && "$bin/e2e.test" -test.run '^TestVaultCalls(ByPath|TPMReenrollment)$' -test.v -test.count 1) 2>&1 | filter
# Vault stopped 30 s, then sealed 20 s, under devices with 10 s tokens: how
# long after Vault answers the slowest device's sink works again (target 5 s).
(cd "$root/test/e2e" && "$bin/e2e.test" -test.run '^$' -test.bench '^BenchmarkHealAfterVaultAway$' -test.benchtime 1x) 2>&1 | filter
# The fleet console's devices page over 100,000 devices (BENCH_CONSOLE_DEVICES
# to change), server time: bbolt, then PostgreSQL where it is installed
# (target: under 150 ms a page).
"$go" test -c -o "$bin/httpapi.test" "$root/enroll-server/httpapi"
(cd "$root/enroll-server/httpapi" && "$bin/httpapi.test" -test.run '^$' -test.bench '^BenchmarkConsoleDevicesPage$' -test.benchtime 50x) 2>&1 | filter
# Listing a fleet of 1,000,000 devices (BENCH_INVENTORY_DEVICES to change)
# through the admin API's service, 100 a page, by filter: p95 per page in
# bbolt, then PostgreSQL where it is installed (target: under 100 ms).
(cd "$root/enroll-server/httpapi" && "$bin/httpapi.test" -test.run '^$' -test.bench '^BenchmarkInventoryPages$' -test.benchtime 200x) 2>&1 | filter
