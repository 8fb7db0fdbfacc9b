// Package cli is kcarectl's command line: options as KernelCare users
// know them, one action per run, exit codes from docs/cli.md.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/failure"
	"github.com/kcare/kcare/internal/kmod"
)

// Exit codes, documented in docs/cli.md.
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitRefused     = 3 // verification failed: signature, digest, size, target kernel, vermagic
	ExitUnsupported = 4 // the kernel has no livepatch support or refused the module
	ExitStalled     = 5 // the transition did not finish and was reversed
	ExitLocked      = 6 // another kcarectl holds the lock
	// ExitNotSupported: a KernelCare option or kcare.conf setting kcare
	// does not have (the freezer, user-space patching), refused with why.
	ExitNotSupported = 7
)

// Version is kcarectl's version, set at link time.
var Version = "0.1.0"

type options struct {
	apply     string
	sig       string
	unload    bool
	info      bool
	json      bool
	uname     bool
	patchInfo bool
	update    bool
	conf      string
	root      string
	timeout   string
	version   bool

	register    string
	unregister  bool
	autoUpdate  bool
	poll        bool
	sticky      optString
	prefix      optString
	check       bool
	status      bool
	licenseInfo bool
	tag         optString

	vex     bool
	scanner optString // --scanner-interface enable|disable, users after it

	// KernelCare's options (compat.go).
	smartUpdate     bool
	registerRetry   bool
	test            bool
	importKey       string
	doctor          bool
	patchType       optString
	force           bool
	freezer         optString
	monitoringKey   optString
	userspaceUpdate optString
}

// optString is a string flag that records whether it was given, so that
// --set-sticky-patch= (empty) can unstick.
type optString struct {
	set bool
	v   string
}

func (o *optString) String() string     { return o.v }
func (o *optString) Set(v string) error { o.set, o.v = true, v; return nil }

func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.apply, "apply", "", "verify and apply the patch bundle `FILE` (FILE.sig beside it)")
	fs.StringVar(&o.sig, "sig", "", "detached signature `FILE` for --apply (default: the bundle path + .sig)")
	fs.BoolVar(&o.unload, "unload", false, "disable and remove every kcare patch")
	fs.BoolVar(&o.info, "info", false, "show the applied patch level")
	fs.BoolVar(&o.json, "json", false, "with --info: print JSON (stable fields)")
	fs.BoolVar(&o.uname, "uname", false, "print the effective kernel release")
	fs.BoolVar(&o.patchInfo, "patch-info", false, "list the applied patches (kpatch-* lines)")
	fs.BoolVar(&o.update, "update", false, "apply the newest level (UPDATE_POLICY=LOCAL: the cached level, no network)")
	fs.StringVar(&o.conf, "config", config.DefaultPath, "configuration `FILE`")
	fs.StringVar(&o.root, "root", "/", "treat `DIR` as the root of /sys, /proc, /etc and /var (for tests and images)")
	fs.StringVar(&o.timeout, "transition-timeout", "", "bound on the livepatch transition, e.g. 60s (default TRANSITION_TIMEOUT)")
	fs.BoolVar(&o.version, "version", false, "print kcarectl's version")
	fs.StringVar(&o.register, "register", "", "register this server with the activation `KEY`, then update")
	fs.BoolVar(&o.unregister, "unregister", false, "unregister this server from the portal")
	fs.BoolVar(&o.autoUpdate, "auto-update", false, "what the timer runs: update if AUTO_UPDATE allows, after a random delay, quietly")
	fs.BoolVar(&o.poll, "poll", false, "what the poll timer runs: ask the portal cheaply whether the index changed; update at once for an urgent level or a rollback order (AUTO_UPDATE allowing)")
	fs.Var(&o.sticky, "set-sticky-patch", "stick to patches released up to `DATE` (DDMMYY, DDMMYYYY, YYYY-MM-DD, or KEY); empty unsticks")
	fs.Var(&o.prefix, "prefix", "patch source `PREFIX` for this run: test, 12h, 24h or 48h")
	fs.BoolVar(&o.check, "check", false, "exit 0 if a newer patch level is available, 1 if not")
	fs.BoolVar(&o.status, "status", false, "exit 0 up to date, 1 no patches applied, 2 newer patches not applied, 3 kernel unsupported")
	fs.BoolVar(&o.licenseInfo, "license-info", false, "show what licenses this server")
	fs.Var(&o.tag, "tag", "set this server's tags, \"k:v;k2:v2\", and report them to the portal")
	fs.BoolVar(&o.vex, "vex", false, "print an OpenVEX document of the CVEs the applied level fixes")
	fs.Var(&o.scanner, "scanner-interface", "`enable` USER... or disable [USER...]: show the effective kernel to those users' scanners (LD_PRELOAD)")
	o.kernelCareFlags(fs)
}

// usageHelp is what kcarectl --help says after the synopsis.
const usageHelp = `Give one action: --apply FILE | --unload | --update | --register KEY | --unregister |
--auto-update | --poll | --info [--json] | --uname | --patch-info | --check | --status |
--license-info | --set-sticky-patch DATE | --tag TAGS | --vex | --version |
--scanner-interface enable USER... | --scanner-interface disable [USER...] |
--smart-update | --import-key FILE | --doctor | --set-patch-type default
(-i is --info, -u is --update; --test is --prefix test)

exit codes: 0 ok, 1 error, 2 usage, 3 verification refused, 4 kernel unsupported,
5 transition reversed, 6 locked, 7 not supported by kcare (--freezer, --force,
--userspace-update, --set-monitoring-key; --check and --status have their own)`

// Program is kcarectl's command line writing to stdout and stderr. It
// is one command of options, as KernelCare's kcarectl is; its exit codes
// map from failure categories.
func Program(stdout, stderr io.Writer) *cmdline.Program {
	fs := flag.NewFlagSet("kcarectl", flag.ContinueOnError)
	var o options
	o.flags(fs)
	root := &cmdline.Command{Flags: fs, MaxArgs: -1, Synopsis: "kcarectl ACTION [options]", Help: usageHelp,
		Run: func(ctx context.Context, args []string) error { return run(ctx, &o, args, stdout, stderr) }}
	return &cmdline.Program{Name: "kcarectl", Root: root, Stdout: stdout, Stderr: stderr,
		Exits: []cmdline.Exit{
			{Category: failure.Refused, Code: ExitRefused},
			{Category: failure.Unsupported, Code: ExitUnsupported},
			{Category: failure.Stalled, Code: ExitStalled},
			{Category: failure.Locked, Code: ExitLocked},
			{Category: failure.NotSupported, Code: ExitNotSupported},
		}}
}

// Run runs kcarectl with args and returns its exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return Program(stdout, stderr).Run(ctx, args)
}

// run does the one action o names; args are what follows the options
// (the users of --scanner-interface).
func run(ctx context.Context, o *options, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !o.scanner.set {
		return cmdline.Usagef("unexpected argument %q", args[0])
	}
	if err := o.notSupported(); err != nil {
		return err
	}
	if o.test {
		if o.prefix.set && o.prefix.v != "test" {
			return cmdline.Usagef("--test is --prefix test; not with --prefix %s", o.prefix.v)
		}
		o.prefix = optString{set: true, v: "test"}
	}
	if o.smartUpdate {
		o.update = true
	}
	actions := 0
	for _, on := range []bool{o.apply != "", o.unload, o.info, o.uname, o.patchInfo, o.update, o.version,
		o.register != "", o.unregister, o.autoUpdate, o.poll, o.sticky.set, o.check, o.status, o.licenseInfo, o.tag.set,
		o.vex, o.scanner.set, o.importKey != "", o.doctor, o.patchType.set && !o.update} {
		if on {
			actions++
		}
	}
	if actions != 1 {
		return cmdline.Usagef("give exactly one action (--update, --register KEY, --info, ...; see --help)")
	}
	// An option of one action is refused with another, not ignored.
	switch {
	case o.json && !o.info:
		return cmdline.Usagef("--json goes with --info")
	case o.sig != "" && o.apply == "":
		return cmdline.Usagef("--sig goes with --apply")
	case o.registerRetry && o.register == "":
		return cmdline.Usagef("--register-autoretry goes with --register KEY")
	}
	if o.version {
		_, err := fmt.Fprintf(stdout, "kcarectl %s\n", Version)
		return err
	}
	a, err := newAgent(o, stderr)
	if err != nil {
		return err
	}
	if o.patchType.set {
		if err := runSetPatchType(o, stdout); err != nil || !o.update {
			return err
		}
	}
	switch {
	case o.apply != "":
		err = runApply(ctx, a, o, stdout)
	case o.unload:
		err = runUnload(ctx, a, stdout)
	case o.update:
		err = runUpdate(ctx, a, o, stdout, stderr)
	case o.register != "":
		err = runRegister(ctx, a, o, stdout, stderr)
	case o.unregister:
		err = runUnregister(ctx, a, o, stdout)
	case o.autoUpdate:
		err = runAutoUpdate(ctx, a, o, stdout, stderr)
	case o.poll:
		err = runPoll(ctx, a, o, stdout, stderr)
	case o.sticky.set:
		err = runSetSticky(o, stdout)
	case o.check:
		return cmdline.Status(runCheck(ctx, a, o, stdout, stderr))
	case o.status:
		return cmdline.Status(runStatus(ctx, a, o, stdout, stderr))
	case o.licenseInfo:
		err = runLicenseInfo(ctx, a, o, stdout)
	case o.tag.set:
		err = runTag(ctx, a, o, stdout)
	case o.info:
		err = runInfo(ctx, a, o.json, stdout)
	case o.uname:
		err = runUname(a, stdout)
	case o.patchInfo:
		err = runPatchInfo(a, stdout)
	case o.vex:
		err = runVEX(a, stdout, stderr)
	case o.scanner.set:
		err = runScannerInterface(a, o.scanner.v, args, stdout)
	case o.importKey != "":
		err = runImportKey(a, o, stdout)
	case o.doctor:
		return cmdline.Status(runDoctor(ctx, a, o, stdout))
	}
	if errors.Is(err, agent.ErrNothingToDo) {
		fmt.Fprintf(stderr, "kcarectl: %v\n", err)
		return nil
	}
	return err
}

func newAgent(o *options, stderr io.Writer) (*agent.Agent, error) {
	f, err := config.Load(filepath.Join(o.root, o.conf))
	if err != nil {
		return nil, err
	}
	cfg, err := f.Config()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.conf, err)
	}
	for _, k := range f.Unknown() {
		fmt.Fprintf(stderr, "kcarectl: warning: %s: %s is not a kcare setting; it is not read\n", o.conf, k)
	}
	if o.timeout != "" {
		if !config.ValidValue(o.timeout) {
			return nil, fmt.Errorf("--transition-timeout: bad value %q", o.timeout)
		}
		f := config.File{}
		f.Set("TRANSITION_TIMEOUT", o.timeout)
		c, err := f.Config()
		if err != nil {
			return nil, fmt.Errorf("--transition-timeout: %w", err)
		}
		cfg.TransitionTimeout = c.TransitionTimeout
	}
	return &agent.Agent{Root: o.root, Config: cfg, Loader: newLoader(), Log: prefixWriter{stderr}}, nil
}

// newLoader returns the kernel's module loader; tests replace it with a
// fake kernel so they never touch the machine's own.
var newLoader = func() kmod.Loader { return kmod.Kernel{} }

// UseLoader makes kcarectl load and remove modules through l, for tests
// outside this package that run kcarectl against a fake kernel
// (internal/fakekernel); restore puts the kernel's own loader back.
func UseLoader(l kmod.Loader) (restore func()) {
	old := newLoader
	newLoader = func() kmod.Loader { return l }
	return func() { newLoader = old }
}

// prefixWriter marks progress lines as kcarectl's.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "kcarectl: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// fail prints err once and returns its exit code.
func fail(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "kcarectl: %v\n", err)
	return ExitCode(err)
}

// ExitCode maps an error to kcarectl's exit code.
func ExitCode(err error) int {
	if errors.Is(err, agent.ErrNothingToDo) {
		return ExitOK
	}
	return Program(io.Discard, io.Discard).ExitCode(err)
}
