package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
