//go:build !windows

package cli

import "syscall"

func killSelf() { _ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL) }
