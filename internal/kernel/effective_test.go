package kernel_test

import (
	"testing"
	"time"

	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
)

func TestEffectiveKernelVersion(t *testing.T) {
	released := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, uts, pkg, want string
	}{
		{"debian", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)", "6.1.195-1",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.195-1 (2026-11-20)"},
		{"debian_cloud", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)", "6.1.158-1+kcare2",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1+kcare2 (2026-11-20)"},
		{"no_package_version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)", "",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)"},
		{"ubuntu_kept", "#76-Ubuntu SMP Mon Jun 5 09:54:44 UTC 2023", "5.15.0-79.86",
			"#76-Ubuntu SMP Mon Jun 5 09:54:44 UTC 2023"},
		{"rhel_kept", "#1 SMP PREEMPT_DYNAMIC Fri May 10 11:56:00 EDT 2024", "5.14.0-427.20.1.el9_4",
			"#1 SMP PREEMPT_DYNAMIC Fri May 10 11:56:00 EDT 2024"},
		{"cut_to_64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)", "6.1.192-2+kcare.with.a.very.long.suffix",
			"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2+kcare.with.a.very.long.s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kernel.EffectiveKernelVersion(tt.uts, tt.pkg, released); got != tt.want {
				t.Errorf("EffectiveKernelVersion(%q, %q) = %q, want %q", tt.uts, tt.pkg, got, tt.want)
			}
		})
	}
}

func TestUTSVersion(t *testing.T) {
	tests := []struct{ banner, want string }{
		{fakekernel.Version, "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)"},
		{"Linux version 5.15.0-76-generic (buildd@lcy02-amd64-019) (gcc (Ubuntu 11.3.0-1ubuntu1~22.04.1) 11.3.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #83-Ubuntu SMP Thu Jun 15 19:16:32 UTC 2023\n",
			"#83-Ubuntu SMP Thu Jun 15 19:16:32 UTC 2023"},
		{"garbage", ""},
	}
	for _, tt := range tests {
		if got := kernel.UTSVersion(tt.banner); got != tt.want {
			t.Errorf("UTSVersion(%q) = %q, want %q", tt.banner, got, tt.want)
		}
	}
}
