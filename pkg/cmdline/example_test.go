package cmdline_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/pkg/cmdline"
)

func ExampleExecute() {
	root := cmdline.Root("greeter", "greets devices", "Greeter greets devices.")
	hello := &cobra.Command{Use: "hello NAME", Short: "greet a device", Args: cobra.ExactArgs(1)}
	greeting := hello.Flags().String("greeting", "hello", "what to say")
	hello.RunE = func(cmd *cobra.Command, args []string) error {
		fmt.Fprintf(cmd.OutOrStdout(), "%s, %s\n", *greeting, args[0])
		return nil
	}
	root.AddCommand(hello)

	code := cmdline.Execute(context.Background(), root, []string{"hello", "-greeting", "hi", "device"}, os.Stdout, os.Stderr)
	fmt.Println("exit", code)
	code = cmdline.Execute(context.Background(), root, []string{"goodbye"}, io.Discard, io.Discard)
	fmt.Println("exit", code)
	// Output:
	// hi, device
	// exit 0
	// exit 2
}
