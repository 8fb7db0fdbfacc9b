package livepatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// tree writes files under a new temporary root.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestPatches(t *testing.T) {
	root := tree(t, map[string]string{
		"sys/kernel/livepatch/kcare_test_l2/enabled":    "1\n",
		"sys/kernel/livepatch/kcare_test_l2/transition": "0\n",
		"sys/kernel/livepatch/kcare_test_l3/enabled":    "1\n",
		"sys/kernel/livepatch/kcare_test_l3/transition": "1\n",
	})
	got, err := Sysfs{Root: root}.Patches()
	if err != nil {
		t.Fatal(err)
	}
	want := []Patch{{"kcare_test_l2", true, false}, {"kcare_test_l3", true, true}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Patches() = %+v, want %+v", got, want)
	}
}

func TestUnsupported(t *testing.T) {
	s := Sysfs{Root: tree(t, map[string]string{"proc/version": "Linux version 6.1.0-56-amd64\n"})}
	if s.Supported() {
		t.Error("Supported() = true on a tree without /sys/kernel/livepatch")
	}
	if _, err := s.Patches(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Patches() error = %v, want ErrUnsupported", err)
	}
}

func TestWaitTransitionStall(t *testing.T) {
	root := tree(t, map[string]string{
		"sys/kernel/livepatch/kcare_test_l3/enabled":    "1\n",
		"sys/kernel/livepatch/kcare_test_l3/transition": "1\n",
		"proc/1/comm":         "init\n",
		"proc/1/patch_state":  "1\n",
		"proc/77/comm":        "pauser\n",
		"proc/77/patch_state": "0\n",
		"proc/78/comm":        "kworker/0:1\n",
		"proc/78/patch_state": "-1\n",
		"proc/self/comm":      "x\n",
	})
	s := Sysfs{Root: root, Poll: time.Millisecond}
	err := s.WaitTransition(context.Background(), "kcare_test_l3", 20*time.Millisecond)
	var stall *StallError
	if !errors.As(err, &stall) || !errors.Is(err, ErrTimeout) {
		t.Fatalf("WaitTransition error = %v, want *StallError", err)
	}
	if len(stall.Tasks) != 1 || stall.Tasks[0].PID != 77 || stall.Tasks[0].Comm != "pauser" {
		t.Errorf("stalled tasks = %v, want [pauser[77]]", stall.Tasks)
	}
	if want := "transition of kcare_test_l3 did not finish within 20ms; stalled tasks: pauser[77]"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestWaitTransitionDone(t *testing.T) {
	root := tree(t, map[string]string{
		"sys/kernel/livepatch/kcare_test_l1/enabled":    "1\n",
		"sys/kernel/livepatch/kcare_test_l1/transition": "1\n",
	})
	s := Sysfs{Root: root, Poll: time.Millisecond}
	go func() {
		time.Sleep(10 * time.Millisecond)
		// Replace the file whole, as sysfs reads are: never half written.
		tmp := filepath.Join(root, "transition.tmp")
		os.WriteFile(tmp, []byte("0\n"), 0o644)
		os.Rename(tmp, filepath.Join(root, "sys/kernel/livepatch/kcare_test_l1/transition"))
	}()
	if err := s.WaitTransition(context.Background(), "kcare_test_l1", 5*time.Second); err != nil {
		t.Fatalf("WaitTransition: %v", err)
	}
}

func TestDisableAndWaitGone(t *testing.T) {
	root := tree(t, map[string]string{
		"sys/kernel/livepatch/kcare_test_l1/enabled":    "1\n",
		"sys/kernel/livepatch/kcare_test_l1/transition": "0\n",
	})
	s := Sysfs{Root: root, Poll: time.Millisecond}
	if err := s.Disable("kcare_test_l1"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(root, "sys/kernel/livepatch/kcare_test_l1/enabled"))
	if string(b) != "0" {
		t.Errorf("enabled = %q after Disable, want 0", b)
	}
	if err := s.WaitGone(context.Background(), "kcare_test_l1", 10*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitGone on a present patch = %v, want ErrTimeout", err)
	}
	os.RemoveAll(filepath.Join(root, "sys/kernel/livepatch/kcare_test_l1"))
	if err := s.WaitGone(context.Background(), "kcare_test_l1", time.Second); err != nil {
		t.Errorf("WaitGone after removal: %v", err)
	}
	if err := s.Disable("kcare_test_l1"); !errors.Is(err, ErrNoPatch) {
		t.Errorf("Disable of a missing patch = %v, want ErrNoPatch", err)
	}
}

func TestParseInt(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		err  bool
	}{{"1\n", 1, false}, {"0", 0, false}, {"-1\n", -1, false}, {"", 0, true}, {"yes\n", 0, true}} {
		got, err := ParseInt(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseInt(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}
