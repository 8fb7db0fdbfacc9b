package faultpoint_test

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// build builds kcarectl, with the build tags given, and returns its
// symbol names and its bytes.
func build(t *testing.T, tags string) ([]string, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kcarectl")
	args := []string{"build", "-trimpath", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, "github.com/kcare/kcare/cmd/kcarectl")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range syms {
		names = append(names, s.Name)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return names, data
}

// faultCode lists what marks fault code in a binary: symbols of this
// package and the name of its environment variable.
func faultCode(names []string, data []byte) []string {
	var found []string
	for _, n := range names {
		if strings.Contains(n, "internal/faultpoint.") {
			found = append(found, n)
		}
	}
	if bytes.Contains(data, []byte("KCARE_FAULT")) {
		found = append(found, `string "KCARE_FAULT"`)
	}
	return found
}

// TestNoFaultCodeWithoutTag builds kcarectl as a release is built, and
// with the faults tag: the first must hold no fault code, the second must
// (else the check could not fail).
func TestNoFaultCodeWithoutTag(t *testing.T) {
	if found := faultCode(build(t, "")); len(found) != 0 {
		t.Errorf("kcarectl built without the faults tag holds fault code: %s", strings.Join(found, ", "))
	}
	found := faultCode(build(t, "faults"))
	var sym, env bool
	for _, f := range found {
		sym = sym || strings.HasSuffix(f, "faultpoint.Hit")
		env = env || strings.Contains(f, "KCARE_FAULT")
	}
	if !sym || !env {
		t.Errorf("kcarectl built with the faults tag: found %q, want faultpoint.Hit and KCARE_FAULT", found)
	}
}
