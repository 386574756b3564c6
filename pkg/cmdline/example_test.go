package cmdline_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/edge-enroll/enroll/pkg/cmdline"
)

func ExampleProgram_Run() {
	p := cmdline.Program{
		Name:  "greeter",
		Usage: "usage: greeter hello NAME\n",
		Commands: map[string]cmdline.Command{
			"hello": func(_ context.Context, args []string, stdout, _ io.Writer) int {
				fmt.Fprintln(stdout, "hello,", args[0])
				return 0
			},
		},
	}
	code := p.Run(context.Background(), []string{"hello", "device"}, os.Stdout, os.Stderr)
	fmt.Println("exit", code)
	code = p.Run(context.Background(), []string{"goodbye"}, io.Discard, io.Discard)
	fmt.Println("exit", code)
	// Output:
	// hello, device
	// exit 0
	// exit 2
}
