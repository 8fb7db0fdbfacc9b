package cli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/debian"
	"github.com/kcare/kcare/internal/kimage"
	"github.com/kcare/kcare/internal/trust"
	"github.com/kcare/kcare/test/vm/qemu"
)

// ExitTestFailed is kcare-build test's exit code for a level that failed
// in its guest: the kernel refused it, its transition stalled, or its
// check failed.
const ExitTestFailed = 4

// kvmProbe bounds a guest run with KVM under --accel auto.
const kvmProbe = 45 * time.Second

// errTestFailed marks a level that failed kcare-build test.
var errTestFailed = errors.New("level failed its test")

// testOptions says which level to test and how.
type testOptions struct {
	Bundle, Sig string // the .kcp and its signature (Bundle + .sig when empty)
	Keyring     string // the publisher's public key(s)
	Cache       string // kernels, apt state
	// TransitionTimeout bounds the patching transition in the guest.
	TransitionTimeout time.Duration
	// GuestTimeout bounds the whole guest: boot, test, power-off.
	GuestTimeout time.Duration
	// Accel is QEMU's accelerator: "tcg" (the default), "kvm", or
	// "auto": KVM when a guest boots with it within kvmProbe, else TCG.
	Accel string
	Logf  func(format string, args ...any)
}

// testResult is what the guest did with the level.
type testResult struct {
	Level       int      `json:"level"`
	Module      string   `json:"module"`
	Release     string   `json:"release"`
	BuildID     string   `json:"build_id"`
	Version     string   `json:"version"` // the kernel's Debian package version
	Passed      bool     `json:"passed"`
	Why         string   `json:"why,omitempty"`
	Steps       []string `json:"steps"` // what the guest reported, in order
	Livepatch   []string `json:"livepatch_log"`
	Accel       string   `json:"accel"` // what the guest ran on: kvm or tcg
	GuestSecond float64  `json:"guest_seconds"`
}

// runTest is `kcare-build test LEVEL.kcp`: it boots the level's own kernel
// in QEMU, applies the level, waits for its transition, runs its check if
// it ships one, unloads it, and reports. The check runs only there, in a
// guest made for it.
func runTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	keyring := fs.String("keyring", "", "the publisher's public key `FILE` (or a directory of keys) the bundle is checked with")
	sigPath := fs.String("sig", "", "signature `FILE` (default: the bundle path + .sig)")
	cache := fs.String("cache", defaultCache(), "`DIR` for the kernel and the apt state")
	transition := fs.Duration("transition-timeout", 30*time.Second, "how long the patching transition may take in the guest")
	accel := fs.String("accel", "tcg", "QEMU's `ACCEL`: tcg, kvm, or auto (KVM when a guest boots with it, else TCG)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kcare-build test --keyring FILE [options] LEVEL.kcp\n\n")
		fs.PrintDefaults()
	}
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("keyring", *keyring); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one bundle file", errUsage)
	}
	if *cache == "" {
		return fmt.Errorf("%w: no cache directory: give --cache", errUsage)
	}
	res, err := testLevel(ctx, testOptions{Bundle: fs.Arg(0), Sig: *sigPath, Keyring: *keyring, Cache: *cache,
		TransitionTimeout: *transition, Accel: *accel, Logf: func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "level %d (%s) for %s (%s, build-id %s)\n", res.Level, res.Module, res.Release, res.Version, res.BuildID)
		for _, s := range res.Steps {
			fmt.Fprintln(stdout, s)
		}
		for _, l := range res.Livepatch {
			fmt.Fprintln(stdout, l)
		}
		if res.Passed {
			fmt.Fprintln(stdout, "PASS")
		} else {
			fmt.Fprintf(stdout, "FAIL: %s\n", res.Why)
		}
	}
	if !res.Passed {
		return fmt.Errorf("%w: %s", errTestFailed, res.Why)
	}
	return nil
}

// testLevel runs a level in its own kernel. The error is for what kept the
// test from running; a level that ran and failed is a result with Passed
// false.
func testLevel(ctx context.Context, o testOptions) (*testResult, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.TransitionTimeout == 0 {
		o.TransitionTimeout = 30 * time.Second
	}
	if o.GuestTimeout == 0 {
		o.GuestTimeout = 3*time.Minute + 2*o.TransitionTimeout
	}
	if o.Sig == "" {
		o.Sig = o.Bundle + ".sig"
	}
	if err := qemu.CheckHost(); err != nil {
		return nil, fmt.Errorf("test: %w", err)
	}
	keys, err := trust.LoadKeyring(o.Keyring)
	if err != nil {
		return nil, err
	}
	data, err := agent.ReadFile(o.Bundle, bundle.MaxBundleSize)
	if err != nil {
		return nil, err
	}
	sig, err := agent.ReadFile(o.Sig, bundle.MaxSignatureSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errRefused, o.Sig, err)
	}
	b, err := bundle.Open(data, sig, keys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRefused, err)
	}
	m := b.Manifest
	res := &testResult{Level: m.Level, Module: m.Module.Name, Release: m.Kernel.Release, BuildID: m.Kernel.BuildID}

	// The level's own kernel, from the archive, by release; it must be
	// the very build the level is for.
	a, err := openArchive(o.Cache, io.Discard)
	if err != nil {
		return nil, err
	}
	k, err := debian.FetchKernel(ctx, a, o.Cache, m.Kernel.Release, nil)
	if err != nil {
		return nil, err
	}
	res.Version = k.Version
	id, err := kimage.IdentifyFile(k.Vmlinux)
	if err != nil {
		return nil, err
	}
	if id.BuildID != m.Kernel.BuildID {
		return nil, fmt.Errorf("the archive's %s (%s) is build-id %s; the level is for build-id %s", k.Release, k.Version, id.BuildID, m.Kernel.BuildID)
	}

	work, err := os.MkdirTemp("", "kcare-test-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	files := map[string]string{}
	modPath := filepath.Join(work, m.Module.File)
	if err := os.WriteFile(modPath, b.Module, 0o644); err != nil {
		return nil, err
	}
	files["/kcare/"+m.Module.Name+".ko"] = modPath
	if b.Check != nil {
		p := filepath.Join(work, "check")
		if err := os.WriteFile(p, b.Check, 0o755); err != nil {
			return nil, err
		}
		files["/kcare/check"] = p
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := qemu.BuildInitramfs(ctx, qemu.Image{Kernel: k, Files: files, Init: guestTestScript(m.Module.Name, b.Check != nil, o.TransitionTimeout)}, initrd); err != nil {
		return nil, err
	}
	o.Logf("kcare-build test: booting %s (%s) in QEMU with level %d", k.Release, k.Version, m.Level)
	gctx, cancel := context.WithTimeout(ctx, o.GuestTimeout)
	defer cancel()
	start := time.Now()
	cfg := qemu.Config{Kernel: k.Vmlinux, Initrd: initrd, Isolated: true, Accel: o.Accel}
	var console string
	if o.Accel == "auto" {
		// /dev/kvm may open and its guests still hang (nested
		// virtualisation): KVM only when a guest ends with it in time.
		kctx, kcancel := context.WithTimeout(gctx, kvmProbe)
		cfg.Accel = "kvm"
		console, err = qemu.Run(kctx, cfg)
		kcancel()
		if err != nil || !strings.Contains(console, "kcare-test: result=") {
			o.Logf("kcare-build test: no result with KVM within %s; booting again with TCG", kvmProbe)
			cfg.Accel = "tcg"
			console, err = qemu.Run(gctx, cfg)
		}
	} else {
		console, err = qemu.Run(gctx, cfg)
	}
	res.GuestSecond = time.Since(start).Seconds()
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, lastLines(console, 30))
	}
	if err := parseGuestTest(console, res); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, lastLines(console, 30))
	}
	return res, nil
}

// guestTestScript is the guest's part of kcare-build test: every line it
// reports starts with "kcare-test: ".
func guestTestScript(module string, hasCheck bool, transition time.Duration) string {
	ticks := int(transition / (100 * time.Millisecond))
	check := "0"
	if hasCheck {
		check = "1"
	}
	return `#!/bin/sh
mod=` + module + `
sys=/sys/kernel/livepatch/$mod
check=` + check + `
ticks=` + strconv.Itoa(ticks) + `
dmesg -n 1
say() { echo "kcare-test: $*"; }
log() { dmesg | grep 'livepatch:' | sed 's/^\[[ 0-9.]*\] /kcare-test: log /'; }
# wait_gone waits for the patch's directory to go, after a disable.
wait_gone() { i=0; while [ -e $sys ] && [ $i -lt $ticks ]; do i=$((i+1)); sleep 0.1; done; }
accel=tcg
dmesg | grep -q 'Hypervisor detected: KVM' && accel=kvm
say "booted $(uname -r) notes $(od -An -v -tx1 /sys/kernel/notes | tr -d ' \n') $accel"
if [ ! -d /sys/kernel/livepatch ]; then say "result=fail the kernel has no livepatch support"; exit 0; fi
if [ $check = 1 ]; then /kcare/check >/dev/null 2>&1; say "step check before: exit $?"; fi
if ! insmod /kcare/$mod.ko 2>/tmp/insmod.err; then
	say "step load: refused: $(tr '\n' ' ' </tmp/insmod.err)"
	log
	say "result=fail the kernel refused the module: $(dmesg | grep -v 'livepatch:' | tail -n 1 | sed 's/^\[[ 0-9.]*\] //')"
	exit 0
fi
i=0
while [ "$(cat $sys/transition 2>/dev/null)" != 0 ] && [ $i -lt $ticks ]; do i=$((i+1)); sleep 0.1; done
if [ "$(cat $sys/transition 2>/dev/null)" != 0 ]; then
	stalled=""
	for t in /proc/[0-9]*; do
		[ "$(cat $t/patch_state 2>/dev/null)" = 0 ] && stalled="$stalled $(cat $t/comm)[${t#/proc/}]"
	done
	say "step transition: not finished after ` + transition.String() + `, tasks not switched:$stalled"
	echo 0 > $sys/enabled
	wait_gone
	rmmod $mod 2>/dev/null
	say "step reversed: $( [ -e $sys ] && echo 'still there' || echo 'the patch is gone')"
	log
	say "result=fail the transition did not finish within ` + transition.String() + ` (tasks not switched:$stalled)"
	exit 0
fi
say "step load: applied, transition finished in $((i*100))ms"
rc=0
if [ $check = 1 ]; then
	/kcare/check >/tmp/check.out 2>&1; rc=$?
	say "step check after: exit $rc"
	head -n 20 /tmp/check.out | sed 's/^/kcare-test: step   | /'
fi
echo 0 > $sys/enabled
wait_gone
if [ -e $sys ]; then say "result=fail the unpatching transition did not finish"; log; exit 0; fi
rmmod $mod
say "step unload: done"
if [ $check = 1 ]; then /kcare/check >/dev/null 2>&1; say "step check after unload: exit $?"; fi
log
if [ $rc != 0 ]; then say "result=fail the check exited $rc with the level applied"; exit 0; fi
say "result=pass"
`
}

// parseGuestTest reads the guest's report from its console into res.
func parseGuestTest(console string, res *testResult) error {
	done := false
	for _, line := range strings.Split(strings.ReplaceAll(console, "\r", ""), "\n") {
		i := strings.Index(line, "kcare-test: ")
		if i < 0 {
			continue
		}
		msg := line[i+len("kcare-test: "):]
		switch {
		case strings.HasPrefix(msg, "booted "):
			f := strings.Fields(msg)
			if len(f) != 5 || f[2] != "notes" {
				return fmt.Errorf("test: the guest said %q", msg)
			}
			raw, err := hex.DecodeString(f[3])
			if err != nil {
				return fmt.Errorf("test: the guest's /sys/kernel/notes: %w", err)
			}
			got, err := kimage.ParseNotes(raw)
			if err != nil {
				return fmt.Errorf("test: the guest's /sys/kernel/notes: %w", err)
			}
			if f[1] != res.Release || got != res.BuildID {
				return fmt.Errorf("test: the guest runs %s build-id %s; the level is for %s build-id %s", f[1], got, res.Release, res.BuildID)
			}
			res.Accel = f[4]
			res.Steps = append(res.Steps, "booted "+f[1]+" ("+strings.ToUpper(f[4])+")")
		case strings.HasPrefix(msg, "step "):
			res.Steps = append(res.Steps, strings.TrimPrefix(msg, "step "))
		case strings.HasPrefix(msg, "log "):
			res.Livepatch = append(res.Livepatch, strings.TrimPrefix(msg, "log "))
		case msg == "result=pass":
			res.Passed, done = true, true
		case strings.HasPrefix(msg, "result=fail "):
			res.Why, done = strings.TrimPrefix(msg, "result=fail "), true
		}
	}
	if !done {
		return errors.New("test: the guest powered off without a result")
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
