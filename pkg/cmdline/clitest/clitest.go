// Package clitest holds the checks every binary's command line passes:
// help for every command, a suggestion for a typo, completion scripts.
package clitest

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Run is a binary's whole program, as its cli package exports it.
type Run func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// HelpForEveryCommand walks the command tree root builds and checks that
// `help CMD...`, `CMD... -h` and `CMD... --help` print that command's own
// help on stdout with exit 0, and that every command has a short line and
// every runnable leaf an example.
func HelpForEveryCommand(t *testing.T, root func() *cobra.Command, run Run) {
	t.Helper()
	var walk func(path []string, cmd *cobra.Command)
	walk = func(path []string, cmd *cobra.Command) {
		if cmd.Hidden {
			return
		}
		for _, sub := range cmd.Commands() {
			walk(append(append([]string(nil), path...), sub.Name()), sub)
		}
		if len(path) == 0 {
			return
		}
		name := strings.Join(path, " ")
		t.Run(name, func(t *testing.T) {
			if cmd.Short == "" {
				t.Errorf("%s has no short help", name)
			}
			if !cmd.HasSubCommands() && cmd.Example == "" && path[0] != "help" && path[0] != "completion" {
				t.Errorf("%s has no example", name)
			}
			for _, args := range [][]string{
				append([]string{"help"}, path...),
				append(append([]string(nil), path...), "-h"),
				append(append([]string(nil), path...), "--help"),
			} {
				var out, errOut bytes.Buffer
				code := run(context.Background(), args, &out, &errOut)
				want := "Usage:\n  " + cmd.CommandPath()
				if code != 0 || !strings.Contains(out.String(), want) || errOut.Len() != 0 {
					t.Errorf("%q: exit %d, want 0 and %q on stdout\nstdout: %s\nstderr: %s", args, code, want, out.String(), errOut.String())
				}
			}
		})
	}
	r := root()
	r.InitDefaultHelpCmd()
	r.InitDefaultCompletionCmd()
	walk(nil, r)
}

// Suggests checks that a typo exits 2 and names the command meant.
func Suggests(t *testing.T, run Run, args []string, meant string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "Did you mean this?\n") || !strings.Contains(errOut.String(), "\t"+meant+"\n") {
		t.Errorf("%q: exit %d (want 2), stderr %q (want a suggestion of %s)", args, code, errOut.String(), meant)
	}
}

// CompletionScripts checks that `completion SHELL` prints a script for
// each shell cobra supports.
func CompletionScripts(t *testing.T, run Run, name string) {
	t.Helper()
	for shell, marker := range map[string]string{
		"bash":       "complete -o default -F __start_" + name,
		"zsh":        "#compdef " + name,
		"fish":       "complete -c " + name,
		"powershell": "Register-ArgumentCompleter -CommandName '" + name + "'",
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"completion", shell}, &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), marker) {
			t.Errorf("completion %s: exit %d, want 0 and %q in\n%.400s\nstderr: %s", shell, code, marker, out.String(), errOut.String())
		}
	}
}
