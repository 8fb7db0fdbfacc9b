package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
)

// TestAutoUpdateWindow: --auto-update applies a new level only inside the
// key's maintenance window, which the portal evaluates and the index
// carries; outside it says when the window is, on stderr, and exits 0;
// --update by hand applies the level at once.
func TestAutoUpdateWindow(t *testing.T) {
	e, srv, publish := portalEnv(t)
	e.pack(t, 3)
	c := srv.Core()
	publish(1, time.Now().Add(-time.Hour))
	if _, stderr, code := e.run("--register", "fleet"); code != 0 {
		t.Fatalf("--register: exit %d: %s", code, stderr)
	}
	conf := filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf")
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(b, "AUTO_UPDATE=True\nAUTO_UPDATE_DELAY=0\n"...), 0o644)

	// A window that starts in two hours: the portal's clock and this
	// host's are the same one here.
	start := time.Now().UTC().Add(2 * time.Hour).Truncate(time.Hour)
	spec := fmt.Sprintf("* %02d:00-%02d:00", start.Hour(), start.Add(time.Hour).Hour())
	if err := c.SetKeyWindow(context.Background(), core.CLI, "fleet", spec); err != nil {
		t.Fatal(err)
	}
	publish(2, time.Now().Add(-time.Hour))
	stdout, stderr, code := e.run("--auto-update")
	want := fmt.Sprintf("kcarectl: level 2 waits for the maintenance window, %s to %s (kcarectl --update applies it now): nothing to do\n",
		start.Format(time.RFC3339), start.Add(time.Hour).Format(time.RFC3339))
	if code != 0 || stdout != "" || stderr != want {
		t.Errorf("--auto-update outside the window: exit %d, stdout %q, stderr %q; want exit 0 and %q", code, stdout, stderr, want)
	}
	if got := e.level(t); got != 1 {
		t.Errorf("level %d after --auto-update outside the window, want 1", got)
	}
	if stdout, stderr, code := e.run("--update"); code != 0 || e.level(t) != 2 {
		t.Errorf("--update by hand outside the window: exit %d, level %d; want level 2\n%s%s", code, e.level(t), stdout, stderr)
	}

	// Inside the window, --auto-update applies the next level.
	if err := c.SetKeyWindow(context.Background(), core.CLI, "fleet", "* 00:00-24:00"); err != nil {
		t.Fatal(err)
	}
	publish(3, time.Now().Add(-time.Hour))
	stdout, stderr, code = e.run("--auto-update")
	if code != 0 || stdout != "Kernel is patched: level 3, effective release 6.1.0-56.kcare3-amd64\n" {
		t.Errorf("--auto-update inside the window: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func (e *env) level(t *testing.T) int {
	t.Helper()
	stdout, _, _ := e.run("--info", "--json")
	i := strings.Index(stdout, `"level": `)
	var n int
	if i < 0 {
		t.Fatalf("--info --json has no level:\n%s", stdout)
	}
	fmt.Sscanf(stdout[i+len(`"level": `):], "%d", &n)
	return n
}

// TestPoll: --poll asks the portal with the tag of the answer it has and
// gets 304 while nothing changed; a new level that is not urgent waits
// for the timer's run; an urgent one is applied at once, as the update
// timer's run would, saying why on stderr.
func TestPoll(t *testing.T) {
	var mu sync.Mutex
	var codes []int
	count := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/api/v1/index/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := &statusRecorder{ResponseWriter: w}
			h.ServeHTTP(rec, r)
			mu.Lock()
			codes = append(codes, rec.code)
			mu.Unlock()
		})
	}
	polled := func() []int {
		mu.Lock()
		defer mu.Unlock()
		out := codes
		codes = nil
		return out
	}
	e, srv, publish := portalEnvWith(t, count)
	publish(1, time.Now().Add(-time.Hour))
	if _, stderr, code := e.run("--register", "fleet"); code != 0 {
		t.Fatalf("--register: exit %d: %s", code, stderr)
	}
	conf := filepath.Join(e.root, "etc/sysconfig/kcare/kcare.conf")
	b, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(b, "AUTO_UPDATE=True\n"...), 0o644)
	poll := func(what string, wantOut, wantErr string, wantCodes ...int) {
		t.Helper()
		stdout, stderr, code := e.run("--poll")
		if code != 0 || stdout != wantOut || stderr != wantErr {
			t.Errorf("--poll %s: exit %d, stdout %q, stderr %q; want exit 0, %q, %q", what, code, stdout, stderr, wantOut, wantErr)
		}
		if got := polled(); !slices.Equal(got, wantCodes) {
			t.Errorf("--poll %s: index requests answered %v, want %v", what, got, wantCodes)
		}
	}
	poll("first", "", "", 200)
	poll("nothing new", "", "", 304)
	publish(2, time.Now().Add(-time.Hour))
	poll("a new level", "", "", 200)
	if got := e.level(t); got != 1 {
		t.Errorf("level %d after polling a level that is not urgent, want 1", got)
	}
	ps, _ := srv.Core().Patchsets(context.Background())
	if err := srv.Core().SetPatchsetUrgent(context.Background(), core.CLI, ps[len(ps)-1].Name, true); err != nil {
		t.Fatal(err)
	}
	poll("an urgent level", "Kernel is patched: level 2, effective release 6.1.0-56.kcare2-amd64\n",
		"kcarectl: urgent level 2 is out; updating now\n", 200)
	if got := e.level(t); got != 2 {
		t.Errorf("level %d after polling an urgent level, want 2", got)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.ResponseWriter.Write(b)
}
