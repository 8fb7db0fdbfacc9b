package vm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// hostPortal is eportal serving on the host's loopback, which the guest
// reaches at 10.0.2.2.
type hostPortal struct {
	t     *testing.T
	f     *fixture.Fixture
	data  string
	port  int
	cmd   *exec.Cmd
	token string
	log   bytes.Buffer
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eportal runs an eportal admin command on the portal's data.
func (p *hostPortal) eportal(stdin string, args ...string) string {
	p.t.Helper()
	cmd := exec.Command(p.f.Path("eportal"), append(args, "--data", p.data)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("eportal %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

func (p *hostPortal) url() string { return fmt.Sprintf("http://127.0.0.1:%d", p.port) }

func (p *hostPortal) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.f.Path("eportal"), "serve", "--data", p.data, "--listen", fmt.Sprintf("127.0.0.1:%d", p.port))
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("waited 30s for eportal to answer: %v\n%s", err, p.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *hostPortal) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(25 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
		p.cmd = nil
	}
}

// publish uploads fixture level n with a release time.
func (p *hostPortal) publish(level int, released time.Time) {
	p.t.Helper()
	out, err := exec.Command(p.f.Path("kcare-build"), "publish", "--portal", p.url(), "--token", p.token,
		"--released", released.UTC().Format(time.RFC3339), p.f.Path(fmt.Sprintf("l%d.kcp", level))).CombinedOutput()
	if err != nil {
		p.t.Fatalf("kcare-build publish l%d: %v\n%s", level, err, out)
	}
}

// servers lists the portal's servers through its REST API.
func (p *hostPortal) servers() []map[string]any {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.url()+"/admin/api/servers", nil)
	req.Header.Set("X-Api-Key", p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data []map[string]any `json:"data"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return out.Data
}

func newHostPortal(t *testing.T, f *fixture.Fixture) *hostPortal {
	p := &hostPortal{t: t, f: f, data: t.TempDir(), port: freePort(t)}
	os.MkdirAll(filepath.Join(p.data, "publishers"), 0o755)
	pub, _ := os.ReadFile(f.Path("publisher.pub"))
	os.WriteFile(filepath.Join(p.data, "publishers", "publisher.pub"), pub, 0o644)
	p.eportal("correct horse battery\n", "user", "add", "admin", "--role", "admin")
	p.token = p.eportal("", "token", "add", "--user", "admin")
	p.start()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("eportal log:\n%s", tail(p.log.String(), 40))
		}
	})
	return p
}

func TestPortalScenarios(t *testing.T) {
	f := requireVM(t)
	p := newHostPortal(t, f)
	now := time.Now()
	p.publish(1, now.Add(-72*time.Hour))
	p.publish(2, now.Add(-60*time.Hour))
	fleet := p.eportal("", "key", "add", "--note", "fleet")
	sticky := p.eportal("", "key", "add", "--note", "sticky", "--sticky", now.Add(-48*time.Hour).UTC().Format("2006-01-02"))

	share, err := os.MkdirTemp("", "kcare-portal-share-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(share)
	pub, _ := os.ReadFile(filepath.Join(p.data, "portal.pub"))
	os.WriteFile(filepath.Join(share, "portal.pub"), pub, 0o644)
	g := boot(t, f, []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}}, false)
	release := f.Kernel.Release
	conf := func(lines ...string) {
		g.t.Helper()
		g.ok(fmt.Sprintf("mkdir -p /etc/sysconfig/kcare && printf '%%s\\n' %s > /etc/sysconfig/kcare/kcare.conf", shellWords(append([]string{
			"# kcare, set by the VM test",
			fmt.Sprintf("PATCH_SERVER=http://10.0.2.2:%d", p.port),
			"AUTO_UPDATE_DELAY=0",
		}, lines...))))
	}
	g.ok("cp /mnt/host/portal.pub /etc/sysconfig/kcare/keys/portal.pub")
	conf()

	t.Run("register_update_level2", func(t *testing.T) {
		g.t = t
		g.unpatched()
		r := g.kcarectl("--register " + fleet)
		if r.Exit != 0 {
			t.Fatalf("kcarectl --register: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		if r := g.kcarectl("--update"); r.Exit != 0 || !strings.Contains(r.Stdout, "already applied") {
			t.Errorf("kcarectl --update after registering: exit %d, %q; want level 2 already applied", r.Exit, r.Stdout)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want %q", got, cmdlineL2)
		}
		if got := strings.TrimSpace(g.ok("kcarectl --uname")); got != fixture.Effective(release, 2) {
			t.Errorf("kcarectl --uname = %q", got)
		}
		if mode := strings.TrimSpace(g.ok("stat -c %a /etc/sysconfig/kcare/server-secret")); mode != "600" {
			t.Errorf("server secret mode %s, want 600", mode)
		}
		srv := p.servers()
		if len(srv) != 1 || fmt.Sprint(srv[0]["patch_level"]) != "2" || srv[0]["kernel"] != release || srv[0]["checkin"] == nil {
			t.Errorf("portal's servers after the update: %v", srv)
		}
	})

	t.Run("prefix_48h_skips_new_level", func(t *testing.T) {
		g.t = t
		p.publish(3, time.Now().Add(-time.Hour))
		if r := g.kcarectl("--check"); r.Exit != 0 {
			t.Errorf("kcarectl --check with level 3 out: exit %d, want 0 (available)\n%s", r.Exit, r.Stdout)
		}
		if r := g.kcarectl("--status"); r.Exit != 2 {
			t.Errorf("kcarectl --status: exit %d, want 2 (newer patches not applied)\n%s", r.Exit, r.Stdout)
		}
		r := g.kcarectl("--update --prefix 48h")
		if r.Exit != 0 || g.cmdline() != cmdlineL2 {
			t.Errorf("--update --prefix 48h: exit %d, cmdline %q; want still level 2\n%s%s", r.Exit, g.cmdline(), r.Stdout, r.Stderr)
		}
	})

	t.Run("auto_update_off_does_nothing", func(t *testing.T) {
		g.t = t
		conf("AUTO_UPDATE=False")
		r := g.kcarectl("--auto-update")
		if r.Exit != 0 || r.Stdout != "" || g.cmdline() != cmdlineL2 {
			t.Errorf("--auto-update with AUTO_UPDATE=False: exit %d, stdout %q, cmdline %q; want nothing done", r.Exit, r.Stdout, g.cmdline())
		}
		conf("AUTO_UPDATE=True")
		r = g.kcarectl("--auto-update")
		if r.Exit != 0 || g.cmdline() != "kcare-fixture level 3\n" {
			t.Errorf("--auto-update with AUTO_UPDATE=True: exit %d, cmdline %q; want level 3\n%s", r.Exit, g.cmdline(), r.Stderr)
		}
		if r := g.kcarectl("--status"); r.Exit != 0 {
			t.Errorf("kcarectl --status at the newest level: exit %d, want 0\n%s", r.Exit, r.Stdout)
		}
	})

	t.Run("sticky_key_keeps_level2", func(t *testing.T) {
		g.t = t
		if r := g.kcarectl("--unregister"); r.Exit != 0 {
			t.Fatalf("--unregister: exit %d %s", r.Exit, r.Stderr)
		}
		conf("STICKY_PATCH=KEY")
		r := g.kcarectl("--register " + sticky)
		if r.Exit != 0 {
			t.Fatalf("--register sticky key: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want level 2's: the key is sticky before level 3", got)
		}
		if info := g.info(); info.Level != 2 {
			t.Errorf("info level %d, want 2", info.Level)
		}
		if lic := g.ok("kcarectl --license-info"); !strings.Contains(lic, "key: "+sticky) {
			t.Errorf("--license-info = %q, want the sticky key", lic)
		}
	})

	t.Run("portal_down_kernel_untouched", func(t *testing.T) {
		g.t = t
		p.stop()
		g.klpLog()
		r := g.kcarectl("--update")
		if r.Exit == 0 || !strings.Contains(r.Stderr, "patch server unreachable") {
			t.Errorf("--update with the portal stopped: exit %d, stderr %q; want a failure naming the unreachable patch server", r.Exit, r.Stderr)
		}
		if got := g.cmdline(); got != cmdlineL2 {
			t.Errorf("/proc/cmdline = %q, want level 2 untouched", got)
		}
		g.wantModules("kcare_test_l2", "kcare_test_l2")
		if log := g.klpLog(); len(log) != 0 {
			t.Errorf("kernel livepatch activity while the portal was down: %q", log)
		}
	})
}

// shellWords quotes words for a POSIX shell.
func shellWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

