package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The effective identity of a patched kernel: what it looks like to a
// security scanner once a patch level is applied, and the text the agent
// keeps of it.

// utsLen is the longest field uname(2) holds (65 bytes with the NUL).
const utsLen = 64

// Effective is what the kernel looks like to a security scanner once a
// level is applied: its release, uname -v text and package version are
// those of the distribution kernel that carries the same fixes. The real
// release, build-id and module say which kernel and which patch the
// identity holds for, so that a reader can check it still does.
type Effective struct {
	Release        string // uname -r: the manifest's effective_release, or the kernel's release
	Version        string // uname -v: see EffectiveKernelVersion
	PackageVersion string // the manifest's effective_version; "" if it names none
	KernelRelease  string // the running kernel's own release
	BuildID        string // the running kernel's build-id
	Module         string // the livepatch module whose patch must be enabled
}

// debianVersion matches the end of a Debian kernel's uname -v text:
// "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)".
var debianVersion = regexp.MustCompile(`^(.* Debian )(\S+)( \()(\d{4}-\d\d-\d\d)(\))$`)

// EffectiveKernelVersion returns the uname -v text of the kernel whose own
// text is uts, once a level released at released with the effective
// package version pkgVersion is applied. A Debian kernel names its package
// version and build date ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2
// (2026-10-20)"): both are replaced, by pkgVersion and the level's release
// date. Any other text, or no pkgVersion, is kept as it is. The result is
// cut to the 64 bytes uname(2) holds.
func EffectiveKernelVersion(uts, pkgVersion string, released time.Time) string {
	if pkgVersion != "" {
		if m := debianVersion.FindStringSubmatch(uts); m != nil {
			uts = m[1] + pkgVersion + m[3] + released.UTC().Format("2006-01-02") + m[5]
		}
	}
	return truncate(uts, utsLen)
}

// UTSVersion returns the uname -v text inside a /proc/version banner:
// "Linux version REL (USER@HOST) (COMPILER) #1 SMP ...". It is the text
// after the first ") #", or "" when there is none.
func UTSVersion(banner string) string {
	i := strings.Index(banner, ") #")
	if i < 0 {
		return ""
	}
	return strings.TrimRight(banner[i+2:], "\n")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Marshal returns the text of the effective_version file: one field a
// line, in this order, each line ending in a newline:
//
//	effective release      (uname -r)
//	effective version      (uname -v)
//	effective package version, or an empty line
//	the kernel's own release
//	the kernel's build-id
//	the livepatch module
func (e Effective) Marshal() []byte {
	return []byte(strings.Join([]string{e.Release, e.Version, e.PackageVersion, e.KernelRelease, e.BuildID, e.Module}, "\n") + "\n")
}

// ParseEffective parses the effective_version file.
func ParseEffective(b []byte) (Effective, error) {
	lines := strings.Split(string(b), "\n")
	if len(lines) < 7 || lines[6] != "" {
		return Effective{}, errors.New("effective version file: want 6 lines")
	}
	e := Effective{Release: lines[0], Version: lines[1], PackageVersion: lines[2], KernelRelease: lines[3], BuildID: lines[4], Module: lines[5]}
	if e.Release == "" || e.KernelRelease == "" || e.BuildID == "" || e.Module == "" {
		return Effective{}, errors.New("effective version file: empty field")
	}
	return e, nil
}

// Check refuses text that would not survive being one line of a file or
// a uname field.
func (e Effective) Check() error {
	for _, f := range []string{e.Release, e.Version, e.PackageVersion, e.KernelRelease, e.BuildID, e.Module} {
		for i := 0; i < len(f); i++ {
			if f[i] < 0x20 || f[i] == 0x7f {
				return fmt.Errorf("effective version: control character in %q", f)
			}
		}
	}
	return nil
}

// ReadUTSVersion reads the uname -v text of the kernel whose /proc is
// under root: /proc/sys/kernel/version, or the end of the /proc/version
// banner.
func ReadUTSVersion(root string) (string, error) {
	if b, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/version")); err == nil {
		return strings.TrimRight(string(b), "\n"), nil
	}
	b, err := os.ReadFile(filepath.Join(root, "proc/version"))
	if err != nil {
		return "", fmt.Errorf("read kernel version: %w", err)
	}
	return UTSVersion(string(b)), nil
}

// TruncateUTS cuts s to the 64 bytes a uname(2) field holds.
func TruncateUTS(s string) string { return truncate(s, utsLen) }
