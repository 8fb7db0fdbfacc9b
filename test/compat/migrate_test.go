package compat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrate: eportal migrate copies a second portal's feeds and keys
// through ePortal's REST API (the second portal standing in for an
// ePortal), after a dry run that changes nothing; a second run finds
// everything already here; a change at the source is carried over. The
// password comes from a file or the environment, never the command line.
func TestMigrate(t *testing.T) {
	src := newFleet(t)
	src.api(t, "POST", "/admin/api/feeds/?name=slow&deploy_after=48&auto=true")
	src.api(t, "POST", "/admin/api/feeds/?name=canary&channel=test")
	src.api(t, "POST", "/admin/api/keys/?key=mig-web&feed=slow&note=web%20servers&server_limit=20")
	register(t, src.portal, "mig-web", "web-1")
	register(t, src.portal, "mig-web", "web-2")
	register(t, src.portal, "compat-key-b", "db-1")
	dst := newPortal(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	os.WriteFile(pwFile, []byte(src.adminPW+"\n"), 0o600)
	migrate := func(args ...string) string {
		t.Helper()
		return dst.eportal("", append([]string{"migrate", "--from", src.url, "--user", "admin", "--password-file", pwFile}, args...)...)
	}
	want := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s:\n%s\nwant:\n%s", what, got, want)
		}
	}
	plan := `would add feed canary (channel test, deploy after 0h, auto false)
would add feed slow (channel stable, deploy after 48h, auto true)
would add key compat-key-a (feed main, limit 0, note "first")
would add key compat-key-b (feed main, limit 0, note "")
would add key mig-web (feed slow, limit 20, note "web servers")
servers: 2 under key mig-web: run kcarectl --register on each (ePortal's API gives no server secret to carry over)
servers: 1 under key compat-key-b: run kcarectl --register on each (ePortal's API gives no server secret to carry over)
3 feeds, 3 keys, 3 servers read; 5 changes to make (dry run: nothing changed)`
	want("dry run", migrate("--dry-run"), plan)
	if keys := dst.api(t, "GET", "/admin/api/keys/"); keys.body != `{"result":[]}`+"\n" {
		t.Errorf("keys after the dry run: %s", keys.body)
	}
	want("migrate", migrate(), strings.ReplaceAll(strings.ReplaceAll(plan, "would ", ""), "to make (dry run: nothing changed)", "made"))
	wantCode(t, "the key copied", dst.api(t, "GET", "/admin/api/keys/"), 200, `{"key":"mig-web","feed":"slow","note":"web servers","server_limit":20`)
	wantCode(t, "the feed copied", dst.api(t, "GET", "/admin/api/feeds/"), 200, `{"name":"slow","auto":true,"deploy_after":48,"channel":"default"}`)
	want("again", migrate(), `feed canary: already here
feed slow: already here
key compat-key-a: already here
key compat-key-b: already here
key mig-web: already here
servers: 2 under key mig-web: run kcarectl --register on each (ePortal's API gives no server secret to carry over)
servers: 1 under key compat-key-b: run kcarectl --register on each (ePortal's API gives no server secret to carry over)
3 feeds, 3 keys, 3 servers read; 0 changes made`)
	src.api(t, "POST", "/admin/api/keys/?key=mig-web&server_limit=25")
	if got := migrate(); !strings.Contains(got, `change key mig-web to feed slow, limit 25, note "web servers"`) || !strings.HasSuffix(got, "1 changes made") {
		t.Errorf("after a change at the source:\n%s", got)
	}
	// A migrated key registers servers here at once.
	h := newHost(t, dst, "PATCH_SERVER="+dst.url)
	if out := h.must("--register", "mig-web"); !strings.HasPrefix(out, "Server registered") {
		t.Errorf("--register with a migrated key: %q", out)
	}

	// The password: never on the command line; a wrong one is refused.
	if _, stderr, err := dst.eportalRun("", "migrate", "--from", src.url, "--user", "admin", "--password", src.adminPW); err == nil || !strings.Contains(stderr, "-password") {
		t.Errorf("--password accepted: %v %s", err, stderr)
	}
	os.WriteFile(pwFile, []byte("wrong\n"), 0o600)
	if _, stderr, err := dst.eportalRun("", "migrate", "--from", src.url, "--user", "admin", "--password-file", pwFile); err == nil || !strings.Contains(stderr, "401") {
		t.Errorf("a wrong password: %v %s", err, stderr)
	}
	cmd := []string{"migrate", "--from", src.url, "--user", "admin", "--dry-run"}
	os.Setenv(migrateEnvForTest, src.adminPW)
	defer os.Unsetenv(migrateEnvForTest)
	if out, stderr, err := dst.eportalRun("", cmd...); err != nil || !strings.HasSuffix(strings.TrimSpace(out), "0 changes to make (dry run: nothing changed)") {
		t.Errorf("the password from %s: %v %s%s", migrateEnvForTest, err, out, stderr)
	}
}

const migrateEnvForTest = "EPORTAL_PASSWORD"
