package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWritesDoNotFollowSymlinks: a local user who can plant a symbolic
// link where kcarectl writes (the temporary name it used to write through,
// or its lock) cannot make it write, create or change the file the link
// points at. Each case plants the link, runs kcarectl as root would, and
// checks the victim.
func TestWritesDoNotFollowSymlinks(t *testing.T) {
	const victimText = "victim: nothing of kcarectl's may land here\n"
	tests := []struct {
		name    string
		link    string // where the link is planted, under the root
		exists  bool   // the victim exists (else the link dangles)
		prepare func(t *testing.T, e *env)
		args    []string
		code    int
	}{
		{"server_secret_tmp", "etc/sysconfig/kcare/server-secret.tmp", true, nil, []string{"--register", "fleet"}, ExitOK},
		{"systemid_tmp", "etc/sysconfig/kcare/systemid.tmp", true, nil, []string{"--register", "fleet"}, ExitOK},
		{"server_secret_tmp_dangling", "etc/sysconfig/kcare/server-secret.tmp", false, nil, []string{"--register", "fleet"}, ExitOK},
		{"profile_script_tmp", "etc/profile.d/kcare-scanner.sh.tmp", true, addQualys, []string{"--scanner-interface", "enable", "qualys"}, ExitOK},
		{"scanner_users_tmp", "etc/sysconfig/kcare/scanner-users.tmp", true, addQualys, []string{"--scanner-interface", "enable", "qualys"}, ExitOK},
		{"kcare_conf_tmp", "etc/sysconfig/kcare/kcare.conf.tmp", true, nil, []string{"--set-sticky-patch=2026-11-01"}, ExitOK},
		// The lock is refused, not followed: the run fails and says why.
		{"lock", "var/lib/kcare/kcarectl.lock", true, nil, []string{"--unload"}, ExitError},
		{"lock_dangling", "var/lib/kcare/kcarectl.lock", false, nil, []string{"--unload"}, ExitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _, publish := portalEnv(t)
			publish(1, time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC))
			if tt.prepare != nil {
				tt.prepare(t, e)
			}
			victim := filepath.Join(t.TempDir(), "victim")
			if tt.exists {
				if err := os.WriteFile(victim, []byte(victimText), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(e.root, tt.link)
			if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := e.run(tt.args...)
			if code != tt.code {
				t.Errorf("kcarectl %v: exit %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.code, stdout, stderr)
			}
			if tt.code != ExitOK && !strings.Contains(stderr, "symbolic link") {
				t.Errorf("kcarectl %v: stderr %q does not say a symbolic link was refused", tt.args, stderr)
			}
			fi, err := os.Stat(victim)
			switch {
			case !tt.exists && !errors.Is(err, fs.ErrNotExist):
				t.Errorf("the dangling link's target was created (%v)", err)
			case tt.exists && err != nil:
				t.Errorf("victim: %v", err)
			case tt.exists:
				if b, _ := os.ReadFile(victim); string(b) != victimText {
					t.Errorf("victim now holds %q", b)
				}
				if fi.Mode().Perm() != 0o640 {
					t.Errorf("victim's mode is now %v, want -rw-r-----", fi.Mode().Perm())
				}
			}
		})
	}
}

// addQualys puts qualys (uid 1001) in the fake root's passwd.
func addQualys(t *testing.T, e *env) {
	t.Helper()
	passwd := "root:x:0:0:root:/root:/bin/bash\nqualys:x:1001:1001::/home/qualys:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(e.root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
}
