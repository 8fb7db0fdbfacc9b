package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/faultpoint"
	"github.com/kcare/kcare/test/vm/qemu"
)

// machine is a guest that keeps its disk across boots: kcarectl's state,
// cache and configuration live on an ext4 file system on a virtio disk
// (/var/lib/kcare, /var/cache/kcare and /etc/sysconfig/kcare are bound
// from it), so that a power cut loses what the guest had not written to
// it, as a real one does.
type machine struct {
	f     *faultFixture
	disk  string // the raw disk image
	share string // host directory at /mnt/host: the bundles and portal.pub
	boots int
	vm    *qemu.VM
	t     *testing.T
}

// newMachine makes a machine with a fresh 64 MiB ext4 disk.
func newMachine(t *testing.T, f *faultFixture, share string) *machine {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "kcare", disk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	m := &machine{f: f, disk: disk, share: share, t: t}
	t.Cleanup(func() {
		if m.vm != nil {
			if t.Failed() {
				t.Logf("guest console (boot %d):\n%s", m.boots, tail(m.vm.Console(), 60))
			}
			m.vm.Stop()
		}
	})
	return m
}

// mountScript mounts the disk and binds kcarectl's directories from it;
// on the first boot it takes the image's keys and the portal's key.
const mountScript = `set -e
mkdir -p /mnt/disk /var/lib/kcare /var/cache/kcare
mount -t ext4 /dev/vda /mnt/disk
mkdir -p /mnt/disk/lib /mnt/disk/cache /mnt/disk/etc
if [ ! -e /mnt/disk/etc/keys ]; then
	cp -a /etc/sysconfig/kcare/. /mnt/disk/etc/
	cp /mnt/host/portal.pub /mnt/disk/etc/keys/portal.pub
	sync
fi
mount --bind /mnt/disk/lib /var/lib/kcare
mount --bind /mnt/disk/cache /var/cache/kcare
mount --bind /mnt/disk/etc /etc/sysconfig/kcare
`

// boot starts the machine and mounts its disk. It does not run the
// boot-time apply: bootApply does, as kcare.service would.
func (m *machine) boot(t *testing.T) {
	t.Helper()
	m.t = t
	if m.vm != nil {
		m.vm.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, qemu.Config{
		Kernel: m.f.BootImage(),
		Initrd: m.f.initrd,
		Disk:   m.disk,
		Shares: []qemu.Share{{Tag: "host", HostDir: m.share, GuestPath: "/mnt/host"}},
	})
	if err != nil {
		t.Fatalf("boot %d: %v", m.boots+1, err)
	}
	m.vm = vm
	m.boots++
	t.Logf("boot %d: guest answered %s after start", m.boots, vm.BootTime().Round(time.Millisecond))
	m.ok(mountScript)
}

// powerCut cuts the guest's power and boots it again.
func (m *machine) powerCut(t *testing.T) {
	t.Helper()
	m.vm.PowerCut()
	m.boot(t)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sh runs a shell script in the guest.
func (m *machine) sh(script string) qemu.Result {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := m.vm.Shell(ctx, script)
	if err != nil {
		m.t.Fatalf("guest %q: %v", script, err)
	}
	return r
}

// ok runs a script that must succeed and returns its stdout.
func (m *machine) ok(script string) string {
	m.t.Helper()
	r := m.sh(script)
	if r.Exit != 0 {
		m.t.Fatalf("guest %q: exit %d\nstdout: %s\nstderr: %s", script, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// kcarectl runs kcarectl with args, stopped at a fault point when fault
// (POINT:ACTION, see faultpoint.Env) is not empty.
func (m *machine) kcarectl(fault, args string) qemu.Result {
	m.t.Helper()
	env := ""
	if fault != "" {
		env = faultpoint.Env + "=" + fault + " "
	}
	return m.sh(env + "kcarectl " + args)
}

// mustKcarectl runs kcarectl with args, which must succeed.
func (m *machine) mustKcarectl(args string) qemu.Result {
	m.t.Helper()
	r := m.kcarectl("", args)
	if r.Exit != 0 {
		m.t.Fatalf("kcarectl %s: exit %d\nstdout: %s\nstderr: %s", args, r.Exit, r.Stdout, r.Stderr)
	}
	return r
}

// bootApply runs what kcare.service runs at boot, and then what
// kcare-boot-ok.service runs; it returns the apply's result.
func (m *machine) bootApply() qemu.Result {
	m.t.Helper()
	r := m.sh("/usr/libexec/kcare/kcare-boot apply")
	m.ok("/usr/libexec/kcare/kcare-boot ok")
	return r
}

// hang starts kcarectl with args in the background, stopped at point
// for good, and waits until it says so on the console.
func (m *machine) hang(point, args string) {
	m.t.Helper()
	pid := strings.TrimSpace(m.ok(fmt.Sprintf("%s=%s:hang kcarectl %s >/tmp/hang.out 2>&1 </dev/null & echo $!", faultpoint.Env, point, args)))
	marker := faultpoint.Marker + point
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; !strings.Contains(m.vm.Console(), marker); i++ {
		gone := i%20 == 19 && m.sh("kill -0 "+pid).Exit != 0
		if gone || time.Now().After(deadline) {
			m.t.Fatalf("kcarectl %s never reached %s:\n%s", args, point, m.sh("cat /tmp/hang.out").Stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// snapshot is what the guest's kernel has and what kcarectl recorded.
type snapshot struct {
	patches   []string // "NAME ENABLED TRANSITION" for each kcare livepatch
	modules   []string // kcare modules in /proc/modules
	leftovers []string // temporary files and journals left behind
	state     *struct {
		Manifest struct {
			Level  int `json:"level"`
			Module struct {
				Name string `json:"name"`
			} `json:"module"`
		} `json:"manifest"`
		Digest string `json:"bundle_sha256"`
		Bundle string `json:"bundle"`
	}
	cachedSum string // sha256 of the cached bundle the record names
}

const snapshotScript = `cd /sys/kernel/livepatch
for d in kcare_*; do
	[ -e "$d/enabled" ] && echo "patch $d $(cat $d/enabled) $(cat $d/transition)"
done
while read -r name rest; do
	case "$name" in kcare_*) echo "module $name" ;; esac
done < /proc/modules
find /var/lib/kcare /var/cache/kcare \( -name '.*.tmp-*' -o -name pending.json -o -name unloading \) | sed 's/^/leftover /'
if [ -f /var/lib/kcare/state.json ]; then
	b=$(sed -n 's/^  "bundle": "\(.*\)",$/\1/p' /var/lib/kcare/state.json)
	[ -n "$b" ] && [ -f "/var/cache/kcare/$b" ] && echo "cached $(sha256sum "/var/cache/kcare/$b" | cut -d' ' -f1)"
	echo state
	cat /var/lib/kcare/state.json
fi
`

func (m *machine) snapshot() snapshot {
	m.t.Helper()
	out := m.ok(snapshotScript)
	var s snapshot
	head, state, found := strings.Cut(out, "state\n")
	for _, l := range strings.Split(strings.TrimSpace(head), "\n") {
		kind, rest, _ := strings.Cut(l, " ")
		switch kind {
		case "patch":
			s.patches = append(s.patches, rest)
		case "module":
			s.modules = append(s.modules, rest)
		case "leftover":
			s.leftovers = append(s.leftovers, rest)
		case "cached":
			s.cachedSum = rest
		}
	}
	if found {
		s.state = new(struct {
			Manifest struct {
				Level  int `json:"level"`
				Module struct {
					Name string `json:"name"`
				} `json:"module"`
			} `json:"manifest"`
			Digest string `json:"bundle_sha256"`
			Bundle string `json:"bundle"`
		})
		if err := json.Unmarshal([]byte(state), s.state); err != nil {
			m.t.Fatalf("state.json unreadable: %v\n%s", err, state)
		}
	}
	return s
}

// agree checks that the kernel and the record agree at level (0: none in
// effect): the one kcare patch in /sys/kernel/livepatch is that level's,
// enabled, no transition; /proc/modules holds its module alone; the
// record names it and its cached bundle has the recorded sha256; nothing
// is left half-written or pending. With level 0 the record, if any, names
// the cached level, which nothing has in effect.
func (m *machine) agree(when string, level int) {
	m.t.Helper()
	s := m.snapshot()
	var want []string
	module := ""
	if level > 0 {
		module = fmt.Sprintf("kcare_test_l%d", level)
		want = []string{module + " 1 0"}
	}
	if strings.Join(s.patches, ",") != strings.Join(want, ",") {
		m.t.Errorf("%s: /sys/kernel/livepatch has %q, want %q", when, s.patches, want)
	}
	if got := strings.Join(s.modules, ","); got != module {
		m.t.Errorf("%s: /proc/modules has kcare modules %q, want %q", when, got, module)
	}
	if len(s.leftovers) > 0 {
		m.t.Errorf("%s: left half-written or pending: %q", when, s.leftovers)
	}
	switch {
	case level > 0 && s.state == nil:
		m.t.Errorf("%s: level %d in effect and nothing recorded", when, level)
	case level > 0 && (s.state.Manifest.Level != level || s.state.Manifest.Module.Name != module):
		m.t.Errorf("%s: level %d in effect, the record names level %d (%s)", when, level, s.state.Manifest.Level, s.state.Manifest.Module.Name)
	case s.state != nil && s.cachedSum != s.state.Digest:
		m.t.Errorf("%s: the record names %s with sha256 %s; the cache holds %q", when, s.state.Bundle, s.state.Digest, s.cachedSum)
	}
	info := m.info()
	if info.Level != level || (level > 0) != (info.State == "applied") {
		m.t.Errorf("%s: kcarectl --info says %s level %d, want level %d", when, info.State, info.Level, level)
	}
}

type guestInfo struct {
	State       string `json:"state"`
	Level       int    `json:"level"`
	Module      string `json:"module"`
	CachedLevel int    `json:"cached_level"`
}

func (m *machine) info() guestInfo {
	m.t.Helper()
	var info guestInfo
	out := m.mustKcarectl("--info --json").Stdout
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		m.t.Fatalf("kcarectl --info --json: %v\n%s", err, out)
	}
	return info
}

// klpLog returns the kernel's livepatch: log lines since the last call.
func (m *machine) klpLog() []string {
	m.t.Helper()
	out := m.ok("dmesg -c | grep 'livepatch:' | sed 's/^\\[[ 0-9.]*\\] //'; true")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// enablings counts the kernel's "enabling patch" lines in log.
func enablings(log []string) int {
	n := 0
	for _, l := range log {
		if strings.HasPrefix(l, "livepatch: enabling patch ") {
			n++
		}
	}
	return n
}

// setLevel puts the machine at level (0: none) by hand: unload, apply.
func (m *machine) setLevel(level int) {
	m.t.Helper()
	m.kcarectl("", "--unload")
	if level > 0 {
		m.mustKcarectl(fmt.Sprintf("--apply /mnt/host/l%d.kcp", level))
	}
	m.klpLog()
}

// kcareConf writes kcare.conf.
func (m *machine) kcareConf(lines ...string) {
	m.t.Helper()
	m.ok(fmt.Sprintf("printf '%%s\\n' %s > /etc/sysconfig/kcare/kcare.conf && sync", shellWords(lines)))
}

func shellWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// wantStderr checks that a result's stderr matches re.
func wantStderr(t *testing.T, what string, r qemu.Result, code int, re string) {
	t.Helper()
	if r.Exit != code || !regexp.MustCompile(re).MatchString(r.Stderr) {
		t.Errorf("%s: exit %d, stderr %q; want exit %d, stderr matching %s", what, r.Exit, r.Stderr, code, re)
	}
}
