package kernel_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/taint"
)

// healthTree writes the files ReadHealth reads under a new root; a value
// "" leaves the file out.
func healthTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, v := range files {
		if v == "" {
			continue
		}
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const bootID = "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19"

func TestReadHealth(t *testing.T) {
	base := func(warn, oops string) map[string]string {
		return map[string]string{
			"proc/sys/kernel/random/boot_id": bootID + "\n",
			"proc/uptime":                    "7245.31 14302.55\n",
			"proc/sys/kernel/tainted":        "45568\n",
			"sys/kernel/warn_count":          warn,
			"sys/kernel/oops_count":          oops,
		}
	}
	t.Run("sysfs_counts", func(t *testing.T) {
		h, err := kernel.ReadHealth(healthTree(t, base("3\n", "0\n")))
		want := kernel.Health{BootID: bootID, Uptime: 7245310 * time.Millisecond, Taint: taint.Warn | taint.Livepatch | taint.OutOfTree | taint.Unsigned,
			Warnings: 3, Oopses: 0, CountsFrom: kernel.CountsSysfs}
		if err != nil || h != want {
			t.Errorf("ReadHealth = %+v, %v; want %+v", h, err, want)
		}
	})
	t.Run("no_counters", func(t *testing.T) {
		h, err := kernel.ReadHealth(healthTree(t, base("", "")))
		if err != nil || h.Warnings != -1 || h.Oopses != -1 || h.CountsFrom != "" {
			t.Errorf("ReadHealth without warn_count = %+v, %v; want counts -1 from nowhere", h, err)
		}
	})
	for name, files := range map[string]map[string]string{
		"bad_boot_id": {"proc/sys/kernel/random/boot_id": "not-a-uuid\n", "proc/uptime": "1.00 1.00\n", "proc/sys/kernel/tainted": "0\n"},
		"bad_uptime":  {"proc/sys/kernel/random/boot_id": bootID, "proc/uptime": "soon\n", "proc/sys/kernel/tainted": "0\n"},
		"bad_taint":   {"proc/sys/kernel/random/boot_id": bootID, "proc/uptime": "1.00 1.00\n", "proc/sys/kernel/tainted": "W\n"},
		"bad_count":   {"proc/sys/kernel/random/boot_id": bootID, "proc/uptime": "1.00 1.00\n", "proc/sys/kernel/tainted": "0\n", "sys/kernel/warn_count": "-2\n", "sys/kernel/oops_count": "0\n"},
	} {
		t.Run(name, func(t *testing.T) {
			if h, err := kernel.ReadHealth(healthTree(t, files)); err == nil {
				t.Errorf("ReadHealth = %+v, want an error", h)
			}
		})
	}
}

// kmsg is a kernel log as /dev/kmsg gives it, records 40 to 46: two
// warnings (one with its continuation lines) and an oops.
const kmsg = `6,40,5012345,-;kcare_test_l1: tainting kernel with TAINT_LIVEPATCH
4,41,5012400,-;WARNING: CPU: 1 PID: 812 at kcare_test_warn/livepatch.c:61 livepatch_init+0x15/0x30 [kcare_test_warn]
 SUBSYSTEM=module
 DEVICE=+module:kcare_test_warn
4,42,5012410,c;Modules linked in: kcare_test_warn(OEK+) 9p
4,43,6100000,-;WARNING: CPU: 0 PID: 1 at mm/slub.c:4410 kfree+0x9e/0xb0
1,44,7000000,-;Oops: 0002 [#1] PREEMPT SMP NOPTI
6,45,7000100,-;something about Oops: 0002 [#1] said later
6,46,7000200,-;livepatch: 'kcare_test_l1': starting patching transition
`

func TestParseKmsg(t *testing.T) {
	tests := []struct {
		name  string
		after uint64
		all   bool
		want  kernel.KmsgCount
	}{
		{"first_read_of_a_boot", 0, true, kernel.KmsgCount{Warnings: 2, Oopses: 1, Last: 46}},
		{"after_the_first_warning", 41, false, kernel.KmsgCount{Warnings: 1, Oopses: 1, Last: 46}},
		{"nothing_new", 46, false, kernel.KmsgCount{Last: 46}},
		{"wrapped_since", 20, false, kernel.KmsgCount{Warnings: 2, Oopses: 1, Last: 46, Lost: true}},
		{"right_after", 39, false, kernel.KmsgCount{Warnings: 2, Oopses: 1, Last: 46}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kernel.ParseKmsg([]byte(kmsg), tt.after, tt.all)
			if err != nil || got != tt.want {
				t.Errorf("ParseKmsg(after %d, all %v) = %+v, %v; want %+v", tt.after, tt.all, got, err, tt.want)
			}
		})
	}
	if _, err := kernel.ParseKmsg([]byte("no header here\n"), 0, true); err == nil {
		t.Error("ParseKmsg of a line with no header: no error")
	}
}

func TestReadKmsgFile(t *testing.T) {
	root := healthTree(t, map[string]string{"dev/kmsg": kmsg})
	got, err := kernel.ReadKmsg(root, 42, false)
	want := kernel.KmsgCount{Warnings: 1, Oopses: 1, Last: 46}
	if err != nil || got != want {
		t.Errorf("ReadKmsg = %+v, %v; want %+v", got, err, want)
	}
}

func TestParseUptime(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{{"0.52 0.91\n", 520 * time.Millisecond}, {"350735.47 234388.90\n", 350735470 * time.Millisecond}} {
		if got, err := kernel.ParseUptime(tt.in); err != nil || got != tt.want {
			t.Errorf("ParseUptime(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "12.0", "-1.0 2.0", "x y"} {
		if got, err := kernel.ParseUptime(in); err == nil {
			t.Errorf("ParseUptime(%q) = %s, want an error", in, got)
		}
	}
}
