package cmdline_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/pkg/cmdline"
)

// help COMMAND prints that command's own usage, on stdout; help alone the
// program's.
func TestHelpCommand(t *testing.T) {
	p := cmdline.Program{Name: "tool", Usage: "usage: tool <command>\n", Commands: map[string]cmdline.Command{
		"greet": func(_ context.Context, args []string, _, stderr io.Writer) int {
			fs := flag.NewFlagSet("greet", flag.ContinueOnError)
			fs.SetOutput(stderr)
			fs.String("name", "", "who to greet")
			if fs.Parse(args) != nil {
				return 2
			}
			return 0
		},
	}}
	var out bytes.Buffer
	if code := p.Run(context.Background(), []string{"help", "greet"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "-name") {
		t.Fatalf("help greet: %d %q", code, out.String())
	}
	out.Reset()
	if code := p.Run(context.Background(), []string{"help"}, &out, io.Discard); code != 0 || out.String() != p.Usage {
		t.Fatalf("help: %d %q", code, out.String())
	}
}
