package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/failure"
	"github.com/kcare/kcare/internal/portalclient"
	"github.com/kcare/kcare/internal/trust"
)

// KernelCare's kcarectl options beyond kcare's own, as TuxCare documents
// them: each is honoured, or refused with why and ExitNotSupported when
// kcare has no such feature; never accepted and ignored.

func (o *options) kernelCareFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.info, "i", false, "the same as --info")
	fs.BoolVar(&o.update, "u", false, "the same as --update")
	fs.BoolVar(&o.smartUpdate, "smart-update", false, "--update, with AUTO_UPDATE_DELAY and AUTO_STICKY_PATCHSET as --auto-update has them")
	fs.BoolVar(&o.registerRetry, "register-autoretry", false, "with --register: retry until the portal answers (not after a refusal)")
	fs.BoolVar(&o.test, "test", false, "the same as --prefix test (deprecated in KernelCare too)")
	fs.StringVar(&o.importKey, "import-key", "", "add the OpenPGP public key in `FILE` to the trusted keys (KEYRING_DIR)")
	fs.BoolVar(&o.doctor, "doctor", false, "check this host: livepatch support, trusted keys, the portal, the recorded state; print a report")
	fs.Var(&o.patchType, "set-patch-type", "set PATCH_TYPE: kcare has only `default` (extra and free are refused)")
	fs.BoolVar(&o.force, "force", false, "not supported by kcare (exit 7): there are no threads to freeze")
	fs.Var(&o.freezer, "freezer", "not supported by kcare (exit 7): the kernel's livepatch consistency model has no freezer (`MODE`)")
	fs.Var(&o.monitoringKey, "set-monitoring-key", "not supported by kcare (exit 7): monitor IP-licensed servers through the reseller Nagios API (`KEY`)")
	fs.Var(&o.userspaceUpdate, "userspace-update", "not supported by kcare (exit 7): kcare patches the kernel only (`PATCHES`)")
}

// notSupported refuses the KernelCare options kcare has no feature for.
func (o *options) notSupported() error {
	why := ""
	switch {
	case o.freezer.set:
		why = "--freezer: the kernel's livepatch consistency model switches each task at a safe point; there is no freezer to choose"
	case o.force:
		why = "--force: there are no threads to freeze; a transition that does not finish within TRANSITION_TIMEOUT is reversed"
	case o.userspaceUpdate.set:
		why = "--userspace-update: kcare patches the kernel only; there is no user-space patching"
	case o.monitoringKey.set:
		why = "--set-monitoring-key: the portal monitors IP-licensed servers through its reseller Nagios API (login and token), with no key on the server"
	default:
		return nil
	}
	return failure.New(failure.NotSupported, "not supported by kcare: "+why)
}

// runSetPatchType writes PATCH_TYPE to kcare.conf; only default is kcare's.
func runSetPatchType(o *options, stdout io.Writer) error {
	f := config.File{}
	f.Set("PATCH_TYPE", o.patchType.v)
	if _, err := f.Config(); err != nil {
		return fmt.Errorf("--set-patch-type: %w", err)
	}
	return editConf(o, func(f *config.File) {
		f.Set("PATCH_TYPE", strings.ToLower(o.patchType.v))
		fmt.Fprintf(stdout, "Patch type set to %s\n", strings.ToLower(o.patchType.v))
	})
}

// runImportKey adds an armored OpenPGP public key to KEYRING_DIR, once it
// has been read as one, under a name from its fingerprint.
func runImportKey(a *agent.Agent, o *options, stdout io.Writer) error {
	data, err := os.ReadFile(o.importKey)
	if err != nil {
		return fmt.Errorf("--import-key: %w", err)
	}
	k, err := trust.ReadKeyring(data)
	if err != nil || k.Len() == 0 {
		return fmt.Errorf("--import-key %s: not an OpenPGP public key: %v", o.importKey, err)
	}
	dir := filepath.Join(o.root, keyringDir(a))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fps := k.Fingerprints()
	name := filepath.Join(dir, "imported-"+strings.ToLower(fps[0][max(0, len(fps[0])-16):])+".asc")
	if err := atomicfile.WriteFile(name, data, 0o644); err != nil {
		return err
	}
	for _, fp := range fps {
		fmt.Fprintf(stdout, "Imported key %s\n", fp)
	}
	return nil
}

func keyringDir(a *agent.Agent) string {
	if a.Config.KeyringDir != "" {
		return a.Config.KeyringDir
	}
	return config.DefaultKeyringDir
}

// registerRetry is how long --register-autoretry waits between tries, at
// most; tests shorten it.
var registerRetry = struct{ first, most time.Duration }{5 * time.Second, 5 * time.Minute}

// register registers with key; with --register-autoretry it tries again,
// with a growing wait, while the portal cannot be reached or answers it
// is busy or broken (5xx, 429): failures that registered nothing. A
// refusal (an unknown key, a full key) and an answer lost after the
// request was sent are not retried: the first is final, the second may
// have registered the server.
func register(ctx context.Context, c *portalclient.Client, o *options, host string, stderr io.Writer) (id, secret string, err error) {
	wait := registerRetry.first
	for {
		id, secret, err = c.Register(ctx, o.register, host)
		if err == nil || !o.registerRetry || !registrationRetryable(err) {
			return id, secret, err
		}
		fmt.Fprintf(stderr, "kcarectl: register: %v; trying again in %s\n", err, wait)
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, registerRetry.most)
	}
}

// registrationRetryable reports whether a registration failed before the
// portal took it: the client reports an unreachable or busy portal
// (ErrUnreachable, after its own bounded retries of refused connections,
// 429 and 5xx), and not an answer lost after the request was sent
// (ErrMaybeTaken), which a second registration could double.
func registrationRetryable(err error) bool {
	return errors.Is(err, portalclient.ErrUnreachable) && !errors.Is(err, portalclient.ErrMaybeTaken)
}

// The checks --doctor makes, and what each found.
type doctorCheck struct {
	name string
	ok   bool
	note string
}

// runDoctor checks what kcarectl needs and prints one line a check:
// the kernel's livepatch support, the trusted keys, the portal's answer,
// and whether the recorded state agrees with the kernel. It returns 0
// when every check passed, else 1. Nothing is sent anywhere.
func runDoctor(ctx context.Context, a *agent.Agent, o *options, stdout io.Writer) int {
	var checks []doctorCheck
	add := func(name string, err error, note string) {
		c := doctorCheck{name: name, ok: err == nil, note: note}
		if err != nil {
			c.note = err.Error()
		}
		checks = append(checks, c)
	}
	info, err := a.Info()
	switch {
	case err != nil:
		add("kernel", err, "")
	case info.State == "unsupported":
		add("kernel", errors.New("no livepatch support (CONFIG_LIVEPATCH, /sys/kernel/livepatch)"), "")
	default:
		add("kernel", nil, fmt.Sprintf("%s, build-id %s, livepatch supported", info.Kernel.Release, info.Kernel.BuildID))
	}
	keys, err := trust.LoadKeyring(filepath.Join(o.root, keyringDir(a)))
	switch {
	case err != nil:
		add("keys", err, "")
	case keys.Len() == 0:
		add("keys", fmt.Errorf("no trusted keys in %s", keyringDir(a)), "")
	default:
		add("keys", nil, fmt.Sprintf("%d trusted in %s", keys.Len(), keyringDir(a)))
	}
	c := client(a, o)
	switch {
	case c.PatchServer == "":
		add("portal", errors.New("PATCH_SERVER is not set"), "")
	default:
		_, err := c.License(ctx)
		if err != nil {
			add("portal", fmt.Errorf("%s: %v", c.PatchServer, err), "")
		} else {
			add("portal", nil, c.PatchServer+" answers; this server is licensed")
		}
	}
	if info != nil {
		add("state", stateAgrees(info), fmt.Sprintf("recorded and loaded agree (level %d, %d kcare livepatches loaded)", info.Level, len(info.Livepatches)))
	}
	failed := 0
	for _, c := range checks {
		word := "ok"
		if !c.ok {
			word, failed = "FAIL", failed+1
		}
		fmt.Fprintf(stdout, "%-7s %-4s %s\n", c.name+":", word, c.note)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d of %d checks failed\n", failed, len(checks))
		return ExitError
	}
	fmt.Fprintf(stdout, "all %d checks passed\n", len(checks))
	return ExitOK
}

// stateAgrees reports, as an error, a recorded state the kernel does not
// bear out: kcare livepatches loaded that are not the recorded level's.
func stateAgrees(info *agent.Info) error {
	for _, lp := range info.Livepatches {
		if info.State != "applied" || lp != info.Module {
			return fmt.Errorf("the kernel has livepatch %s loaded, the recorded state says %s", lp, recordedName(info))
		}
	}
	return nil
}

func recordedName(info *agent.Info) string {
	if info.State == "applied" {
		return "level " + fmt.Sprint(info.Level) + " (" + info.Module + ")"
	}
	return "none applied"
}
