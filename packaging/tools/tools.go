//go:build tools

// Package tools pins the packaging tools this repository builds from the Go
// module proxy, in a module of their own so the product's go.mod stays lean:
// `go build github.com/goreleaser/nfpm/v2/cmd/nfpm` here builds nfpm.
package tools

import _ "github.com/goreleaser/nfpm/v2/cmd/nfpm"
