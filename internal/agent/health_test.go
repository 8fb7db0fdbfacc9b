package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/taint"
)

// TestTelemetryAfterApplies: the check-in's telemetry names the last
// apply and the kernel's health just before it; a level whose load logs
// a warning is recorded as unhealthy, and the telemetry shows the warning
// and the W taint beside the apply's own counts.
func TestTelemetryAfterApplies(t *testing.T) {
	e := newEnv(t, t.TempDir(), true)
	if tel, err := e.a.Telemetry(); err != nil || tel.LastApply != nil || tel.TaintFlags != "" || tel.Warnings != 0 || tel.CountsFrom != apitype.CountsSysfs {
		t.Fatalf("Telemetry before any apply = %+v, %v", tel, err)
	}
	e.apply(t, 1)
	tel, err := e.a.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	if a := tel.LastApply; a == nil || a.Level != 1 || !a.OK || a.BootID != e.k.BootID() || a.Warnings != 0 || a.Taint != 0 || !a.At.Equal(testNow()) {
		t.Errorf("last apply after level 1 = %+v", a)
	}
	if tel.TaintFlags != "OEK" || tel.BootID != e.k.BootID() || tel.Uptime != 12 {
		t.Errorf("telemetry after level 1 = %+v, want taint OEK, the boot id, uptime 12", tel)
	}
	if st, _ := e.a.readState(); st.Unhealthy != "" {
		t.Errorf("level 1 recorded unhealthy: %q", st.Unhealthy)
	}

	e.k.WarnOnLoad("kcare_test_l2")
	e.apply(t, 2)
	tel, err = e.a.Telemetry()
	if err != nil {
		t.Fatal(err)
	}
	if a := tel.LastApply; a == nil || a.Level != 2 || !a.OK || a.Warnings != 0 || taint.Mask(a.Taint) != taint.Expected {
		t.Errorf("last apply after level 2 = %+v", a)
	}
	if tel.Warnings != 1 || tel.TaintFlags != "WOEK" {
		t.Errorf("telemetry after level 2 = %+v, want 1 warning and taint WOEK", tel)
	}
	ci := apitype.CheckIn{Level: 2, Result: "ok", Telemetry: tel}
	if err := ci.Validate(); err != nil {
		t.Errorf("the portal would refuse the telemetry: %v", err)
	}
	st, _ := e.a.readState()
	if want := "1 new kernel warning and new taint W"; st.Unhealthy != want {
		t.Errorf("level 2 recorded unhealthy %q, want %q", st.Unhealthy, want)
	}
	if p := st.Previous; p == nil || p.Level != 1 {
		t.Errorf("level 2's previous = %+v, want level 1", p)
	}
}

// TestTelemetryKmsg: on a kernel without warn_count the agent counts the
// warnings and oopses in the kernel log, adding new records to its count
// at each run of the boot and starting again at the next boot.
func TestTelemetryKmsg(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t, root, true)
	for _, f := range []string{"sys/kernel/warn_count", "sys/kernel/oops_count"} {
		os.Remove(filepath.Join(root, f))
	}
	log := "6,1,100,-;Linux version 6.1.0-56-amd64\n" +
		"4,2,200,-;WARNING: CPU: 0 PID: 1 at kernel/fork.c:10 copy_process+0x1/0x2\n"
	kmsg := filepath.Join(root, "dev/kmsg")
	os.MkdirAll(filepath.Dir(kmsg), 0o755)
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(kmsg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(log)
	check := func(what string, warnings, oopses int64) {
		t.Helper()
		tel, err := e.a.Telemetry()
		if err != nil || tel.Warnings != warnings || tel.Oopses != oopses || tel.CountsFrom != apitype.CountsKmsg {
			t.Errorf("%s: telemetry %+v, %v; want %d warnings, %d oopses from kmsg", what, tel, err, warnings, oopses)
		}
	}
	check("first run of the boot", 1, 0)
	check("nothing new", 1, 0)
	// The log wrapped: records 1 and 2 are gone, two new ones.
	write("4,3,300,-;WARNING: CPU: 1 PID: 9 at mm/slub.c:1 kfree+0x1/0x2\n1,4,400,-;Oops: 0002 [#1] PREEMPT SMP NOPTI\n")
	check("after the log wrapped", 2, 1)
	// Another boot: counted from its start.
	boot := filepath.Join(root, "proc/sys/kernel/random/boot_id")
	os.WriteFile(boot, []byte("0d3b5f7e-9a1c-4e2b-8d6f-3a5c7e9b1d2f\n"), 0o644)
	write(log)
	check("the next boot", 1, 0)
	b, _ := os.ReadFile(filepath.Join(e.a.stateDir(), KmsgFile))
	if want := `{"boot_id":"0d3b5f7e-9a1c-4e2b-8d6f-3a5c7e9b1d2f","last":2,"warnings":1,"oopses":0}` + "\n"; string(b) != want {
		t.Errorf("%s = %s, want %s", KmsgFile, b, want)
	}
}

func TestVerdict(t *testing.T) {
	h := func(boot string, w, o int64, m taint.Mask) kernel.Health {
		return kernel.Health{BootID: boot, Warnings: w, Oopses: o, Taint: m}
	}
	const b1, b2 = "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19", "0d3b5f7e-9a1c-4e2b-8d6f-3a5c7e9b1d2f"
	tests := []struct {
		name          string
		before, after kernel.Health
		want          string
	}{
		{"clean", h(b1, 2, 0, taint.Warn), h(b1, 2, 0, taint.Warn|taint.Expected), ""},
		{"one_warning", h(b1, 0, 0, 0), h(b1, 1, 0, taint.Warn|taint.Livepatch), "1 new kernel warning and new taint W"},
		{"oopses", h(b1, 0, 0, 0), h(b1, 0, 2, taint.Die), "2 new kernel oopses and new taint D"},
		{"unknown_counts", h(b1, -1, -1, 0), h(b1, -1, -1, taint.SoftLockup), "new taint L"},
		{"rebooted", h(b1, 0, 0, 0), h(b2, 0, 0, 0), "the kernel rebooted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := verdict(tt.before, tt.after); got != tt.want {
				t.Errorf("verdict = %q, want %q", got, tt.want)
			}
		})
	}
}
