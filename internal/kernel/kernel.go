// Package kernel identifies the running kernel exactly: the GNU build-id of
// vmlinux from /sys/kernel/notes, the release, and the /proc/version text
// whose sha1 is KernelCare's kernel id; what it looks like to a security
// scanner once a patch level is applied (its effective identity); and the
// distribution package it was installed from (dpkg's, rpm's, os-release).
package kernel

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kcare/kcare/internal/kimage"
)

// Identity names one kernel build.
type Identity struct {
	BuildID string // GNU build-id of vmlinux, lower-case hex
	Release string // uname -r
	Version string // the exact /proc/version text, newline included
}

// KernelID is KernelCare's kernel id: the sha1 of the /proc/version text.
func (id Identity) KernelID() string { return KernelID(id.Version) }

// KernelID returns the sha1 hex of a /proc/version text.
func KernelID(version string) string {
	sum := sha1.Sum([]byte(version))
	return hex.EncodeToString(sum[:])
}

// Read reads the identity of the kernel whose /sys and /proc are under root.
func Read(root string) (Identity, error) {
	notes, err := os.ReadFile(filepath.Join(root, "sys/kernel/notes"))
	if err != nil {
		return Identity{}, fmt.Errorf("read kernel build-id: %w", err)
	}
	buildID, err := kimage.ParseNotes(notes)
	if err != nil {
		return Identity{}, fmt.Errorf("read kernel build-id from /sys/kernel/notes: %w", err)
	}
	rel, err := os.ReadFile(filepath.Join(root, "proc/sys/kernel/osrelease"))
	if err != nil {
		return Identity{}, fmt.Errorf("read kernel release: %w", err)
	}
	ver, err := os.ReadFile(filepath.Join(root, "proc/version"))
	if err != nil {
		return Identity{}, fmt.Errorf("read kernel version: %w", err)
	}
	return Identity{
		BuildID: buildID,
		Release: strings.TrimSpace(string(rel)),
		Version: string(ver),
	}, nil
}
