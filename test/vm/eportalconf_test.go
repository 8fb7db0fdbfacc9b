package vm_test

import (
	"fmt"
	"strings"
	"testing"
)

// eportalStyleRegister: kcarectl --register on the real kernel with
// kcare.conf as ePortal's documentation (and the Puppet and Chef modules
// built on it) writes it: PATCH_SERVER with a trailing slash and
// REGISTRATION_URL=http://PORTAL/admin/api/kcare. key is sticky before
// the newest level, so the guest stays at level 2 for the scenarios after
// this one.
func eportalStyleRegister(t *testing.T, g *guest, p *hostPortal, key string) {
	g.t = t
	if r := g.kcarectl("--unregister"); r.Exit != 0 {
		t.Fatalf("--unregister: exit %d %s", r.Exit, r.Stderr)
	}
	g.ok(fmt.Sprintf("printf '%%s\\n' %s > /etc/sysconfig/kcare/kcare.conf", shellWords([]string{
		"AUTO_UPDATE=True",
		"PATCH_SERVER=" + p.GuestURL() + "/",
		"REGISTRATION_URL=" + p.GuestURL() + "/admin/api/kcare",
		"STICKY_PATCH=KEY",
	})))
	r := g.kcarectl("--register " + key)
	if r.Exit != 0 || !strings.HasPrefix(r.Stdout, "Server registered (id ") {
		t.Fatalf("kcarectl --register with ePortal's kcare.conf: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(strings.SplitN(r.Stdout, "\n", 2)[0], "Server registered (id "), ")")
	if got := g.cmdline(); got != cmdlineL2 {
		t.Errorf("/proc/cmdline = %q, want level 2's", got)
	}
	srv := p.servers()
	if len(srv) != 1 || srv[0]["id"] != id || fmt.Sprint(srv[0]["patch_level"]) != "2" {
		t.Errorf("portal's servers after registering at REGISTRATION_URL: %v, want %s at level 2", srv, id)
	}
}
