package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/debian"
)

// buildRoots is the build roots under the cache.
func buildRoots(cache string, stderr io.Writer) *debian.BuildRoots {
	return &debian.BuildRoots{Dir: filepath.Join(cache, "buildroots"),
		Logf: func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }}
}

// openArchive opens kcare-build's private apt under the cache.
func openArchive(cache string, stderr io.Writer) (*debian.Archive, error) {
	return debian.OpenArchive(debian.ArchiveOptions{Dir: filepath.Join(cache, "apt"),
		Logf: func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }})
}

// runBuildroot is `kcare-build buildroot list|make|remove`: the Debian
// build roots whose compilers build livepatches for kernels the host's
// compiler did not build.
func runBuildroot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("buildroot", flag.ContinueOnError)
	cache := fs.String("cache", defaultCache(), "`DIR` holding the build roots (DIR/buildroots) and the apt state")
	asJSON := fs.Bool("json", false, "list as JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kcare-build buildroot list [--json] | make RELEASE... | remove RELEASE...  [--cache DIR]\n\n"+
			"RELEASE is a Debian release: bookworm or trixie.\n\n")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.SetOutput(stderr)
		fs.Usage()
		return fmt.Errorf("%w: give list, make or remove", errUsage)
	}
	verb := args[0]
	if err := parse(fs, args[1:], stderr); err != nil {
		return err
	}
	if *cache == "" {
		return fmt.Errorf("%w: no cache directory: give --cache", errUsage)
	}
	roots := buildRoots(*cache, stderr)
	switch verb {
	case "list":
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: list takes no arguments", errUsage)
		}
		list, err := roots.List()
		if err != nil {
			return err
		}
		if *asJSON {
			type entry struct {
				Release  string    `json:"release"`
				Compiler string    `json:"compiler"`
				Dir      string    `json:"dir"`
				Bytes    int64     `json:"bytes"`
				Made     time.Time `json:"made"`
				Seconds  float64   `json:"debootstrap_seconds"`
			}
			out := []entry{}
			for _, r := range list {
				out = append(out, entry{r.Codename, r.Compiler.Text, r.Dir, r.Size, r.Made, r.Took.Seconds()})
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RELEASE\tCOMPILER\tSIZE\tMADE\tDEBOOTSTRAP\tDIR")
		for _, r := range list {
			fmt.Fprintf(tw, "%s\t%s %s\t%d MiB\t%s\t%s\t%s\n", r.Codename, r.Compiler.Command, r.Compiler.Version, r.Size>>20,
				r.Made.UTC().Format(time.RFC3339), r.Took.Round(time.Second), r.Dir)
		}
		return tw.Flush()
	case "make":
		if fs.NArg() == 0 {
			return fmt.Errorf("%w: give a Debian release (bookworm, trixie)", errUsage)
		}
		a, err := openArchive(*cache, stderr)
		if err != nil {
			return err
		}
		for _, codename := range fs.Args() {
			if _, ok := debian.Releases[codename]; !ok {
				return fmt.Errorf("%w: no Debian release %q: bookworm or trixie", errUsage, codename)
			}
			r, err := roots.Make(ctx, a, codename)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s %s %s\n", r.Codename, r.Compiler.Text, r.Dir)
		}
		return nil
	case "remove":
		if fs.NArg() == 0 {
			return fmt.Errorf("%w: give a Debian release (bookworm, trixie)", errUsage)
		}
		for _, codename := range fs.Args() {
			if err := roots.Remove(codename); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "removed %s\n", roots.Path(codename))
		}
		return nil
	}
	return fmt.Errorf("%w: unknown buildroot command %q: list, make or remove", errUsage, verb)
}
