package cmdline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/cmdline"
)

// tool is a small program in the binaries' shape: a read command with
// flags and -json, a command taking operands, and a group.
func tool() *cobra.Command {
	root := cmdline.Root("tool", "a tool", "Tool does things.")
	greet := &cobra.Command{Use: "greet NAME...", Short: "greet people", Args: cobra.MinimumNArgs(1), Example: "  tool greet -loud ann"}
	loud := greet.Flags().Bool("loud", false, "shout")
	greeting := greet.Flags().String("greeting", "hello", "what to say")
	asJSON := cmdline.JSONFlag(greet)
	greet.RunE = func(cmd *cobra.Command, args []string) error {
		if *asJSON {
			return cmdline.WriteJSON(cmd.OutOrStdout(), map[string]any{"greeting": *greeting, "names": args, "loud": *loud})
		}
		if args[0] == "nobody" {
			return errors.New("nobody is there")
		}
		msg := *greeting + ", " + strings.Join(args, " ")
		if *loud {
			msg = strings.ToUpper(msg)
		}
		cmd.Println(msg)
		return nil
	}
	group := cmdline.Group(&cobra.Command{Use: "db", Short: "database commands"})
	group.AddCommand(&cobra.Command{Use: "check", Short: "check it", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return cmdline.Exit(3) }})
	root.AddCommand(greet, group)
	return root
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cmdline.Execute(context.Background(), tool(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitCodesAndMessages(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		code      int
		out, err  string
		notStdout bool
	}{
		{args: []string{"greet", "-loud", "ann"}, code: 0, out: "HELLO, ANN\n"},
		{args: []string{"greet", "--greeting", "hi", "ann", "-greeting=hey"}, code: 0, out: "hey, ann\n"},
		{args: []string{"greet", "nobody"}, code: 1, err: "tool greet: nobody is there\n"},
		{args: []string{"greet"}, code: 2, err: "tool greet: requires at least 1 arg(s)"},
		{args: []string{"greet", "-lod", "ann"}, code: 2, err: "unknown flag: --lod"},
		{args: []string{"gret"}, code: 2, err: "Did you mean this?\n\tgreet"},
		{args: []string{"db", "chek"}, code: 2, err: "Did you mean this?\n\tcheck"},
		{args: []string{"db", "check"}, code: 3},
		{args: []string{"db"}, code: 2, err: "check"},
		{args: nil, code: 2, err: "Commands:"},
		{args: []string{"version"}, code: 0, out: "tool dev"},
		{args: []string{"-version"}, code: 0, out: "tool dev"},
		{args: []string{"help", "greet"}, code: 0, out: "tool greet -loud ann"},
		{args: []string{"help", "db", "check"}, code: 0, out: "Usage:"},
		{args: []string{"help"}, code: 0, out: "Commands:"},
		{args: []string{"help", "gret"}, code: 2, err: "unknown help topic \"gret\"\n\nDid you mean this?\n\tgreet"},
		{args: []string{"help", "db", "chek"}, code: 2, err: "unknown help topic"},
		{args: []string{"greet", "-h"}, code: 0, out: "--greeting string"},
		{args: []string{"greet", "-help"}, code: 0, out: "--greeting string"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) {
				t.Fatalf("exit %d (want %d)\nstdout: %q (want %q)\nstderr: %q (want %q)", code, tc.code, out, tc.out, errOut, tc.err)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	root := tool()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"greet", "-loud", "-greeting", "hi", "ann"}, []string{"greet", "--loud", "--greeting", "hi", "ann"}},
		// A flag's value is never rewritten, whatever it looks like.
		{[]string{"greet", "-greeting", "-loud", "ann"}, []string{"greet", "--greeting", "-loud", "ann"}},
		{[]string{"greet", "--greeting", "-loud", "ann"}, []string{"greet", "--greeting", "-loud", "ann"}},
		{[]string{"greet", "-greeting=-x", "-json", "ann"}, []string{"greet", "--greeting=-x", "--json", "ann"}},
		// Operands and what follows -- stay.
		{[]string{"greet", "ann", "-loud", "--", "-loud"}, []string{"greet", "ann", "--loud", "--", "-loud"}},
		// Shorthands stay; an unknown long flag is named as such.
		{[]string{"greet", "-h"}, []string{"greet", "-h"}},
		{[]string{"greet", "-lod"}, []string{"greet", "--lod"}},
		{[]string{"greet", "-hx"}, []string{"greet", "-hx"}},
		// Nested commands; an operand named like a command is an operand.
		{[]string{"db", "check", "-help"}, []string{"db", "check", "--help"}},
		{[]string{"greet", "db", "-loud"}, []string{"greet", "db", "--loud"}},
		{[]string{"-version"}, []string{"--version"}},
		// Shell completion requests are cobra's own.
		{[]string{"__complete", "greet", "-lo"}, []string{"__complete", "greet", "-lo"}},
	} {
		if got := cmdline.Normalize(root, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// -json prints JSON, parsed back here.
func TestJSON(t *testing.T) {
	code, out, _ := run("greet", "-json", "ann", "bob")
	var greet struct{ Names []string }
	if code != 0 || json.Unmarshal([]byte(out), &greet) != nil || len(greet.Names) != 2 {
		t.Fatalf("greet -json: %d %s", code, out)
	}
	code, out, _ = run("version", "-json")
	var v struct{ Name, Version string }
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Name != "tool" || v.Version == "" {
		t.Fatalf("version -json: %d %s", code, out)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := run("completion", shell)
		if code != 0 || !strings.Contains(out, "tool") || len(out) < 500 {
			t.Errorf("completion %s: %d %q %s", shell, code, out, errOut)
		}
	}
	// A shell it has no script for is a usage error, with the near ones.
	if code, out, errOut := run("completion", "bsh"); code != cmdline.ExitUsage || out != "" || !strings.Contains(errOut, "bash") {
		t.Errorf("completion bsh: %d %q %s; want exit 2 suggesting bash", code, out, errOut)
	}
	if code, _, _ := run("completion"); code != cmdline.ExitUsage {
		t.Errorf("completion without a shell: exit %d, want 2", code)
	}
	// What the scripts call: the binary itself completes commands and flags.
	for args, want := range map[string]string{"gr": "greet\tgreet people", "greet --lo": "--loud\tshout", "db ch": "check\tcheck it"} {
		code, out, _ := run(append([]string{"__complete"}, strings.Fields(args)...)...)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("__complete %s: %d %q, want %q", args, code, out, want)
		}
	}
}
