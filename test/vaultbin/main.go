// Command vault builds HashiCorp Vault from its published module so that the
// enrollment tests and the demo can run a real Vault dev server.
//
// This module is kept apart from the product's go.mod on purpose: Vault's
// server code is a test and demo tool only and is never linked into, or
// shipped with, enroll-client or enroll-server.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
