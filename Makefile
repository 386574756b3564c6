# edge-enroll: enrollment client and server for edge devices on Vault.
#
#   make demo    a full first-boot enrollment against a local Vault
#   make test    every test, against a real Vault dev server
#   make build   the three binaries into ./bin
#   make packages  client .deb/.rpm (amd64, arm64, armv7) and signed .msi

SHELL   := /bin/bash
# The product builds with this Go release (fetched by the go command on
# first use); the test-only Vault binary builds with the machine's Go.
export GOTOOLCHAIN := go1.27.3
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/edge-enroll/enroll/pkg/version.Version=$(VERSION) \
           -X github.com/edge-enroll/enroll/pkg/version.Commit=$(COMMIT)
CMDS    := enroll-server enroll-client enrollctl

.PHONY: all build vault demo test fuzz bench storm lint packages test-packages clean-bin

all: build

build:
	@mkdir -p $(BIN)
	@for c in $(CMDS); do $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$c ./cmd/$$c || exit 1; done

# A real Vault for tests and the demo (never shipped).
vault:
	@test/vaultbin/build.sh >/dev/null

demo: build vault
	@VAULT_BIN=$$(test/vaultbin/build.sh) BIN_DIR=$(CURDIR)/$(BIN) test/demo/demo.sh

test: vault
	@VAULT_BIN=$$(test/vaultbin/build.sh) $(GO) test -race -timeout 30m ./...
	@FUZZTIME=$${FUZZTIME:-3s} GO=$(GO) test/fuzz.sh

# Every fuzz target for FUZZTIME each (default 2m).
fuzz:
	@FUZZTIME=$${FUZZTIME:-2m} GO=$(GO) test/fuzz.sh

# Cross-built, signed client packages in ./dist (.deb, .rpm, .msi).
packages:
	@packaging/build.sh

# Checks the packages with dpkg, rpm, lintian, msiinfo, osslsigncode, qemu.
test-packages: packages
	@packaging/check.sh

# Speed and memory, measured against the real Vault on this machine: the
# enrollment rate through the server, the same Vault calls made directly,
# their ratio, processor time and latency (with every process sharing the
# processors, then with Vault on a processor of its own); client idle RSS
# and size, server RSS under load; a TPM attestation round trip (challenge,
# activate, quote, verify) against the in-process simulator; the fleet
# console's devices page over 100,000 devices (bbolt and PostgreSQL).
bench: vault
	@GO=$(GO) test/bench.sh

# A boot storm of 10,000 devices (STORM_DEVICES to change) against one
# server and the real Vault; minutes, so not part of `make test`. Every
# device holds connections at both ends in this one process: raise the
# open-file limit where allowed.
storm: vault
	@set -o pipefail; ulimit -n 1048576 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	VAULT_BIN=$$(test/vaultbin/build.sh) STORM_DEVICES=$${STORM_DEVICES:-10000} \
		$(GO) test -run '^TestStorm$$' -count=1 -timeout 60m -v ./test/e2e/ 2>&1 | grep -v '^{'
	@# The same against a three-node Raft Vault whose active node stops
	@# mid-storm: the pause is printed.
	@set -o pipefail; VAULT_BIN=$$(test/vaultbin/build.sh) STORM_CLUSTER_DEVICES=$${STORM_CLUSTER_DEVICES:-1000} \
		$(GO) test -run '^TestStormThroughVaultFailover$$' -count=1 -timeout 30m -v ./test/e2e/ 2>&1 | grep -v '^{'

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	GO=$(GO) test/vulncheck.sh

clean-bin:
	rm -rf $(BIN)
