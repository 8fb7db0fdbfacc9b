package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/internal/kimage"
	"github.com/kcare/kcare/internal/secretflag"
)

// Results of one kernel in a matrix.
const (
	resultBuilt     = "built"     // packed and signed, not published
	resultPublished = "published" // and published
	resultTested    = "tested"    // and passed kcare-build test, not published
	resultFailed    = "failed"
)

// matrixKernel is what the matrix did for one kernel: the summary's row
// and --json's entry.
type matrixKernel struct {
	Release string `json:"release"`
	Family  string `json:"family"`
	Version string `json:"version,omitempty"`
	Result  string `json:"result"`
	Step    string `json:"failed_step,omitempty"` // fetch, toolchain, build, pack, test, publish
	Error   string `json:"error,omitempty"`
	Bundle  string `json:"bundle,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	// Toolchain says where the module was built: "host gcc-12 12.2.0",
	// "build root trixie (…)".
	Toolchain string        `json:"toolchain,omitempty"`
	Seconds   matrixSeconds `json:"seconds"`
}

// matrixSeconds is how long each step took; 0 for a step the cache
// spared or that did not run.
type matrixSeconds struct {
	Fetch     float64 `json:"fetch"`
	BuildRoot float64 `json:"buildroot"`
	Build     float64 `json:"build"`
	Pack      float64 `json:"pack"`
	Test      float64 `json:"test"`
}

// matrixReport is --json's output.
type matrixReport struct {
	Kernels []matrixKernel `json:"kernels"`
}

// errMatrixFailed means some kernels of a matrix failed; the summary
// says which and why.
var errMatrixFailed = errors.New("some kernels failed")

// runMatrix is `kcare-build matrix`: one livepatch source built for many
// kernels, each packed for its own build-id, signed, and published in one
// command.
func runMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	var srcs, defines, cves, against listFlag
	fs.Var(&srcs, "src", "livepatch source `DIR` (repeated: the fixes of a cumulative level, as module takes them)")
	fs.Var(&defines, "define", "pass -D`NAME[=VALUE]` to the compiler (repeatable)")
	kernels := fs.String("kernels", "", "the kernels: a `SPEC` of comma-separated releases (6.1.0-57-amd64), families (trixie-6.12), all-bookworm or all-trixie, or a file of releases, one a line")
	olderThan := fs.String("older-than", "", "keep only kernels whose Debian package `VERSION` is older (the kernels a fix fixed in VERSION is for)")
	name := fs.String("name", "", "the livepatch module's `NAME` (kcare_…)")
	level := fs.Int("level", 0, "cumulative patch `LEVEL`")
	key := fs.String("sign-key", "", "the publisher's private key `FILE`")
	outDir := fs.String("out", "", "`DIR` for the modules and bundles: DIR/RELEASE/NAME.ko, DIR/RELEASE-LEVEL.kcp")
	fs.Var(&cves, "cve", "a fixed vulnerability `ID:TEXT` (repeatable)")
	fs.Var(&against, "check-against", "an analysis `FILE` per kernel: {release} in it is the kernel's release (repeatable)")
	kallsyms := fs.String("kallsyms", "", "each kernel's /proc/kallsyms dump, a `FILE` name in which {release} and {build-id} are the kernel's")
	effVersion := fs.String("effective-version", "", "the package `VERSION` carrying the same fixes")
	check := fs.String("check", "", "the level's check program `FILE`, packed into each bundle (see pack --check)")
	released := fs.String("released", "", "release `TIME`, RFC 3339 (default: now)")
	portal := fs.String("portal", "", "publish every bundle built to the portal at `URL`")
	tokenFlags := secretflag.Register(fs, publishTokenSource, "an admin's API token (eportal token add)")
	test := fs.Bool("test", false, "boot each level's kernel in QEMU and apply it first (kcare-build test); publish only the levels that pass")
	transition := fs.Duration("transition-timeout", 30*time.Second, "with --test: how long each level's patching transition may take")
	keyring := fs.String("keyring", "", "with --test: the public key `FILE` the bundles are checked with (default: the --sign-key's .pub)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	cache := fs.String("cache", defaultCache(), "`DIR` for the kernels, the build roots and the apt state")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kcare-build matrix --src DIR --kernels SPEC --name NAME --level N --sign-key FILE --out DIR [options]\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("src", srcs.String(), "kernels", *kernels, "name", *name, "sign-key", *key, "out", *outDir); err != nil {
		return err
	}
	if *level < 1 {
		return fmt.Errorf("%w: --level must be 1 or more", errUsage)
	}
	if *cache == "" {
		return fmt.Errorf("%w: no cache directory: give --cache", errUsage)
	}
	if *released == "" {
		*released = time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	} else if _, err := time.Parse(time.RFC3339, *released); err != nil {
		return fmt.Errorf("%w: --released: %v", errUsage, err)
	}
	token := ""
	if *portal != "" {
		var err error
		token, err = tokenFlags.Get("kcare-build matrix", stderr)
		if errors.Is(err, secretflag.ErrConflict) {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if err != nil {
			return err
		}
		if token == "" {
			return fmt.Errorf("%w: publishing needs a token: --%s FILE or %s", errUsage, publishTokenSource.FileFlag, publishTokenSource.Env)
		}
	}
	if *test && *keyring == "" {
		*keyring = strings.TrimSuffix(*key, ".key") + ".pub"
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	logf := func(format string, args ...any) {}
	a, err := openArchive(*cache, io.Discard)
	if err != nil {
		return err
	}
	releases, err := matrixReleases(ctx, a, *kernels, *olderThan)
	if err != nil {
		return err
	}
	roots := buildRoots(*cache, io.Discard)
	p := newProgress(stderr)

	report := matrixReport{Kernels: []matrixKernel{}}
	for i, rel := range releases {
		mk := matrixKernel{Release: rel}
		if f, ok := debian.FamilyOf(rel); ok {
			mk.Family = f.Name
		}
		status := func(what string) { p.status(i+1, len(releases), rel, what) }
		fail := func(step string, err error) {
			mk.Result, mk.Step, mk.Error = resultFailed, step, oneLine(err.Error())
		}
		func() {
			status("fetching")
			k, tm, err := debian.FetchKernelTimed(ctx, a, *cache, rel, logf)
			mk.Seconds.Fetch = (tm.Download + tm.Extract).Seconds()
			if err != nil {
				fail("fetch", err)
				return
			}
			mk.Version = k.Version
			status("choosing the compiler")
			start := time.Now()
			_, hadRoot := existingRoot(roots, rel)
			tc, err := debian.ChooseToolchain(ctx, k.HeadersDir, rel, roots, func() (*debian.Archive, error) { return a, nil })
			if tc.Root != nil && !hadRoot {
				mk.Seconds.BuildRoot = time.Since(start).Seconds()
			}
			if err != nil {
				fail("toolchain", err)
				return
			}
			mk.Toolchain = tc.String()
			status("building with the " + tc.String())
			dir := filepath.Join(*outDir, rel)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				fail("build", err)
				return
			}
			ko := filepath.Join(dir, *name+".ko")
			margs := []string{"--headers", k.HeadersDir, "--out", ko, "--cache", *cache}
			for _, s := range srcs {
				margs = append(margs, "--src", s)
			}
			for _, d := range defines {
				margs = append(margs, "--define", d)
			}
			id, err := kimage.IdentifyFile(k.Vmlinux)
			if err != nil {
				fail("build", err)
				return
			}
			expand := func(s string) string {
				return strings.NewReplacer("{release}", rel, "{build-id}", id.BuildID).Replace(s)
			}
			if *kallsyms != "" {
				margs = append(margs, "--kallsyms", expand(*kallsyms))
			}
			for _, c := range against {
				margs = append(margs, "--check-against", expand(c))
			}
			start = time.Now()
			err = subcommand(ctx, runModule, margs)
			mk.Seconds.Build = time.Since(start).Seconds()
			if err != nil {
				fail("build", err)
				return
			}
			status("packing")
			out := filepath.Join(*outDir, fmt.Sprintf("%s-%d.kcp", rel, *level))
			pargs := []string{"--module", ko, "--kernel", k.Vmlinuz, "--level", fmt.Sprint(*level), "--sign-key", *key,
				"--out", out, "--released", *released}
			for _, c := range cves {
				pargs = append(pargs, "--cve", c)
			}
			for _, c := range against {
				pargs = append(pargs, "--check-against", expand(c))
			}
			if *effVersion != "" {
				pargs = append(pargs, "--effective-version", *effVersion)
			}
			if *check != "" {
				pargs = append(pargs, "--check", *check)
			}
			start = time.Now()
			err = subcommand(ctx, runPack, pargs)
			mk.Seconds.Pack = time.Since(start).Seconds()
			if err != nil {
				fail("pack", err)
				return
			}
			data, err := os.ReadFile(out)
			if err != nil {
				fail("pack", err)
				return
			}
			mk.Bundle, mk.SHA256, mk.Result = out, bundle.Digest(data), resultBuilt
			if *test {
				status("testing in QEMU")
				start = time.Now()
				res, err := testLevel(ctx, testOptions{Bundle: out, Keyring: *keyring, Cache: *cache, TransitionTimeout: *transition})
				mk.Seconds.Test = time.Since(start).Seconds()
				if err == nil && !res.Passed {
					err = errors.New(res.Why)
				}
				if err != nil {
					fail("test", err)
					return
				}
				mk.Result = resultTested
			}
		}()
		p.done(i+1, len(releases), mk)
		report.Kernels = append(report.Kernels, mk)
	}

	// Publish what was built (and passed), after every build: a portal
	// never holds part of a matrix whose later kernels could not build.
	if *portal != "" {
		for i := range report.Kernels {
			mk := &report.Kernels[i]
			if mk.Result == resultFailed {
				continue
			}
			var out bytes.Buffer
			if err := publishFile(ctx, *portal, token, mk.Bundle, "", map[string]string{"released": *released}, &out); err != nil {
				mk.Result, mk.Step, mk.Error = resultFailed, "publish", oneLine(err.Error())
				continue
			}
			mk.Result = resultPublished
		}
	}

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else if err := writeMatrixSummary(stdout, report); err != nil {
		return err
	}
	var failed []string
	for _, mk := range report.Kernels {
		if mk.Result == resultFailed {
			failed = append(failed, mk.Release)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %d of %d: %s", errMatrixFailed, len(failed), len(report.Kernels), strings.Join(failed, ", "))
	}
	return nil
}

// existingRoot reports whether the build root a release would need is
// made already.
func existingRoot(roots *debian.BuildRoots, release string) (*debian.BuildRoot, bool) {
	f, ok := debian.FamilyOf(release)
	if !ok {
		return nil, false
	}
	r, err := roots.Get(f.Codename)
	return r, err == nil
}

// subcommand runs another kcare-build command in-process, keeping its
// output for the error.
func subcommand(ctx context.Context, run func(context.Context, []string, io.Writer, io.Writer) error, args []string) error {
	var out bytes.Buffer
	if err := run(ctx, args, io.Discard, &out); err != nil {
		if errors.Is(err, errUsage) {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out.String()))
		}
		return err
	}
	return nil
}

// oneLine keeps an error's first line and its last, which names the cause.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 1 {
		return lines[0]
	}
	return lines[0] + " … " + strings.TrimSpace(lines[len(lines)-1])
}

// matrixReleases resolves --kernels: releases, family names,
// all-bookworm, all-trixie, or a file of releases. A family or all-*
// means every complete set the archive serves of it, oldest first.
func matrixReleases(ctx context.Context, a *debian.Archive, spec, olderThan string) ([]string, error) {
	var words []string
	if data, err := os.ReadFile(spec); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			words = append(words, strings.Fields(line)...)
		}
	} else {
		words = strings.Split(spec, ",")
	}
	var catalog *debian.Catalog
	sets := func() (*debian.Catalog, error) {
		if catalog == nil {
			var err error
			if catalog, err = a.Catalog(ctx); err != nil {
				return nil, err
			}
		}
		return catalog, nil
	}
	var out []string
	var versions = map[string]string{}
	add := func(s debian.Set) {
		if !slices.Contains(out, s.Release) {
			out = append(out, s.Release)
			versions[s.Release] = s.Version
		}
	}
	for _, w := range words {
		w = strings.TrimSpace(w)
		switch {
		case w == "":
		case strings.HasPrefix(w, "all-"):
			codename := strings.TrimPrefix(w, "all-")
			if _, ok := debian.Releases[codename]; !ok {
				return nil, fmt.Errorf("%w: --kernels %s: no Debian release %s (all-bookworm, all-trixie)", errUsage, w, codename)
			}
			c, err := sets()
			if err != nil {
				return nil, err
			}
			for _, s := range c.Sets {
				if f, _ := debian.FamilyNamed(s.Family); f.Codename == codename {
					add(s)
				}
			}
		default:
			if _, ok := debian.FamilyNamed(w); ok {
				c, err := sets()
				if err != nil {
					return nil, err
				}
				for _, s := range c.Family(w) {
					add(s)
				}
				continue
			}
			if _, ok := debian.FamilyOf(w); !ok {
				return nil, fmt.Errorf("%w: --kernels: %q is no kernel release of a family (%s), nor a family", errUsage, w, strings.Join(debian.FamilyNames(), ", "))
			}
			if !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
	}
	if olderThan != "" {
		c, err := sets()
		if err != nil {
			return nil, err
		}
		var kept []string
		for _, r := range out {
			s, ok := c.Release(r)
			if !ok {
				return nil, fmt.Errorf("--older-than: the archive serves no complete %s", r)
			}
			if debian.CompareVersions(s.Version, olderThan) < 0 {
				kept = append(kept, r)
			}
		}
		out = kept
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: --kernels %s names no kernel", errUsage, spec)
	}
	return out, nil
}

// writeMatrixSummary writes the summary table.
func writeMatrixSummary(w io.Writer, r matrixReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tFAMILY\tRESULT\tFETCH\tBUILDROOT\tBUILD\tTEST\tBUNDLE OR ERROR")
	secs := func(s float64) string {
		if s == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fs", s)
	}
	for _, k := range r.Kernels {
		detail := k.Bundle
		if k.Result == resultFailed {
			detail = k.Step + ": " + k.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Release, k.Family, k.Result,
			secs(k.Seconds.Fetch), secs(k.Seconds.BuildRoot), secs(k.Seconds.Build), secs(k.Seconds.Test), detail)
	}
	return tw.Flush()
}

// progress shows each kernel's step: on a terminal one line per kernel,
// rewritten as it goes; otherwise a line per kernel once it is done.
type progress struct {
	w        io.Writer
	terminal bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.terminal = err == nil
	}
	return p
}

func (p *progress) status(i, n int, release, what string) {
	if p.terminal {
		fmt.Fprintf(p.w, "\r\x1b[K[%d/%d] %s: %s", i, n, release, what)
	}
}

func (p *progress) done(i, n int, k matrixKernel) {
	line := fmt.Sprintf("[%d/%d] %s: %s", i, n, k.Release, k.Result)
	if k.Result == resultFailed {
		line += " at " + k.Step + ": " + k.Error
	}
	if p.terminal {
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", line)
		return
	}
	fmt.Fprintln(p.w, line)
}
