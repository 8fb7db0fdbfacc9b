package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/kmod"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/trust"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// env is a fake root with a fake kernel, a trusted publisher key in the
// default keyring directory, and signed bundles of levels 1 and 2.
type env struct {
	root string
	k    *fakekernel.Kernel
	dir  string // bundles
}

var publisher = func() *trust.Signer {
	priv, _, err := trust.GenerateKey("kcare cli test", "")
	if err != nil {
		panic(err)
	}
	s, err := trust.ReadSigner(priv)
	if err != nil {
		panic(err)
	}
	return s
}()

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	k, err := fakekernel.New(root, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	old := newLoader
	newLoader = func() kmod.Loader { return k }
	t.Cleanup(func() { newLoader = old })
	pub, _ := publisher.PublicKey()
	keys := filepath.Join(root, "etc/sysconfig/kcare/keys")
	os.MkdirAll(keys, 0o755)
	os.WriteFile(filepath.Join(keys, "publisher.pub"), pub, 0o644)
	e := &env{root: root, k: k, dir: t.TempDir()}
	for level := 1; level <= 2; level++ {
		e.pack(t, level)
	}
	return e
}

func (e *env) pack(t *testing.T, level int) {
	name := fmt.Sprintf("kcare_test_l%d", level)
	m := bundle.Manifest{
		Name:  fakekernel.Release + "-" + string(rune('0'+level)),
		Level: level,
		Kernel: bundle.Kernel{BuildID: fakekernel.BuildID, Release: fakekernel.Release,
			Version: fakekernel.Version, KernelID: kernel.KernelID(fakekernel.Version)},
		Module:           bundle.Module{File: name + ".ko", Name: name, Vermagic: fakekernel.Release + " SMP preempt mod_unload modversions "},
		CVEs:             []bundle.CVE{{ID: "CVE-2026-100" + string(rune('0'+level)), Description: "fixture fix", URL: "https://www.cve.org/CVERecord?id=CVE-2026-100" + string(rune('0'+level))}},
		EffectiveRelease: "6.1.0-56.kcare" + string(rune('0'+level)) + "-amd64",
		EffectiveVersion: fmt.Sprintf("6.1.%d-1", 192+2*level),
		Released:         time.Date(2026, 11, 10+level, 9, 0, 0, 0, time.UTC),
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, m, fakekernel.Module(name, m.Module.Vermagic, true)); err != nil {
		t.Fatal(err)
	}
	sig, err := publisher.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(e.dir, "l"+string(rune('0'+level))+".kcp")
	os.WriteFile(p, buf.Bytes(), 0o644)
	os.WriteFile(p+".sig", sig, 0o644)
}

func (e *env) run(args ...string) (stdout, stderr string, code int) {
	var o, x bytes.Buffer
	code = Run(context.Background(), append([]string{"--root", e.root}, args...), &o, &x)
	return o.String(), x.String(), code
}

// stable replaces what changes from run to run in an output.
var unstable = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|"applied": "[^"]*"|/tmp/[^ "\n]*`)

func golden(t *testing.T, name, got string) {
	t.Helper()
	got = unstable.ReplaceAllStringFunc(got, func(s string) string {
		switch {
		case strings.HasPrefix(s, `"applied"`):
			return `"applied": "TIME"`
		case strings.HasPrefix(s, "/tmp/"):
			return "PATH"
		}
		if strings.HasPrefix(s, "2026-11-1") {
			return s // release times are fixed
		}
		return "TIME"
	})
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n--- got ---\n%s--- want ---\n%s", name, path, got, want)
	}
}

func TestWorkflowGolden(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		name string
		args []string
		code int
	}{
		{"info_none", []string{"--info"}, ExitOK},
		{"uname_none", []string{"--uname"}, ExitOK},
		{"apply_l1", []string{"--apply", filepath.Join(e.dir, "l1.kcp")}, ExitOK},
		{"apply_l2", []string{"--apply", filepath.Join(e.dir, "l2.kcp")}, ExitOK},
		{"apply_l2_again", []string{"--apply", filepath.Join(e.dir, "l2.kcp")}, ExitOK},
		{"info_l2", []string{"--info"}, ExitOK},
		{"info_l2_json", []string{"--info", "--json"}, ExitOK},
		{"uname_l2", []string{"--uname"}, ExitOK},
		{"patch_info_l2", []string{"--patch-info"}, ExitOK},
		{"unload", []string{"--unload"}, ExitOK},
		{"unload_again", []string{"--unload"}, ExitOK},
		{"info_after_unload", []string{"--info"}, ExitOK},
	}
	for _, s := range steps {
		stdout, stderr, code := e.run(s.args...)
		if code != s.code {
			t.Fatalf("%s: exit %d, want %d\nstderr: %s", s.name, code, s.code, stderr)
		}
		golden(t, s.name, "stdout:\n"+stdout+"stderr:\n"+stderr)
	}
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	l1 := filepath.Join(e.dir, "l1.kcp")
	data, _ := os.ReadFile(l1)
	data[len(data)/2] ^= 1
	bad := filepath.Join(e.dir, "bad.kcp")
	os.WriteFile(bad, data, 0o644)
	sig, _ := os.ReadFile(l1 + ".sig")
	os.WriteFile(bad+".sig", sig, 0o644)
	unsigned := filepath.Join(e.dir, "unsigned.kcp")
	os.WriteFile(unsigned, data, 0o644)

	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no_action", nil, ExitUsage, "give exactly one action"},
		{"two_actions", []string{"--info", "--unload"}, ExitUsage, "give exactly one action"},
		{"unknown_flag", []string{"--frobnicate"}, ExitUsage, "flag provided but not defined"},
		{"stray_arg", []string{"--info", "extra"}, ExitUsage, "unexpected argument"},
		{"bad_signature", []string{"--apply", bad}, ExitRefused, "bad signature"},
		{"unsigned", []string{"--apply", unsigned}, ExitRefused, "unsigned"},
		{"missing_file", []string{"--apply", filepath.Join(e.dir, "nope.kcp")}, ExitError, "no such file"},
		{"bad_timeout", []string{"--apply", l1, "--transition-timeout", "soon"}, ExitError, "TRANSITION_TIMEOUT"},
		{"update_no_portal", []string{"--update"}, ExitError, "no patch server"},
		{"update_local_empty", []string{"--update", "--config", "/etc/local.conf"}, ExitOK, "no cached patches"},
	}
	os.WriteFile(filepath.Join(e.root, "etc/local.conf"), []byte("UPDATE_POLICY=LOCAL\n"), 0o644)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := e.run(tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %d containing %q", code, stderr, tt.code, tt.stderr)
			}
		})
	}
	if n := e.k.Loads(); n != 0 {
		t.Errorf("%d modules loaded by refused commands, want none", n)
	}
}

func TestConfigActions(t *testing.T) {
	e := newEnv(t)
	conf := filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf")
	os.WriteFile(conf, []byte("# my settings\nAUTO_UPDATE=True # keep\nPREFIX=12h\n"), 0o644)
	steps := []struct {
		args []string
		code int
		want string // kcare.conf afterwards
	}{
		{[]string{"--set-sticky-patch=271126"}, ExitOK, "# my settings\nAUTO_UPDATE=True # keep\nPREFIX=12h\nSTICKY_PATCH=271126\n"},
		{[]string{"--set-sticky-patch=KEY"}, ExitOK, "# my settings\nAUTO_UPDATE=True # keep\nPREFIX=12h\nSTICKY_PATCH=KEY\n"},
		{[]string{"--set-sticky-patch=991399"}, ExitError, "# my settings\nAUTO_UPDATE=True # keep\nPREFIX=12h\nSTICKY_PATCH=KEY\n"},
		{[]string{"--set-sticky-patch="}, ExitOK, "# my settings\nAUTO_UPDATE=True # keep\nPREFIX=12h\n"},
		{[]string{"--tag", "env:prod;rack:r12"}, ExitOK, "# my settings\nAUTO_UPDATE=True # keep\nPREFIX=12h\nTAGS='env:prod;rack:r12'\n"},
	}
	for _, s := range steps {
		_, stderr, code := e.run(s.args...)
		got, _ := os.ReadFile(conf)
		if code != s.code || string(got) != s.want {
			t.Errorf("kcarectl %v: exit %d (%s), kcare.conf\n%s\nwant exit %d and\n%s", s.args, code, stderr, got, s.code, s.want)
		}
	}
}

func TestAutoUpdateOff(t *testing.T) {
	e := newEnv(t)
	conf := filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf")
	os.WriteFile(conf, []byte("AUTO_UPDATE=NO\nPATCH_SERVER=http://127.0.0.1:9/\n"), 0o644)
	stdout, stderr, code := e.run("--auto-update")
	if code != 0 || stdout != "" || stderr != "" {
		t.Errorf("--auto-update with AUTO_UPDATE=NO: exit %d, stdout %q, stderr %q; want silence", code, stdout, stderr)
	}
}

// portalEnv is an env with a real eportal (in-process, SQLite) that the
// fake host talks to over HTTP.
func portalEnv(t *testing.T) (*env, *server.Server, func(level int, released time.Time)) {
	t.Helper()
	return portalEnvWith(t, nil)
}

// portalEnvWith is portalEnv with the portal's handler wrapped by wrap
// (nil: none).
func portalEnvWith(t *testing.T, wrap func(http.Handler) http.Handler) (*env, *server.Server, func(level int, released time.Time)) {
	t.Helper()
	e := newEnv(t)
	priv, pub, err := trust.GenerateKey("kcare cli test portal", "")
	if err != nil {
		t.Fatal(err)
	}
	portalKey, _ := trust.ReadSigner(priv)
	os.WriteFile(filepath.Join(e.root, "etc/sysconfig/kcare/keys/portal.pub"), pub, 0o644)
	ppub, _ := publisher.PublicKey()
	publishers, _ := trust.ReadKeyring(ppub)
	st := storetest.Open(t, "sqlite")
	srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: portalKey, Publishers: publishers})})
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	if err := st.AddKey(context.Background(), &store.Key{Key: "fleet", Feed: "main", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf"), []byte("PATCH_SERVER="+hs.URL+"\n"), 0o644)
	publish := func(level int, released time.Time) {
		t.Helper()
		p := filepath.Join(e.dir, fmt.Sprintf("l%d.kcp", level))
		data, _ := os.ReadFile(p)
		sig, _ := os.ReadFile(p + ".sig")
		if _, err := srv.Core().Publish(context.Background(), core.CLI, data, sig, core.PublishOptions{Released: released}); err != nil {
			t.Fatal(err)
		}
	}
	return e, srv, publish
}

func (e *env) patchState(t *testing.T) string {
	t.Helper()
	stdout, _, _ := e.run("--info", "--json")
	var info struct {
		PatchState string `json:"patch_state"`
	}
	if err := json.Unmarshal([]byte(stdout), &info); err != nil {
		t.Fatalf("--info --json: %v", err)
	}
	return info.PatchState
}

// TestCheckAndStatus: --check and --status exit codes, and --info's patch
// state, for each state, against a real portal.
func TestCheckAndStatus(t *testing.T) {
	e, _, publish := portalEnv(t)
	if _, stderr, code := e.run("--register", "fleet"); code != 0 {
		t.Fatalf("--register: exit %d: %s", code, stderr)
	}
	steps := []struct {
		name        string
		do          func()
		check       int
		status      int
		patchState  string
		statusWords string
	}{
		{"no_patches_for_kernel", func() {}, checkNone, statusUnsupported, "unsupported", "unsupported"},
		{"held_back_by_prefix", func() {
			publish(1, time.Now().Add(-time.Hour))
			os.WriteFile(filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf"), append(mustRead(t, filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf")), "PREFIX=48h\n"...), 0o644)
		}, checkNone, statusNoPatches, "uptodate", "No patches applied"},
		{"available_not_applied", func() {
			editFile(t, filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf"), "PREFIX=48h\n", "")
		}, checkAvailable, statusUpdates, "outofdate", "Newer patches available"},
		{"up_to_date", func() {
			if _, stderr, code := e.run("--update"); code != 0 {
				t.Fatalf("--update: %s", stderr)
			}
		}, checkNone, statusUpToDate, "uptodate", "up to date"},
		{"out_of_date", func() { publish(2, time.Now().Add(-time.Hour)) }, checkAvailable, statusUpdates, "outofdate", "Newer patches available"},
	}
	for _, s := range steps {
		s.do()
		if _, _, code := e.run("--check"); code != s.check {
			t.Errorf("%s: --check exit %d, want %d", s.name, code, s.check)
		}
		stdout, _, code := e.run("--status")
		if code != s.status || !strings.Contains(stdout, s.statusWords) {
			t.Errorf("%s: --status exit %d %q, want %d containing %q", s.name, code, stdout, s.status, s.statusWords)
		}
		if got := e.patchState(t); got != s.patchState {
			t.Errorf("%s: --info patch_state %q, want %q", s.name, got, s.patchState)
		}
	}
}

func TestStatusNoLivepatch(t *testing.T) {
	e, _, publish := portalEnv(t)
	publish(1, time.Now().Add(-time.Hour))
	os.RemoveAll(filepath.Join(e.root, "sys/kernel/livepatch"))
	e.run("--register", "fleet")
	if stdout, _, code := e.run("--status"); code != statusUnsupported || !strings.Contains(stdout, "no livepatch") {
		t.Errorf("--status without livepatch: exit %d %q, want %d", code, stdout, statusUnsupported)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func editFile(t *testing.T, p, old, new string) {
	t.Helper()
	os.WriteFile(p, []byte(strings.Replace(string(mustRead(t, p)), old, new, 1)), 0o644)
}

// withoutRun is a portal from before apitype.RunPath: it answers 404 there.
func withoutRun(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == apitype.RunPath {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestUpdateRefusesDowngrade: --update never takes the kernel below the
// level in effect on an index with no rollback order (exit 3, one line
// saying so); once the check-in told the portal the level in effect, the
// portal orders the rollback and the next --update follows it. The portal
// is one without the run endpoint, so the agent asks for the index first
// and checks in after it, as agents did before.
func TestUpdateRefusesDowngrade(t *testing.T) {
	e, _, publish := portalEnvWith(t, withoutRun)
	publish(1, time.Now().Add(-time.Hour))
	if _, stderr, code := e.run("--register", "fleet"); code != 0 {
		t.Fatalf("--register: exit %d: %s", code, stderr)
	}
	if stdout, stderr, code := e.run("--apply", filepath.Join(e.dir, "l2.kcp")); code != 0 {
		t.Fatalf("--apply level 2: exit %d: %s%s", code, stdout, stderr)
	}
	loads := e.k.Loads()
	stdout, stderr, code := e.run("--update")
	want := "kcarectl: downgrade refused: the index offers level 1, below level 2 in effect, and carries no rollback order for this server; " +
		"level 2 stays (kcarectl --unload or --apply to change it by hand)\n"
	if code != ExitRefused || stdout != "" || stderr != want {
		t.Errorf("--update to a lower level: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", code, stdout, stderr, ExitRefused, want)
	}
	if n := e.k.Loads(); n != loads {
		t.Errorf("%d modules loaded by the refused update, want none", n-loads)
	}
	// That run checked in at level 2; the portal now orders level 1.
	stdout, stderr, code = e.run("--update")
	if code != 0 || !strings.Contains(stderr, "kcarectl: the portal orders a rollback from level 2 to level 1\n") {
		t.Errorf("--update after the check-in: exit %d, stdout %q, stderr %q; want exit 0 and the rollback order", code, stdout, stderr)
	}
	if stdout, _, _ := e.run("--info", "--json"); !strings.Contains(stdout, `"level": 1,`) {
		t.Errorf("--info after the ordered rollback:\n%s", stdout)
	}
}

// TestUpdateOneRequest: a run with nothing new is one request, the
// check-in that carries the index question (apitype.RunPath); a run that
// applies a level checks in again with the level it applied. And as the
// run reports the level in effect with its question, a level applied by
// hand above the allowed one is ordered back at once.
func TestUpdateOneRequest(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	count := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Method+" "+r.URL.Path)
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	requests := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}
	e, srv, publish := portalEnvWith(t, count)
	publish(1, time.Now().Add(-time.Hour))
	if _, stderr, code := e.run("--register", "fleet"); code != 0 {
		t.Fatalf("--register: exit %d: %s", code, stderr)
	}
	id := strings.TrimSpace(string(mustRead(t, filepath.Join(e.root, "etc/sysconfig/kcare/systemid"))))
	l1 := "/blobs/sha256/" + bundleDigest(t, filepath.Join(e.dir, "l1.kcp"))
	want := []string{"POST /admin/api/register", "POST /api/v1/run", "GET " + l1, "POST /api/v1/checkin"}
	if got := requests(); !slices.Equal(got, want) {
		t.Errorf("--register applying level 1: requests %q, want %q", got, want)
	}
	if stdout, stderr, code := e.run("--update"); code != 0 || stdout != "Level 1 is already applied\n" {
		t.Errorf("--update with nothing new: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got, want := requests(), []string{"POST /api/v1/run"}; !slices.Equal(got, want) {
		t.Errorf("--update with nothing new: requests %q, want %q", got, want)
	}
	hist, err := srv.Core().CheckinHistory(context.Background(), id, 0)
	if err != nil || len(hist) != 2 || hist[0].Level != 1 || hist[1].Level != 0 {
		t.Errorf("check-in history %+v, %v; want level 1 after level 0", hist, err)
	}

	// Level 2 by hand: the next run reports it with its question, and
	// the portal orders it back to level 1 in the same answer.
	if stdout, stderr, code := e.run("--apply", filepath.Join(e.dir, "l2.kcp")); code != 0 {
		t.Fatalf("--apply level 2: exit %d: %s%s", code, stdout, stderr)
	}
	stdout, stderr, code := e.run("--update")
	if code != 0 || !strings.Contains(stderr, "kcarectl: the portal orders a rollback from level 2 to level 1\n") {
		t.Errorf("--update at level 2 by hand: exit %d, stdout %q, stderr %q; want exit 0 and the rollback order", code, stdout, stderr)
	}
	if stdout, _, _ := e.run("--info", "--json"); !strings.Contains(stdout, `"level": 1,`) {
		t.Errorf("--info after the ordered rollback:\n%s", stdout)
	}
}

// bundleDigest is the sha256 of the bundle at path, hex.
func bundleDigest(t *testing.T, path string) string {
	t.Helper()
	sum := sha256.Sum256(mustRead(t, path))
	return hex.EncodeToString(sum[:])
}

// TestPatchServerReplicas: PATCH_SERVER lists a portal's replicas; with
// the first down, kcarectl registers and updates through the next. A
// PATCH_SERVER set twice is refused, naming both lines, rather than one of
// them silently winning.
func TestPatchServerReplicas(t *testing.T) {
	e, _, publish := portalEnv(t)
	publish(1, time.Now().Add(-time.Hour))
	conf := filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf")
	live := strings.TrimSpace(strings.TrimPrefix(string(mustRead(t, conf)), "PATCH_SERVER="))
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	os.WriteFile(conf, []byte("PATCH_SERVER="+down.URL+","+live+"\n"), 0o644)
	if stdout, stderr, code := e.run("--register", "fleet"); code != 0 || !strings.Contains(stdout, "Kernel is patched: level 1") {
		t.Fatalf("--register with the first portal down: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if stdout, stderr, code := e.run("--update"); code != 0 || stdout != "Level 1 is already applied\n" {
		t.Errorf("--update with the first portal down: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	os.WriteFile(conf, []byte("PATCH_SERVER="+live+"\nPATCH_SERVER="+down.URL+"\n"), 0o644)
	_, stderr, code := e.run("--update")
	want := fmt.Sprintf("line 2: PATCH_SERVER=%q: PATCH_SERVER is set on line 1 already; set it once (several portals: one comma-separated list)", down.URL)
	if code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("--update with PATCH_SERVER set twice: exit %d, stderr %q; want an error saying %q", code, stderr, want)
	}
}
