package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kcare/kcare/internal/analyze"
)

func runAnalyze(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	kernel := fs.String("kernel", "", "the Debian kernel `RELEASE` the fix is for, e.g. 6.1.0-47-amd64")
	cache := fs.String("cache", defaultCache(), "`DIR` for the fetched packages and the prepared source trees")
	asJSON := fs.Bool("json", false, "print the analysis as JSON instead of a table")
	out := fs.String("out", "", "also write the analysis as JSON to `FILE`, for --check-against")
	var objects listFlag
	fs.Var(&objects, "object", "also build `PATH.o` of the kernel tree (repeatable; for a patch to a header)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kcare-build analyze --kernel RELEASE [options] FIX.patch\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("kernel", *kernel); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one patch file", errUsage)
	}
	if *cache == "" {
		return fmt.Errorf("%w: no cache directory: give --cache", errUsage)
	}
	patch, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	a, err := analyze.Run(ctx, analyze.Options{
		Release:   *kernel,
		Patch:     patch,
		PatchName: fs.Arg(0),
		Objects:   objects,
		Source: analyze.SourceOptions{
			Cache: *cache,
			Logf:  func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) },
		},
	})
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if *out != "" {
		if err := os.WriteFile(*out, data, 0o644); err != nil {
			return err
		}
	}
	if *asJSON {
		_, err = stdout.Write(data)
		return err
	}
	return a.WriteText(stdout)
}

// defaultCache is $KCARE_BUILD_CACHE, or kcare-build under the user's
// cache directory.
func defaultCache() string {
	if d := os.Getenv("KCARE_BUILD_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "kcare-build")
	}
	return ""
}
