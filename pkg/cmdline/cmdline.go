// Package cmdline is the command-line shape the three binaries share, on
// cobra: a root command with `version`, `help [COMMAND]`, `completion
// SHELL` and "did you mean" suggestions; Go-style single-dash long flags
// (`-fleet acme`) next to `--fleet acme`; `-json` on read commands; and one
// mapping of outcomes to exit codes.
package cmdline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/version"
)

// Exit codes every binary shares; a command may add its own (`service
// status` exits 3 when the service is not running).
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// FlagsNote is the line the roots' help carries about flag spelling.
const FlagsNote = "Flags take one dash or two: -fleet acme is --fleet acme."

// Root returns a binary's root command. Run without a command it prints
// its help on stderr and exits 2; `NAME version` and `NAME --version`
// print the version.
func Root(name, short, long string) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         short,
		Long:          strings.TrimSpace(long) + "\n\n" + FlagsNote,
		SilenceErrors: true, // Execute prints errors, with the command's name
		// A script that gets an error wants the error, not pages of help.
		SilenceUsage: true,
	}
	root.SetUsageTemplate(usageTemplate)
	root.Flags().Bool("version", false, "print the version and exit")
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if v, _ := cmd.Flags().GetBool("version"); v {
			fmt.Fprintln(cmd.OutOrStdout(), version.String(name))
			return nil
		}
		return missingCommand(cmd)
	}
	root.AddCommand(versionCmd(name))
	root.SetHelpCommand(helpCmd())
	return root
}

// helpCmd is cobra's `help [COMMAND]`, except that a topic that names no
// command is a usage error (exit 2) with suggestions, not a zero exit.
func helpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		RunE: func(c *cobra.Command, args []string) error {
			root := c.Root()
			target, rest, err := root.Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				topic := strings.Join(args, " ")
				msg := fmt.Sprintf("unknown help topic %q", topic)
				root.SuggestionsMinimumDistance = max(root.SuggestionsMinimumDistance, 2)
				if len(args) > 0 {
					if s := root.SuggestionsFor(args[len(args)-1]); len(s) > 0 {
						msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
					}
				}
				return &usageError{errors.New(msg)}
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

func versionCmd(name string) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version",
		Args:    cobra.NoArgs,
		Example: "  " + name + " version\n  " + name + " version -json",
	}
	asJSON := JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if *asJSON {
			return WriteJSON(cmd.OutOrStdout(), map[string]string{"name": name, "version": version.Version,
				"commit": version.Commit, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH})
		}
		fmt.Fprintln(cmd.OutOrStdout(), version.String(name))
		return nil
	}
	return cmd
}

// usageTemplate is cobra's, with one usage line: a command that holds
// subcommands runs only to say it needs one (see Group).
const usageTemplate = `Usage:{{if .HasAvailableSubCommands}}
  {{.CommandPath}} <command> [flags]{{else}}
  {{.UseLine}}{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if not .AllChildCommandsHaveGroup}}

Other commands:{{range $cmds}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global Flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} <command> -h" for more about a command.{{end}}
`

// Group makes cmd a command that only holds subcommands: without one it
// prints its help on stderr and exits 2; an unknown one gets suggestions.
func Group(cmd *cobra.Command) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return missingCommand(cmd)
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's default for the root
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
		}
		return &usageError{errors.New(msg)}
	}
	return cmd
}

func missingCommand(cmd *cobra.Command) error {
	cmd.SetOut(cmd.ErrOrStderr())
	_ = cmd.Help()
	return Exit(ExitUsage)
}

// Usagef is a usage error: the command line itself is wrong (exit 2).
func Usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Exit ends the program with code and prints nothing more: the command
// has already said what happened (a broken audit log, a stopped service).
func Exit(code int) error {
	if code == ExitOK {
		return nil
	}
	return exitCode(code)
}

type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit %d", int(c)) }

// runError marks an error a command's RunE returned: everything else
// cobra returns (unknown command or flag, bad arguments, a required flag
// missing) is a usage error.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// Execute runs root with args and returns the process exit code: 0, 1 for
// a failure (printed as "NAME COMMAND: error"), 2 for a usage error, or
// what the command chose with Exit.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetOut(stdout)
	root.SetErr(stderr)
	groupCompletion(root)
	markRunErrors(root)
	root.SetArgs(Normalize(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	var usage *usageError
	var run *runError
	if errors.As(err, &run) && !errors.As(err, &usage) {
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), run.err)
		return ExitFailure
	}
	fmt.Fprintf(stderr, "%s: %s\n", cmd.CommandPath(), strings.TrimRight(err.Error(), "\n"))
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return ExitUsage
}

// markRunErrors wraps every RunE of the tree so that Execute can tell a
// command's failure from cobra's usage errors.
func markRunErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if err := run(c, args); err != nil {
				return &runError{err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markRunErrors(sub)
	}
}

// JSONFlag adds the -json flag of a read command.
func JSONFlag(cmd *cobra.Command) *bool {
	return cmd.Flags().Bool("json", false, "print JSON instead of text")
}

// WriteJSON prints v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// groupCompletion makes cobra's completion command (one subcommand per
// shell) a Group: a shell it has no script for, or none, is a usage error
// with suggestions rather than its help and exit 0. cobra binds the
// scripts' output when it makes the command: call after SetOut.
func groupCompletion(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			Group(c)
		}
	}
}
