// Package system boots a whole Debian 12 system with systemd in QEMU, on
// the Debian kernel the VM suite uses, to test kcare's deployment: the
// portal's installer, the packages, the systemd units, and Ansible.
//
// The root file system comes from debootstrap, cached as a tarball under
// the kernel cache directory; each run makes an ext4 image of it with the
// kernel's modules, a network set up by systemd-networkd, guestd as a
// service, and a test SSH key for root.
package system

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/test/vm/debkernel"
)

// Suite is the Debian release and what debootstrap installs into it.
const (
	Suite    = "bookworm"
	Packages = "systemd,systemd-sysv,dbus,udev,openssh-server,python3,curl,ca-certificates,kmod,busybox,iproute2,adduser,procps"
)

// Mirror is the Debian mirror debootstrap uses; KCARE_TEST_DEBIAN_MIRROR
// replaces it.
func Mirror() string {
	if m := os.Getenv("KCARE_TEST_DEBIAN_MIRROR"); m != "" {
		return m
	}
	return "http://deb.debian.org/debian"
}

// RootfsTarball returns the newest cached root file system tarball in
// cacheDir (rootfs-bookworm-YYYYMMDD.tar), making one with debootstrap
// when there is none.
func RootfsTarball(ctx context.Context, cacheDir string, logf func(string, ...any)) (string, error) {
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "rootfs-"+Suite+"-*.tar"))
	if len(matches) > 0 {
		sort.Strings(matches)
		return matches[len(matches)-1], nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("no cached root file system in %s and debootstrap not found; install debootstrap", cacheDir)
	}
	work, err := os.MkdirTemp(cacheDir, ".rootfs-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	logf("debootstrap %s from %s (cached afterwards)", Suite, Mirror())
	if err := run(ctx, "", "debootstrap", "--variant=minbase", "--include="+Packages, Suite, root, Mirror()); err != nil {
		return "", err
	}
	out := filepath.Join(cacheDir, "rootfs-"+Suite+"-"+time.Now().UTC().Format("20060102")+".tar")
	tmp := filepath.Join(work, "rootfs.tar")
	if err := run(ctx, root, "tar", "--numeric-owner", "--xattrs", "-cf", tmp, "."); err != nil {
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// Image is what goes into a disk image besides the root file system.
type Image struct {
	Kernel *debkernel.Kernel
	Guestd string // a static guestd binary
	SSHKey string // a public key for root's authorized_keys
	// Files maps a guest path to a host file copied there.
	Files map[string]string
	// Units maps a unit name to its text, installed in
	// /etc/systemd/system and enabled for multi-user.target.
	Units map[string]string
}

// guestdUnit runs guestd, the test's remote hands, independent of the
// units a test holds back.
const guestdUnit = `[Unit]
Description=guestd, the test harness's command server
DefaultDependencies=no
After=local-fs.target

[Service]
ExecStart=/usr/local/sbin/guestd
Restart=always

[Install]
WantedBy=multi-user.target
`

const networkConfig = `[Match]
Name=en* eth*

[Network]
DHCP=ipv4
`

// BuildDisk writes an ext4 image of sizeMB to out: the tarball, the
// kernel's modules, and img.
func BuildDisk(ctx context.Context, tarball string, img Image, sizeMB int, out string) error {
	work, err := os.MkdirTemp(filepath.Dir(out), ".rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := run(ctx, "", "tar", "--numeric-owner", "--xattrs", "-xf", tarball, "-C", root); err != nil {
		return err
	}
	k := img.Kernel
	mods := filepath.Join(root, "lib", "modules", k.Release)
	if err := os.MkdirAll(filepath.Dir(mods), 0o755); err != nil {
		return err
	}
	if err := run(ctx, "", "cp", "-a", k.ModulesDir, mods); err != nil {
		return err
	}
	os.Remove(filepath.Join(mods, "build"))
	os.Remove(filepath.Join(mods, "source"))
	if err := run(ctx, "", "depmod", "-b", root, k.Release); err != nil {
		return err
	}

	files := map[string]string{
		"/etc/hostname":                          "kcare-test\n",
		"/etc/hosts":                             "127.0.0.1\tlocalhost\n127.0.1.1\tkcare-test\n10.0.2.2\thost\n",
		"/etc/fstab":                             "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
		"/etc/resolv.conf":                       "nameserver 10.0.2.3\n",
		"/etc/machine-id":                        "0c7ea3e5d0c84d3a9a4f3b1c2d5e6f70\n",
		"/etc/systemd/network/10-eth.network":    networkConfig,
		"/etc/systemd/system/guestd.service":     guestdUnit,
		"/root/.ssh/authorized_keys":             img.SSHKey,
		"/etc/ssh/sshd_config.d/kcare-test.conf": "PermitRootLogin prohibit-password\nUseDNS no\n",
	}
	units := map[string]string{"guestd.service": ""}
	for name, text := range img.Units {
		files["/etc/systemd/system/"+name] = text
		units[name] = ""
	}
	for p, text := range files {
		if err := writeFile(filepath.Join(root, p), text, 0o644); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(root, "root", ".ssh"), 0o700)
	// A persistent journal, to read the boot before.
	if err := os.MkdirAll(filepath.Join(root, "var", "log", "journal"), 0o2755); err != nil {
		return err
	}
	if err := run(ctx, "", "install", "-D", "-m", "0755", img.Guestd, filepath.Join(root, "usr", "local", "sbin", "guestd")); err != nil {
		return err
	}
	for guest, host := range img.Files {
		if err := run(ctx, "", "install", "-D", "-m", "0644", host, filepath.Join(root, guest)); err != nil {
			return err
		}
	}
	wants := map[string]string{
		"systemd-networkd.service":             "multi-user.target.wants",
		"systemd-networkd.socket":              "sockets.target.wants",
		"systemd-networkd-wait-online.service": "network-online.target.wants",
	}
	for u := range units {
		wants[u] = "multi-user.target.wants"
	}
	for unit, dir := range wants {
		target := "/etc/systemd/system/" + unit
		if _, err := os.Stat(filepath.Join(root, target)); err != nil {
			target = "/lib/systemd/system/" + unit
		}
		link := filepath.Join(root, "etc", "systemd", "system", dir, unit)
		os.MkdirAll(filepath.Dir(link), 0o755)
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	// Host keys made now, not at first boot under TCG.
	if err := run(ctx, "", "ssh-keygen", "-A", "-f", root); err != nil {
		return err
	}
	os.Remove(out)
	return run(ctx, "", "mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, out, fmt.Sprintf("%dM", sizeMB))
}

func writeFile(path, text string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	os.Remove(path) // it may be a symlink (resolv.conf)
	return os.WriteFile(path, []byte(text), mode)
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
