package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestQemuArgs(t *testing.T) {
	cfg := Config{
		Kernel:     "/cache/boot/vmlinux-6.1.0-56-amd64",
		Initrd:     "/work/initrd.cpio",
		Append:     "loglevel=7",
		MemoryMB:   512,
		ConsoleLog: "/work/a,b/console.log",
		Shares: []Share{
			{Tag: "host", HostDir: "/work/host", GuestPath: "/mnt/host"},
			{Tag: "cache", HostDir: "/work/cache", GuestPath: "/var/cache/kcare"},
		},
	}
	got := strings.Join(qemuArgs(cfg, 40000), " ")
	want := "-accel tcg -smp 1 -m 512 -nodefaults -no-user-config -display none -no-reboot" +
		" -kernel /cache/boot/vmlinux-6.1.0-56-amd64" +
		" -append console=ttyS0 panic=-1 kcare.share=host:/mnt/host kcare.share=cache:/var/cache/kcare loglevel=7" +
		" -chardev file,id=console,path=/work/a,,b/console.log -serial chardev:console" +
		" -netdev user,id=net0,hostfwd=tcp:127.0.0.1:40000-:7100 -device virtio-net-pci,netdev=net0" +
		" -initrd /work/initrd.cpio" +
		" -virtfs local,path=/work/host,mount_tag=host,security_model=none,id=fs0" +
		" -virtfs local,path=/work/cache,mount_tag=cache,security_model=none,id=fs1"
	if got != want {
		t.Errorf("qemuArgs =\n%s\nwant\n%s", got, want)
	}

	cfg.Isolated = true
	args := qemuArgs(cfg, 40000)
	i := slices.Index(args, "-netdev")
	if i < 0 || args[i+1] != "user,id=net0,hostfwd=tcp:127.0.0.1:40000-:7100,restrict=on" {
		t.Errorf("isolated qemuArgs = %q; want a restricted user netdev", args)
	}
}

func TestCheckShares(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		share Share
		ok    bool
	}{
		{"good", Share{Tag: "host", HostDir: dir, GuestPath: "/mnt/host"}, true},
		{"empty_tag", Share{Tag: "", HostDir: dir, GuestPath: "/mnt/host"}, false},
		{"colon_tag", Share{Tag: "a:b", HostDir: dir, GuestPath: "/mnt/host"}, false},
		{"long_tag", Share{Tag: strings.Repeat("t", 32), HostDir: dir, GuestPath: "/mnt/host"}, false},
		{"relative_path", Share{Tag: "host", HostDir: dir, GuestPath: "mnt/host"}, false},
		{"space_in_path", Share{Tag: "host", HostDir: dir, GuestPath: "/mnt/my host"}, false},
		{"missing_dir", Share{Tag: "host", HostDir: dir + "/missing", GuestPath: "/mnt/host"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkShares([]Share{tt.share})
			if (err == nil) != tt.ok {
				t.Errorf("checkShares(%+v) = %v; want ok %v", tt.share, err, tt.ok)
			}
		})
	}
}
