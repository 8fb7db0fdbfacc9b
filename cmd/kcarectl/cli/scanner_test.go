package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestScannerInterface(t *testing.T) {
	e := newEnv(t)
	passwd := "root:x:0:0:root:/root:/bin/bash\nqualys:x:1001:1001::/home/qualys:/bin/sh\nnessus:x:1002:1002::/home/nessus:/bin/sh\n"
	os.WriteFile(filepath.Join(e.root, "etc/passwd"), []byte(passwd), 0o644)
	users := filepath.Join(e.root, scannerUsersFile)
	profile := filepath.Join(e.root, scannerProfile)
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return "(missing)"
		}
		return string(b)
	}
	steps := []struct {
		args           []string
		code           int
		stdout         string
		users, profile string // "" for any content
	}{
		{[]string{"--scanner-interface", "enable", "qualys"}, ExitOK,
			"Warning: /usr/lib/kcare/libkcare_scanner.so is not installed; the scanner interface does nothing without it\nScanner interface enabled for qualys (uid 1001)\n",
			"qualys 1001\n", ""},
		{[]string{"--scanner-interface", "enable", "1002", "qualys"}, ExitOK,
			"Warning: /usr/lib/kcare/libkcare_scanner.so is not installed; the scanner interface does nothing without it\nScanner interface enabled for qualys (uid 1001), nessus (uid 1002)\n",
			"qualys 1001\nnessus 1002\n", ""},
		{[]string{"--scanner-interface", "enable", "root"}, ExitError, "", "qualys 1001\nnessus 1002\n", ""},
		{[]string{"--scanner-interface", "enable", "nobody-here"}, ExitError, "", "qualys 1001\nnessus 1002\n", ""},
		{[]string{"--scanner-interface", "enable"}, ExitUsage, "", "qualys 1001\nnessus 1002\n", ""},
		{[]string{"--scanner-interface", "frob"}, ExitUsage, "", "qualys 1001\nnessus 1002\n", ""},
		{[]string{"--scanner-interface", "enable", "qualys", "--json"}, ExitUsage, "", "qualys 1001\nnessus 1002\n", ""},
		{[]string{"--scanner-interface", "disable", "qualys"}, ExitOK, "Scanner interface enabled for nessus (uid 1002)\n", "nessus 1002\n", ""},
		{[]string{"--scanner-interface", "disable"}, ExitOK, "Scanner interface disabled\n", "(missing)", "(missing)"},
		{[]string{"--scanner-interface", "disable"}, ExitOK, "Scanner interface disabled\n", "(missing)", "(missing)"},
	}
	for _, s := range steps {
		stdout, stderr, code := e.run(s.args...)
		if code != s.code || (s.code == ExitOK && stdout != s.stdout) {
			t.Errorf("kcarectl %v: exit %d, stdout %q, stderr %q; want exit %d, stdout %q", s.args, code, stdout, stderr, s.code, s.stdout)
		}
		if got := read(users); got != s.users {
			t.Errorf("kcarectl %v: scanner-users %q, want %q", s.args, got, s.users)
		}
		if got := read(profile); s.profile != "" && got != s.profile || s.profile == "" && got != scannerProfileText {
			t.Errorf("kcarectl %v: profile script %q", s.args, got)
		}
	}
}

// TestScannerProfile runs the profile script in a real sh: it puts the
// library into LD_PRELOAD only for a listed user, once.
func TestScannerProfile(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	me, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Skip("no id")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "libkcare_scanner.so")
	os.WriteFile(lib, nil, 0o644)
	usersPath := filepath.Join(dir, "scanner-users")
	script := strings.NewReplacer("/etc/sysconfig/kcare/scanner-users", usersPath, ScannerLibrary, lib).Replace(scannerProfileText)
	profile := filepath.Join(dir, "kcare-scanner.sh")
	os.WriteFile(profile, []byte(script), 0o644)
	tests := []struct {
		name, users, preload, want string
	}{
		{"listed", "someone 1234\n" + strings.TrimSpace(string(me)) + " 4321\n", "", lib},
		{"listed_keeps_others", strings.TrimSpace(string(me)) + " 4321\n", "/opt/x.so", lib + " /opt/x.so"},
		{"listed_once", strings.TrimSpace(string(me)) + " 4321\n", lib, lib},
		{"not_listed", "someone 1234\n", "", ""},
		{"prefix_is_not_a_match", strings.TrimSpace(string(me)) + "x 1234\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.WriteFile(usersPath, []byte(tt.users), 0o644)
			cmd := exec.Command(sh, "-c", `. "$1"; printf %s "$LD_PRELOAD"`, "sh", profile)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LD_PRELOAD=" + tt.preload}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("sh: %v", err)
			}
			if string(out) != tt.want {
				t.Errorf("LD_PRELOAD = %q, want %q", out, tt.want)
			}
		})
	}
}
