package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/test/system"
	"github.com/kcare/kcare/test/vm/debkernel"
	"github.com/kcare/kcare/test/vm/fixture"
	"github.com/kcare/kcare/test/vm/qemu"
)

// hangUnit keeps multi-user.target from being reached when the kernel
// command line says kcare.test.hang: a boot that does not complete.
const hangUnit = `[Unit]
Description=Hold the boot back (kcare.test.hang)
ConditionKernelCommandLine=kcare.test.hang

[Service]
Type=oneshot
ExecStart=/bin/sleep infinity
`

// machine is the Debian guest across its boots, all from one disk.
type machine struct {
	t       *testing.T
	f       *fixture.Fixture
	disk    string
	initrd  string
	sshPort int
	vm      *qemu.VM
	boots   int
}

func (m *machine) boot(appendArgs string) {
	m.t.Helper()
	m.boots++
	start := time.Now()
	cmdline := "root=/dev/vda rw quiet systemd.show_status=0"
	if appendArgs != "" {
		cmdline += " " + appendArgs
	}
	vm, err := qemu.Start(context.Background(), qemu.Config{
		Kernel: m.f.BootImage(), Initrd: m.initrd, Disk: m.disk, MemoryMB: 1024,
		Append:      cmdline,
		Forwards:    []qemu.Forward{{Host: m.sshPort, Guest: 22}},
		BootTimeout: 5 * time.Minute,
	})
	if err != nil {
		m.t.Fatal(err)
	}
	m.vm = vm
	m.t.Logf("boot %d: guestd answered after %v", m.boots, time.Since(start).Round(time.Second))
}

// poweroff shuts the guest down cleanly, as a reboot would.
func (m *machine) poweroff() {
	m.t.Helper()
	m.sh("systemctl poweroff --no-block")
	if !m.vm.Wait(2 * time.Minute) {
		m.t.Errorf("waited 2m for the guest to power off")
	}
	if err := m.vm.Stop(); err != nil {
		m.t.Error(err)
	}
	m.vm = nil
}

// crash powers the guest off at once, as a hang ended by a watchdog or a
// hand on the power button would.
func (m *machine) crash() {
	m.t.Helper()
	if err := m.vm.Stop(); err != nil {
		m.t.Error(err)
	}
	m.vm = nil
}

func (m *machine) sh(script string) qemu.Result {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := m.vm.Shell(ctx, script)
	if err != nil {
		m.t.Fatalf("guest %q: %v", script, err)
	}
	return r
}

func (m *machine) ok(script string) string {
	m.t.Helper()
	r := m.sh(script)
	if r.Exit != 0 {
		m.t.Fatalf("guest %q: exit %d\nstdout: %s\nstderr: %s", script, r.Exit, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// waitActive waits up to 3 minutes for unit to be active (or, for a
// oneshot, to have finished).
func (m *machine) waitActive(unit string) {
	m.t.Helper()
	m.ok(fmt.Sprintf("for i in $(seq 180); do s=$(systemctl is-active %s); [ \"$s\" = active ] && exit 0; sleep 1; done; systemctl status --no-pager %s; exit 1", unit, unit))
}

// info is kcarectl --info --json.
func (m *machine) info() (state string, level int) {
	m.t.Helper()
	var v struct {
		State string `json:"state"`
		Level int    `json:"level"`
	}
	out := m.ok("kcarectl --info --json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		m.t.Fatalf("kcarectl --info --json: %v\n%s", err, out)
	}
	return v.State, v.Level
}

func (m *machine) wantLevel(what string, level int) {
	m.t.Helper()
	state, got := m.info()
	if state != "applied" || got != level {
		m.t.Errorf("%s: kcarectl --info says %s, level %d; want applied, level %d", what, state, got, level)
	}
}

func requireSystem(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("the system test boots Debian in QEMU; not with -short")
	}
	if os.Getuid() != 0 {
		t.Skip("the system test needs root to build the disk image")
	}
	for _, tool := range []string{"qemu-system-x86_64", "mkfs.ext4", "depmod", "ssh-keygen", "dpkg-deb", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	if err := qemu.CheckHost(); err != nil {
		t.Skip(err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func runHost(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebianDeployment installs, registers and updates kcare on a real
// Debian 12 with systemd through the portal's installer, reboots it,
// configures it with Ansible, exercises the crash-loop guard, and
// upgrades and purges the package.
func TestDebianDeployment(t *testing.T) {
	requireSystem(t)
	ctx := context.Background()
	t0 := time.Now()
	f, err := fixture.Build(ctx, debkernel.DefaultCacheDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(f.Dir)
	root := fixture.RepoRoot()
	work := t.TempDir()

	// The packages: 0.1.0 for the installer, 0.1.1 for the upgrade.
	dist := filepath.Join(work, "dist")
	for _, v := range []string{"0.1.0", "0.1.1"} {
		runHost(t, root, []string{"VERSION=" + v, "RPM=0"}, "scripts/build-packages.sh", dist)
	}
	t.Logf("fixture and packages built in %v", time.Since(t0).Round(time.Second))

	// The disk.
	t1 := time.Now()
	tarball, err := system.RootfsTarball(ctx, debkernel.DefaultCacheDir(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	guestd := filepath.Join(work, "guestd")
	runHost(t, root, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-o", guestd, "./test/vm/guestd")
	key := filepath.Join(work, "id_ed25519")
	runHost(t, work, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kcare-test", "-f", key)
	pub, _ := os.ReadFile(key + ".pub")
	m := &machine{t: t, f: f, disk: filepath.Join(work, "disk.img"), initrd: filepath.Join(work, "initrd.cpio"), sshPort: freePort(t)}
	if err := system.BuildDisk(ctx, tarball, system.Image{
		Kernel: f.Kernel, Guestd: guestd, SSHKey: string(pub),
		Units: map[string]string{"kcare-test-hang.service": hangUnit},
	}, 3072, m.disk); err != nil {
		t.Fatal(err)
	}
	if err := qemu.BuildRootInitramfs(ctx, f.Kernel, m.initrd); err != nil {
		t.Fatal(err)
	}
	t.Logf("disk image built in %v from %s", time.Since(t1).Round(time.Second), filepath.Base(tarball))
	defer func() {
		if m.vm != nil {
			if t.Failed() {
				t.Logf("console:\n%s", lastLines(m.vm.Console(), 60))
			}
			m.vm.Stop()
		}
	}()

	// The portal on the host, with the 0.1.0 agent package and no level yet.
	p, err := f.NewPortal(filepath.Join(work, "portal"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(p.Data, "packages"), 0o755)
	runHost(t, "", nil, "cp", filepath.Join(dist, "kcare_0.1.0-1_amd64.deb"), filepath.Join(p.Data, "packages"))
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Stop()
		if t.Failed() {
			t.Logf("eportal log:\n%s", lastLines(p.Log(), 30))
		}
	}()
	activation, err := p.Eportal("", "key", "add", "--note", "debian")
	if err != nil {
		t.Fatal(err)
	}
	portal := p.GuestURL()

	m.boot("")
	// Nothing in a minimal system wants network-online.target: wait for it here.
	m.ok("systemctl start systemd-networkd-wait-online.service")

	t.Run("installer_registers", func(t *testing.T) {
		m.t = t
		start := time.Now()
		r := m.sh(fmt.Sprintf("curl -s %s/installer | bash -s -- %s", portal, activation))
		t.Logf("installer: exit %d in %v\n%s", r.Exit, time.Since(start).Round(time.Second), r.Stderr)
		if r.Exit != 0 {
			t.Fatalf("installer failed: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		conf := m.ok("cat /etc/sysconfig/kcare/kcare.conf")
		for _, want := range []string{"PATCH_SERVER=" + portal + "\n", "REGISTRATION_URL=" + portal + "/admin/api\n"} {
			if !strings.Contains(conf, want) {
				t.Errorf("kcare.conf lacks %q:\n%s", want, conf)
			}
		}
		m.ok("test -s /etc/sysconfig/kcare/systemid && test -s /etc/sysconfig/kcare/keys/portal.pub && test -s /etc/sysconfig/kcare/keys/publisher.pub")
		if s, err := p.Servers(); err != nil || len(s) != 1 {
			t.Errorf("the portal's servers after the installer: %v %v", s, err)
		}
		m.ok("sed -i '/^AUTO_UPDATE_DELAY=/d' /etc/sysconfig/kcare/kcare.conf && echo AUTO_UPDATE_DELAY=0 >> /etc/sysconfig/kcare/kcare.conf")
	})
	if t.Failed() {
		return
	}

	t.Run("update_patches", func(t *testing.T) {
		m.t = t
		if err := p.Publish(1, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if r := m.sh("kcarectl --update"); r.Exit != 0 {
			t.Fatalf("kcarectl --update: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		t.Logf("kcarectl --update applied level 1 in %v", time.Since(start).Round(100*time.Millisecond))
		m.wantLevel("after --update", 1)
	})

	t.Run("timer_every_4h", func(t *testing.T) {
		m.t = t
		if got := strings.TrimSpace(m.sh("systemctl is-active kcare-auto-update.timer").Stdout); got != "active" {
			t.Errorf("kcare-auto-update.timer is %q, want active", got)
		}
		show := m.ok("systemctl show -p TimersMonotonic -p RandomizedDelayUSec kcare-auto-update.timer")
		if !strings.Contains(show, "OnUnitActiveUSec=4h") || !strings.Contains(show, "RandomizedDelayUSec=30min") {
			t.Errorf("kcare-auto-update.timer: %s", show)
		}
		for _, u := range []string{"kcare.service", "kcare-boot-ok.service", "kcare-auto-update.timer"} {
			if got := strings.TrimSpace(m.sh("systemctl is-enabled " + u).Stdout); got != "enabled" {
				t.Errorf("%s is %q, want enabled", u, got)
			}
		}
	})

	t.Run("reboot_reapplies_before_network", func(t *testing.T) {
		m.t = t
		m.poweroff()
		m.boot("")
		m.waitActive("kcare-boot-ok.service")
		m.wantLevel("after a reboot", 1)
		journal := m.ok("journalctl -b -o short-monotonic --no-pager")
		kcare := lineIndex(journal, "Finished kcare.service")
		pre := lineIndex(journal, "Reached target network-pre.target")
		networkd := lineIndex(journal, "Started systemd-networkd.service")
		t.Logf("journal: %s | %s | %s", lineAt(journal, kcare), lineAt(journal, pre), lineAt(journal, networkd))
		if kcare < 0 || pre < 0 || networkd < 0 || !(kcare < pre && pre < networkd) {
			t.Errorf("want kcare.service finished before network-pre.target before systemd-networkd; lines %d, %d, %d\n%s", kcare, pre, networkd, grepLines(journal, "kcare", "network"))
		}
		if !strings.Contains(m.ok("journalctl -b -u kcare.service --no-pager"), "re-applying the cached livepatch level (UPDATE_POLICY=LOCAL)") {
			t.Errorf("kcare.service's journal does not say it re-applied")
		}
		m.ok("test ! -e /var/lib/kcare/boot-apply-pending")
	})

	t.Run("auto_update_applies_new_level", func(t *testing.T) {
		m.t = t
		if err := p.Publish(2, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if r := m.sh("systemctl start kcare-auto-update.service"); r.Exit != 0 {
			t.Fatalf("systemctl start kcare-auto-update: exit %d\n%s%s\n%s", r.Exit, r.Stdout, r.Stderr, m.sh("journalctl -u kcare-auto-update --no-pager | tail -20").Stdout)
		}
		t.Logf("kcare-auto-update.service applied level 2 in %v", time.Since(start).Round(100*time.Millisecond))
		m.wantLevel("after kcare-auto-update", 2)
	})

	t.Run("ansible_twice", func(t *testing.T) {
		m.t = t
		if _, err := exec.LookPath("ansible-playbook"); err != nil {
			t.Skip("ansible-playbook not found; apt-get install ansible")
		}
		dir := filepath.Join(work, "ansible")
		os.MkdirAll(dir, 0o755)
		inventory := fmt.Sprintf("[kcare]\nguest ansible_host=127.0.0.1 ansible_port=%d ansible_user=root ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3\n", m.sshPort, key)
		os.WriteFile(filepath.Join(dir, "inventory"), []byte(inventory), 0o644)
		playbook := fmt.Sprintf(`---
- hosts: kcare
  vars:
    kcare_portal_url: %s
    kcare_key: %s
    kcare_prefix: "12h"
    kcare_sticky_patch: ""
    kcare_auto_update: true
  roles:
    - kcare
`, portal, activation)
		os.WriteFile(filepath.Join(dir, "site.yml"), []byte(playbook), 0o644)
		env := []string{
			"ANSIBLE_ROLES_PATH=" + filepath.Join(root, "deploy", "ansible", "roles"),
			"ANSIBLE_HOST_KEY_CHECKING=False",
			"ANSIBLE_SSH_ARGS=-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
			"ANSIBLE_NOCOLOR=1",
		}
		var recaps []string
		for i := 1; i <= 2; i++ {
			start := time.Now()
			out := runHost(t, dir, env, "ansible-playbook", "-i", "inventory", "site.yml")
			recap := lastLines(out, 3)
			t.Logf("ansible-playbook run %d in %v: %s", i, time.Since(start).Round(time.Second), strings.TrimSpace(recap))
			recaps = append(recaps, recap)
		}
		if !strings.Contains(recaps[0], "failed=0") || strings.Contains(recaps[0], "changed=0") {
			t.Errorf("first run: want changes and no failures: %s", recaps[0])
		}
		if !strings.Contains(recaps[1], "changed=0") || !strings.Contains(recaps[1], "failed=0") {
			t.Errorf("second run: want no changes: %s", recaps[1])
		}
		if conf := m.ok("cat /etc/sysconfig/kcare/kcare.conf"); !strings.Contains(conf, "\nPREFIX=12h\n") {
			t.Errorf("kcare.conf after Ansible:\n%s", conf)
		}
	})

	t.Run("crash_loop_guard", func(t *testing.T) {
		m.t = t
		m.poweroff()
		// A boot that applies at boot and then never completes.
		m.boot("kcare.test.hang")
		m.waitActive("kcare.service")
		m.wantLevel("the hung boot", 2)
		m.ok("test -e /var/lib/kcare/boot-apply-pending")
		if got := strings.TrimSpace(m.sh("systemctl is-active multi-user.target").Stdout); got == "active" {
			t.Fatalf("multi-user.target is active: the boot was not held back")
		}
		m.crash()
		// The next boot skips the apply and says so.
		m.boot("")
		m.waitActive("kcare-boot-ok.service")
		if state, _ := m.info(); state != "none" {
			t.Errorf("after the crashed boot: kcarectl --info says %s, want none (skipped)", state)
		}
		log := m.ok("journalctl -b -u kcare.service --no-pager")
		if !strings.Contains(log, "not applying the cached livepatch level at this boot (crash-loop guard)") {
			t.Errorf("kcare.service does not report the skip:\n%s", log)
		} else {
			t.Logf("kcare.service: %s", grepLines(log, "crash-loop"))
		}
		m.ok("test -e /var/lib/kcare/boot-apply-skipped && test ! -e /var/lib/kcare/boot-apply-pending")
		// And the boot after that applies again.
		m.poweroff()
		m.boot("")
		m.waitActive("kcare-boot-ok.service")
		m.wantLevel("the boot after the skipped one", 2)
	})

	t.Run("deb_upgrade_purge", func(t *testing.T) {
		m.t = t
		runHost(t, "", nil, "cp", filepath.Join(dist, "kcare_0.1.1-1_amd64.deb"), filepath.Join(p.Data, "packages"))
		m.ok(fmt.Sprintf("curl -fsS -o /tmp/kcare_0.1.1.deb %s/packages/kcare_0.1.1-1_amd64.deb", portal))
		before := m.ok("cat /etc/sysconfig/kcare/kcare.conf")
		if r := m.sh("dpkg -i /tmp/kcare_0.1.1.deb"); r.Exit != 0 {
			t.Fatalf("dpkg -i newer: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		if v := m.ok("dpkg-query -W -f '${Version}' kcare"); v != "0.1.1-1" {
			t.Errorf("after the upgrade dpkg says kcare %s", v)
		}
		if after := m.ok("cat /etc/sysconfig/kcare/kcare.conf"); after != before {
			t.Errorf("kcare.conf changed by the upgrade:\n%s\nwas\n%s", after, before)
		}
		if got := strings.TrimSpace(m.sh("systemctl is-active kcare-auto-update.timer").Stdout); got != "active" {
			t.Errorf("after the upgrade the timer is %q", got)
		}
		if r := m.sh("dpkg --purge kcare"); r.Exit != 0 {
			t.Fatalf("dpkg --purge: exit %d\n%s%s", r.Exit, r.Stdout, r.Stderr)
		}
		left := m.sh("ls -d /etc/sysconfig/kcare /var/lib/kcare /var/cache/kcare /usr/bin/kcarectl /lib/systemd/system/kcare.service /etc/systemd/system/timers.target.wants/kcare-auto-update.timer 2>/dev/null; dpkg-query -W -f '${Status}' kcare 2>&1; systemctl is-active kcare-auto-update.timer")
		t.Logf("after purge: %s", strings.TrimSpace(left.Stdout))
		for _, p := range []string{"/etc/sysconfig/kcare", "/var/lib/kcare", "/usr/bin/kcarectl", "timers.target.wants"} {
			if strings.Contains(left.Stdout, p) {
				t.Errorf("after purge %s is left", p)
			}
		}
	})
	m.poweroff()
	t.Logf("total %v", time.Since(t0).Round(time.Second))
}

func lineIndex(s, sub string) int {
	for i, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return i
		}
	}
	return -1
}

func lineAt(s string, i int) string {
	lines := strings.Split(s, "\n")
	if i < 0 || i >= len(lines) {
		return "(none)"
	}
	return strings.TrimSpace(lines[i])
}

func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
