// Package clihints checks that every command a hint in enroll-client's
// messages tells an operator to run exists: an operator who copies
// `enrollctl re-admit` from a status page gets "unknown command" at the
// worst moment.
package clihints

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	clientcli "github.com/edge-enroll/enroll/enroll-client/cli"
	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
)

var (
	enrollctlHint = regexp.MustCompile(`enrollctl ([a-z][a-z-]*)`)
	// enroll-client is also a word in prose ("restart enroll-client on
	// the device"): only a command quoted or in parentheses is a hint.
	clientHint = regexp.MustCompile("[`(]enroll-client ([a-z][a-z-]*)")
)

// literals returns every string literal in the non-test Go files under
// dir, with where it is.
func literals(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					out[fset.Position(lit.Pos()).String()] = s
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exists asks the program itself whether it knows cmd.
func exists(run func(args []string, stdout, stderr *bytes.Buffer) int, cmd string) bool {
	var out, errOut bytes.Buffer
	run([]string{cmd, "-h"}, &out, &errOut)
	return !strings.Contains(out.String()+errOut.String(), "unknown command")
}

func TestClientHintsNameRealCommands(t *testing.T) {
	ctx := context.Background()
	enrollctlRun := func(args []string, stdout, stderr *bytes.Buffer) int {
		return enrollctl.Run(ctx, args, enrollctl.Env{Getenv: func(string) string { return "" }, Stdout: stdout, Stderr: stderr})
	}
	clientRun := func(args []string, stdout, stderr *bytes.Buffer) int {
		return clientcli.Run(ctx, args, stdout, stderr)
	}
	if exists(enrollctlRun, "re-admit") || !exists(enrollctlRun, "readmit") {
		t.Fatal("the check cannot tell enrollctl's commands apart")
	}
	seen := 0
	for where, s := range literals(t, "../../enroll-client") {
		for _, m := range enrollctlHint.FindAllStringSubmatch(s, -1) {
			seen++
			if !exists(enrollctlRun, m[1]) {
				t.Errorf("%s: hint names `enrollctl %s`, which enrollctl does not have", where, m[1])
			}
		}
		for _, m := range clientHint.FindAllStringSubmatch(s, -1) {
			seen++
			if !exists(clientRun, m[1]) {
				t.Errorf("%s: hint names `enroll-client %s`, which enroll-client does not have", where, m[1])
			}
		}
	}
	if seen < 4 {
		t.Fatalf("found only %d hints: the scan is broken", seen)
	}
}
