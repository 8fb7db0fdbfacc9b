package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/kcare/kcare/internal/kbuild"
)

func runModule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("module", flag.ContinueOnError)
	headers := fs.String("headers", "", "kernel headers `DIR` (linux-headers-RELEASE, or an extracted package tree)")
	src := fs.String("src", "", "source `DIR` of the livepatch (.c and .h files)")
	out := fs.String("out", "", "write the module to `FILE`.ko")
	name := fs.String("name", "", "module `NAME` (default: the --out file name without .ko)")
	var defines listFlag
	fs.Var(&defines, "define", "pass -D`NAME[=VALUE]` to the compiler (repeatable)")
	verbose := fs.Bool("v", false, "show the kbuild output")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("headers", *headers, "src", *src, "out", *out); err != nil {
		return err
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(*out), ".ko")
	}
	h, err := kbuild.FindHeaders(*headers)
	if err != nil {
		return err
	}
	o := kbuild.Options{Headers: h, Src: *src, Name: *name, Defines: defines, Out: *out}
	if *verbose {
		o.Log = stderr
	}
	if err := kbuild.Build(ctx, o); err != nil {
		return err
	}
	fmt.Fprintln(stdout, *out)
	return nil
}
