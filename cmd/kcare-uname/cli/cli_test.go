package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	k, err := fakekernel.New(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	oldRoot, oldUname := root, readUname
	defer func() { root, readUname = oldRoot, oldUname }()
	root = dir
	readUname = func() (Uname, error) {
		return Uname{"Linux", "web1", fakekernel.Release, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)", "x86_64"}, nil
	}
	tests := []struct {
		args []string
		want string
		code int
	}{
		{nil, "Linux\n", 0},
		{[]string{"-r"}, "6.1.0-56-amd64\n", 0},
		{[]string{"-sr"}, "Linux 6.1.0-56-amd64\n", 0},
		{[]string{"--kernel-release", "-m"}, "6.1.0-56-amd64 x86_64\n", 0},
		{[]string{"-a"}, "Linux web1 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16) x86_64 GNU/Linux\n", 0},
		{[]string{"--all"}, "Linux web1 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16) x86_64 GNU/Linux\n", 0},
		{[]string{"-ap"}, "Linux web1 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16) x86_64 GNU/Linux\n", 0},
		{[]string{"-p"}, "unknown\n", 0},
		{[]string{"-i", "-o"}, "unknown GNU/Linux\n", 0},
		{[]string{"-v"}, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\n", 0},
		{[]string{"--kernel-r", "--proc"}, "6.1.0-56-amd64 unknown\n", 0},
		{[]string{"--kernel"}, "", 2}, // ambiguous
		{[]string{"--frob"}, "", 2},
		{[]string{"-x"}, "", 2},
		{[]string{"extra"}, "", 2},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := Run(tt.args, &out, &errb)
		if code != tt.code || out.String() != tt.want {
			t.Errorf("kcare-uname %v = %q exit %d, want %q exit %d (stderr %q)", tt.args, out.String(), code, tt.want, tt.code, errb.String())
		}
	}

	// With a level applied (recorded and enabled in the kernel), -r shows
	// the effective release.
	m := bundle.Manifest{
		Format: bundle.FormatVersion, Name: fakekernel.Release + "-2", Level: 2,
		Kernel: bundle.Kernel{BuildID: fakekernel.BuildID, Release: fakekernel.Release,
			Version: fakekernel.Version, KernelID: kernel.KernelID(fakekernel.Version)},
		Module: bundle.Module{File: "kcare_test_l2.ko", Name: "kcare_test_l2", Vermagic: fakekernel.Release + " SMP preempt mod_unload modversions ",
			Size: 4096, SHA256: strings.Repeat("ab", 32)},
		EffectiveRelease: "6.1.0-56.kcare2-amd64", EffectiveVersion: "6.1.195-1",
		Released: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("the test's manifest: %v", err)
	}
	stateJSON, _ := json.Marshal(map[string]any{"manifest": m})
	state := string(stateJSON)
	os.MkdirAll(filepath.Join(dir, "var/lib/kcare"), 0o755)
	os.WriteFile(filepath.Join(dir, "var/lib/kcare/state.json"), []byte(state), 0o644)
	var out bytes.Buffer
	Run([]string{"-r"}, &out, &out)
	if out.String() != "6.1.0-56-amd64\n" {
		t.Errorf("recorded but not in the kernel: -r = %q, want the kernel's release", out.String())
	}
	lp := filepath.Join(dir, "sys/kernel/livepatch/kcare_test_l2")
	os.MkdirAll(lp, 0o755)
	os.WriteFile(filepath.Join(lp, "enabled"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(lp, "transition"), []byte("0\n"), 0o644)
	out.Reset()
	Run([]string{"-r"}, &out, &out)
	if out.String() != "6.1.0-56.kcare2-amd64\n" {
		t.Errorf("applied: -r = %q, want the effective release", out.String())
	}
	// -a differs from uname -a in the release and version fields only:
	// the version is the kernel's own (/proc/version) with the effective
	// package version and the level's release date.
	out.Reset()
	Run([]string{"-a"}, &out, &out)
	if want := "Linux web1 6.1.0-56.kcare2-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-20) x86_64 GNU/Linux\n"; out.String() != want {
		t.Errorf("applied: -a = %q, want %q", out.String(), want)
	}
}
