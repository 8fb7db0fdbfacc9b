package vm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/vm/qemu"
)

// TestMirrorAndAirGap: a level published upstream reaches a mirror by
// `eportal sync`, and the guest, registered to the mirror (trusting only
// the mirror's index key), is patched from it; then a third portal that
// never talks to the upstream imports an export archive, and the guest
// is patched from that.
func TestMirrorAndAirGap(t *testing.T) {
	f := requireVM(t)
	up := newHostPortal(t, f)
	up.publish(1, time.Now().Add(-72*time.Hour))

	mir := newHostPortal(t, f)
	tokenFile := filepath.Join(t.TempDir(), "upstream-token")
	if err := os.WriteFile(tokenFile, []byte(up.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mir.eportal("", "sync", "--upstream", up.URL(), "--upstream-token-file", tokenFile)
	if !strings.Contains(out, "fetched 1 levels, refused 0") {
		t.Fatalf("eportal sync: %q", out)
	}
	if out := mir.eportal("", "sync", "--status"); !strings.Contains(out, `"healthy": true`) {
		t.Errorf("eportal sync --status: %s", out)
	}
	mirKey := mir.eportal("", "key", "add")

	share := t.TempDir()
	for name, p := range map[string]*hostPortal{"mirror": mir} {
		pub, _ := os.ReadFile(filepath.Join(p.Data, "portal.pub"))
		os.WriteFile(filepath.Join(share, name+".pub"), pub, 0o644)
	}
	g := boot(t, f, []qemu.Share{{Tag: "host", HostDir: share, GuestPath: "/mnt/host"}}, false)
	conf := func(p *hostPortal) {
		g.ok("printf '%s\\n' " + shellWords([]string{"PATCH_SERVER=" + p.GuestURL()}) + " > /etc/sysconfig/kcare/kcare.conf")
	}
	g.ok("mkdir -p /etc/sysconfig/kcare && cp /mnt/host/mirror.pub /etc/sysconfig/kcare/keys/")
	conf(mir)
	if r := g.kcarectl("--register " + mirKey); r.Exit != 0 {
		t.Fatalf("--register with the mirror: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if got := g.cmdline(); got != cmdlineL1 {
		t.Errorf("/proc/cmdline = %q, want level 1 from the mirror", got)
	}

	// The air-gapped portal: level 2 published upstream, exported,
	// carried over and imported; the upstream is stopped first.
	up.publish(2, time.Now().Add(-48*time.Hour))
	archive := filepath.Join(t.TempDir(), "levels.tar")
	up.eportal("", "export", "--out", archive)
	up.stop()
	gap := newHostPortal(t, f)
	if out := gap.eportal("", "import", archive); !strings.Contains(out, "imported 2 levels (2 new") {
		t.Fatalf("eportal import: %q", out)
	}
	gapKey := gap.eportal("", "key", "add")
	pub, _ := os.ReadFile(filepath.Join(gap.Data, "portal.pub"))
	os.WriteFile(filepath.Join(share, "airgap.pub"), pub, 0o644)
	g.ok("cp /mnt/host/airgap.pub /etc/sysconfig/kcare/keys/")
	if r := g.kcarectl("--unregister"); r.Exit != 0 {
		t.Fatalf("--unregister: %s", r.Stderr)
	}
	conf(gap)
	if r := g.kcarectl("--register " + gapKey); r.Exit != 0 {
		t.Fatalf("--register with the air-gapped portal: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	if got := g.cmdline(); got != cmdlineL2 {
		t.Errorf("/proc/cmdline = %q, want level 2 from the imported archive", got)
	}
}
