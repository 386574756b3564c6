package cmdline

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Normalize rewrites the Go-style single-dash long flags of the command
// args name (`-fleet acme`, `-json`, `-config=FILE`) to the double dash
// cobra's flag parser reads as long flags; without it `-fleet` would be
// the shorthands f, l, e, e, t. Scripts, unit files and packages written
// for the Go flag package keep working. Values of flags, everything after
// `--`, and shell-completion requests are left as they are.
func Normalize(root *cobra.Command, args []string) []string {
	if len(args) > 0 && strings.HasPrefix(args[0], cobra.ShellCompRequestCmd) {
		return args
	}
	out := slices.Clone(args)
	cmd, positional := root, false
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			// The command's path comes before its first operand.
			if !positional {
				if sub := subcommand(cmd, a); sub != nil {
					cmd = sub
					continue
				}
			}
			positional = true
			continue
		}
		long := strings.HasPrefix(a, "--")
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookup(cmd, name)
		if !long && len(name) > 1 && (f != nil || shorthand(cmd, name[:1]) == nil) {
			// A known long flag, or no shorthand it could be: then
			// cobra's error names the flag as typed ("unknown flag:
			// --flet") instead of its letters.
			out[i] = "-" + a
			long = true
		}
		if long && f != nil && f.NoOptDefVal == "" && !hasValue {
			i++ // the flag's value, whatever it looks like
		}
	}
	return out
}

func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

func lookup(cmd *cobra.Command, name string) *pflag.Flag {
	cmd.InitDefaultHelpFlag()
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

func shorthand(cmd *cobra.Command, c string) *pflag.Flag {
	cmd.InitDefaultHelpFlag()
	if f := cmd.Flags().ShorthandLookup(c); f != nil {
		return f
	}
	return cmd.InheritedFlags().ShorthandLookup(c)
}
