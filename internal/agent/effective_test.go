package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
)

func TestEffectiveRoundTrip(t *testing.T) {
	m := manifest(2)
	m.EffectiveVersion = "6.1.195-1"
	e := EffectiveOf(&m, kernel.UTSVersion(fakekernel.Version))
	want := "6.1.0-56.10002-amd64\n#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-02)\n6.1.195-1\n6.1.0-56-amd64\n" +
		fakekernel.BuildID + "\nkcare_test_l2\n"
	if got := string(e.Marshal()); got != want {
		t.Errorf("Marshal = %q, want %q", got, want)
	}
	back, err := ParseEffective(e.Marshal())
	if err != nil || back != e {
		t.Errorf("ParseEffective(Marshal(e)) = %+v, %v; want %+v", back, err, e)
	}
	for _, bad := range []string{"", "one\n", "a\nb\nc\nd\ne\nf", "a\nb\nc\nd\ne\nf\ng\n", "\nb\nc\nd\ne\nf\n"} {
		if _, err := ParseEffective([]byte(bad)); err == nil {
			t.Errorf("ParseEffective(%q) succeeded, want an error", bad)
		}
	}
}

// TestEffectiveFiles checks the files the scanner interface reads: written
// on apply, replaced by the next level, agreeing with Info (and so with
// kcare-uname), removed on unload.
func TestEffectiveFiles(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t, root, true)
	dir := filepath.Join(root, "var/lib/kcare")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return string(b)
	}
	e.apply(t, 1)
	m := manifest(2)
	m.EffectiveVersion = "6.1.195-1"
	data, sig := pack(t, publisher, m)
	if _, err := e.a.Apply(context.Background(), data, sig); err != nil {
		t.Fatal(err)
	}
	info := e.info(t)
	got, err := ParseEffective([]byte(read(EffectiveFile)))
	if err != nil {
		t.Fatal(err)
	}
	want := kernel.Effective{
		Release: "6.1.0-56.10002-amd64", Version: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-02)", PackageVersion: "6.1.195-1",
		KernelRelease: fakekernel.Release, BuildID: fakekernel.BuildID, Module: "kcare_test_l2",
	}
	if got != want {
		t.Errorf("effective_version = %+v, want %+v", got, want)
	}
	if info.EffectiveRelease != got.Release || info.EffectiveKernelVersion != got.Version || info.EffectiveVersion != got.PackageVersion {
		t.Errorf("Info says %q / %q / %q, the file %q / %q / %q", info.EffectiveRelease, info.EffectiveKernelVersion, info.EffectiveVersion,
			got.Release, got.Version, got.PackageVersion)
	}
	if got := read(CVEListFile); got != "CVE-2026-10002\n" {
		t.Errorf("cvelist = %q, want the level's CVEs", got)
	}
	if _, err := e.a.Unload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{EffectiveFile, CVEListFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after unload: %v, want it gone", f, err)
		}
	}
}
