package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/charclass"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portalclient"
)

// Files kcarectl keeps its registration in, under /etc/sysconfig/kcare.
const (
	systemIDFile = "systemid"
	secretFile   = "server-secret"
)

func confDir(o *options) string { return filepath.Join(o.root, filepath.Dir(o.conf)) }

// client returns a portal client for the configuration and registration.
func client(a *agent.Agent, o *options) *portalclient.Client {
	c := &portalclient.Client{
		PatchServer:     a.Config.PatchServer,
		RegistrationURL: a.Config.RegistrationURL,
		UserAgent:       "kcarectl/" + Version,
	}
	if len(a.Config.PatchServers) > 1 {
		c.Alternates = a.Config.PatchServers[1:]
	}
	if id, err := os.ReadFile(filepath.Join(confDir(o), systemIDFile)); err == nil {
		c.ServerID = strings.TrimSpace(string(id))
	}
	if s, err := os.ReadFile(filepath.Join(confDir(o), secretFile)); err == nil {
		c.Secret = strings.TrimSpace(string(s))
	}
	tr, err := portalclient.NewTransport(portalclient.TransportOptions{
		HTTPProxy: a.Config.HTTPProxy, HTTPSProxy: a.Config.HTTPSProxy, CABundle: caBundle(a, o), Pins: a.Config.PatchServerPins,
	})
	if err != nil {
		// A bad setting must not silently fall back to another route.
		tr = &http.Transport{Proxy: func(*http.Request) (*url.URL, error) { return nil, err }}
	}
	c.HTTP = &http.Client{Timeout: 5 * time.Minute, Transport: tr}
	return c
}

// caBundle is CA_BUNDLE under the root.
func caBundle(a *agent.Agent, o *options) string {
	if a.Config.CABundle == "" {
		return ""
	}
	return filepath.Join(o.root, a.Config.CABundle)
}

// updateOptions are the inputs of an update: PREFIX, STICKY_PATCH,
// UPDATE_DELAY and STICKY_PATCHSET; for --auto-update and --smart-update,
// AUTO_UPDATE_DELAY and AUTO_STICKY_PATCHSET in their place when set, as
// KernelCare has them.
func updateOptions(a *agent.Agent, o *options, stderr io.Writer) agent.UpdateOptions {
	// --auto-update and --poll run by themselves, and wait for the
	// maintenance window.
	uo := agent.UpdateOptions{Prefix: a.Config.Prefix, Sticky: a.Config.StickyPatch,
		Delay: a.Config.UpdateDelay, Patchset: a.Config.StickyPatchset, Scheduled: o.autoUpdate || o.poll}
	if o.autoUpdate || o.smartUpdate {
		if a.Config.AutoUpdateDelay != "" {
			uo.Delay = a.Config.AutoUpdateDelay
		}
		if a.Config.AutoStickyPatchset != "" {
			uo.Patchset = a.Config.AutoStickyPatchset
		}
	}
	if uo.Delay == "0" {
		uo.Delay = ""
	}
	if o.prefix.set {
		uo.Prefix = o.prefix.v
	}
	if isTerminal(stderr) {
		uo.Progress = progressBar(stderr)
	}
	return uo
}

// runUpdate applies the newest allowed level as UPDATE_POLICY says:
// REMOTE through the portal, LOCAL the cached level with no network,
// LOCAL_FIRST the cached level first, then the portal.
func runUpdate(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) error {
	switch a.Config.UpdatePolicy {
	case config.UpdatePolicyLocal:
		res, err := a.UpdateLocal(ctx)
		if err != nil {
			return err
		}
		printApplied(stdout, res)
		return nil
	case config.UpdatePolicyLocalFirst:
		if res, err := a.UpdateLocal(ctx); err == nil {
			printApplied(stdout, res)
		} else if !errors.Is(err, agent.ErrNothingToDo) {
			fmt.Fprintf(stderr, "kcarectl: cached level: %v\n", err)
		}
	}
	return remoteUpdate(ctx, a, o, stdout, stderr)
}

// remoteUpdate updates from the portal and reports to it. The run's
// check-in goes with the index request (portalclient.Client.Report): when
// nothing changes, that one request is the whole run; when a level was
// applied, or the update failed, a second check-in says so.
func remoteUpdate(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) error {
	c := client(a, o)
	if c.PatchServer != "" {
		c.Report = report(a, o, nil)
	}
	res, err := a.Update(ctx, c, updateOptions(a, o, stderr))
	if res != nil && err == nil {
		printApplied(stdout, res)
	}
	if errors.Is(err, agent.ErrNothingToDo) {
		fmt.Fprintf(stdout, "%s\n", nothingMessage(err))
	}
	reported := c.Report == nil // stored with the index request
	if !reported || !errors.Is(err, agent.ErrNothingToDo) {
		checkIn(ctx, a, o, c, err, stderr)
	}
	return err
}

// nothingMessage is the first part of a nothing-to-do error, for stdout.
func nothingMessage(err error) string {
	msg := err.Error()
	msg = strings.TrimSuffix(msg, ": "+agent.ErrNothingToDo.Error())
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// checkIn reports the run to the portal; a failure is a warning.
func checkIn(ctx context.Context, a *agent.Agent, o *options, c *portalclient.Client, runErr error, stderr io.Writer) {
	if c.PatchServer == "" {
		return
	}
	ci := report(a, o, runErr)
	if ci == nil {
		return
	}
	if err := c.CheckIn(ctx, *ci); err != nil {
		fmt.Fprintf(stderr, "kcarectl: check-in: %v\n", err)
	}
}

// report is the check-in of a run that ended with runErr: the kernel and
// level in effect now, the outcome, and the kernel's health (now and at
// the last apply). nil when the state cannot be read.
func report(a *agent.Agent, o *options, runErr error) *apitype.CheckIn {
	info, err := a.Info()
	if err != nil {
		return nil
	}
	id, _ := kernel.Read(o.root)
	host, _ := os.Hostname()
	result := "ok"
	if runErr != nil && !errors.Is(runErr, agent.ErrNothingToDo) {
		result = runErr.Error()
	}
	ci := apitype.CheckIn{
		Hostname: validHostname(host), Release: info.Kernel.Release, BuildID: info.Kernel.BuildID, KernelID: id.KernelID(),
		Level: info.Level, EffectiveRelease: info.EffectiveRelease, Result: result, AgentVersion: Version,
	}
	if f, err := config.Load(filepath.Join(o.root, o.conf)); err == nil {
		if tags, ok := f.Get("TAGS"); ok {
			ci.Tags = &tags
		}
	}
	if t, err := a.Telemetry(); err == nil {
		ci.Telemetry = t
	} else if a.Log != nil {
		fmt.Fprintf(a.Log, "warning: the kernel's health is not reported: %v\n", err)
	}
	return &ci
}

var hostnameRE = apitype.HostnameRE

func validHostname(h string) string {
	if hostnameRE.MatchString(h) {
		return h
	}
	return ""
}

func runRegister(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) error {
	c := client(a, o)
	host, _ := os.Hostname()
	id, secret, err := register(ctx, c, o, validHostname(host), stderr)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	dir := confDir(o)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, secretFile), []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, systemIDFile), []byte(id+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Server registered (id %s)\n", id)
	return remoteUpdate(ctx, a, o, stdout, stderr)
}

func runUnregister(ctx context.Context, a *agent.Agent, o *options, stdout io.Writer) error {
	c := client(a, o)
	if c.ServerID == "" {
		return portalclient.ErrUnregistered
	}
	if err := c.Unregister(ctx); err != nil {
		return fmt.Errorf("unregister: %w", err)
	}
	os.Remove(filepath.Join(confDir(o), systemIDFile))
	os.Remove(filepath.Join(confDir(o), secretFile))
	fmt.Fprintln(stdout, "Server unregistered")
	return nil
}

// runAutoUpdate is what the timer runs (which waits a random while
// first): nothing when AUTO_UPDATE is off; else an update that prints only
// when something changed. With IGNORE_UNKNOWN_KERNEL, a kernel the portal
// has no patches for is not reported.
func runAutoUpdate(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) error {
	if !a.Config.AutoUpdate {
		return nil
	}
	a.Log = nil // quiet
	err := runUpdate(ctx, a, o, io.Discard, stderr)
	if errors.Is(err, agent.ErrUnknownKernel) && a.Config.IgnoreUnknownKernel {
		return nil
	}
	if err == nil {
		info, ierr := a.Info()
		if ierr == nil {
			fmt.Fprintf(stdout, "Kernel is patched: level %d, effective release %s\n", info.Level, info.EffectiveRelease)
		}
	}
	return err
}

// runPoll is what the poll timer runs, every few minutes between the
// update timer's runs: nothing when AUTO_UPDATE is off; else a
// conditional index request, and, when the answer changed and asks for
// it (an urgent level, a rollback order), an update at once, which
// prints only what it applied. Another kcarectl under way skips the poll.
func runPoll(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) error {
	if !a.Config.AutoUpdate {
		return nil
	}
	res, err := a.Poll(ctx, client(a, o), updateOptions(a, o, stderr))
	if errors.Is(err, agent.ErrLocked) {
		return nil
	}
	if err != nil || res.Act == "" {
		return err
	}
	fmt.Fprintf(stderr, "kcarectl: %s; updating now\n", res.Act)
	a.Log = nil // quiet
	if err := runUpdate(ctx, a, o, io.Discard, stderr); err != nil {
		return err
	}
	info, err := a.Info()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "Kernel is patched: level %d, effective release %s\n", info.Level, info.EffectiveRelease)
	return err
}

// runSetSticky writes STICKY_PATCH to kcare.conf (empty unsticks).
func runSetSticky(o *options, stdout io.Writer) error {
	v := o.sticky.v
	if v != "" && v != "KEY" {
		if _, err := config.ParseStickyDate(v); err != nil {
			return fmt.Errorf("--set-sticky-patch: %w", err)
		}
	}
	return editConf(o, func(f *config.File) {
		if v == "" {
			f.Unset("STICKY_PATCH")
			fmt.Fprintln(stdout, "Sticky patch unset")
			return
		}
		f.Set("STICKY_PATCH", v)
		fmt.Fprintf(stdout, "Sticky patch set to %s\n", v)
	})
}

func editConf(o *options, edit func(f *config.File)) error {
	path := filepath.Join(o.root, o.conf)
	f, err := config.Load(path)
	if err != nil {
		return err
	}
	edit(f)
	if _, err := f.Config(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return f.Save(path, 0o644)
}

// Exit codes of --check and --status.
const (
	checkAvailable = 0
	checkNone      = 1

	statusUpToDate    = 0
	statusNoPatches   = 1
	statusUpdates     = 2
	statusUnsupported = 3
)

func runCheck(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) int {
	st, err := a.CheckStatus(ctx, client(a, o), updateOptions(a, o, stderr))
	if err != nil {
		fail(stderr, err)
		return checkNone
	}
	if st.Available > st.Applied {
		fmt.Fprintf(stdout, "New patches available: level %d (applied: %d)\n", st.Available, st.Applied)
		return checkAvailable
	}
	fmt.Fprintln(stdout, "No new patches available")
	return checkNone
}

func runStatus(ctx context.Context, a *agent.Agent, o *options, stdout, stderr io.Writer) int {
	st, err := a.CheckStatus(ctx, client(a, o), updateOptions(a, o, stderr))
	switch {
	case errors.Is(err, agent.ErrNoLivepatch):
		fmt.Fprintln(stdout, "Kernel is unsupported (no livepatch support)")
		return statusUnsupported
	case err != nil:
		fail(stderr, err)
		return ExitError
	case st.Latest == 0 && st.Applied == 0:
		fmt.Fprintln(stdout, "Kernel is unsupported (no patches for this kernel)")
		return statusUnsupported
	case st.Available > st.Applied:
		fmt.Fprintf(stdout, "Newer patches available: level %d (applied: %d)\n", st.Available, st.Applied)
		return statusUpdates
	case st.Applied == 0:
		fmt.Fprintln(stdout, "No patches applied")
		return statusNoPatches
	}
	fmt.Fprintf(stdout, "Kernel is up to date: level %d\n", st.Applied)
	return statusUpToDate
}

func runLicenseInfo(ctx context.Context, a *agent.Agent, o *options, stdout io.Writer) error {
	lic, err := client(a, o).License(ctx)
	if err != nil {
		return err
	}
	line := func(name, v string) {
		if v != "" {
			fmt.Fprintf(stdout, "%s: %s\n", name, v)
		}
	}
	line("type", string(lic.Type))
	line("server_id", lic.ServerID)
	if k := lic.Key; k != nil {
		line("key", k.Key)
		line("feed", lic.Feed)
		line("limit", strconv.Itoa(k.Limit))
		line("servers", strconv.Itoa(k.Servers))
		line("sticky", k.Sticky)
		line("note", k.Note)
		return nil
	}
	line("feed", lic.Feed)
	return nil
}

var tagsRE = charclass.New("^\n\r\x00\"'\\", 0, 500)

func runTag(ctx context.Context, a *agent.Agent, o *options, stdout io.Writer) error {
	if !tagsRE.MatchString(o.tag.v) {
		return fmt.Errorf("--tag: bad value %q", o.tag.v)
	}
	if err := editConf(o, func(f *config.File) { f.Set("TAGS", o.tag.v) }); err != nil {
		return err
	}
	c := client(a, o)
	if c.PatchServer != "" && c.ServerID != "" {
		checkIn(ctx, a, o, c, nil, io.Discard)
	}
	fmt.Fprintf(stdout, "Tags set: %s\n", o.tag.v)
	return nil
}
