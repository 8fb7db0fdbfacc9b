package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/kernel"
)

// The files the agent keeps beside state.json for security scanners and
// the scanner interface (scanner/libkcare_scanner.so): written on every
// successful apply, removed on unload. See docs/compliance.md.
const (
	// EffectiveFile holds the effective identity, one field a line (see
	// Effective.Marshal).
	EffectiveFile = "effective_version"
	// CVEListFile holds the CVEs fixed by the applied level, one a line.
	CVEListFile = "cvelist"
)

// Package is the installed package of the running kernel
// (kernel.Package).
type Package = kernel.Package

// EffectiveOf returns the identity level m gives the kernel whose uname -v
// text is utsVersion.
func EffectiveOf(m *bundle.Manifest, utsVersion string) kernel.Effective {
	return kernel.Effective{
		Release:        kernel.TruncateUTS(m.EffectiveReleaseOr()),
		Version:        kernel.EffectiveKernelVersion(utsVersion, m.EffectiveVersion, m.Released),
		PackageVersion: m.EffectiveVersion,
		KernelRelease:  m.Kernel.Release,
		BuildID:        m.Kernel.BuildID,
		Module:         m.Module.Name,
	}
}

// effective returns the identity m gives the running kernel.
func (a *Agent) effective(m *bundle.Manifest) kernel.Effective {
	uts, err := kernel.ReadUTSVersion(a.root())
	if err != nil {
		uts = kernel.UTSVersion(m.Kernel.Version)
	}
	return EffectiveOf(m, uts)
}

// writeEffective records the effective identity and CVE list of the
// applied level m, atomically.
func (a *Agent) writeEffective(m *bundle.Manifest) error {
	staged, err := a.stageEffective(m)
	if err != nil {
		return err
	}
	return commitStaged(staged)
}

// clearEffective removes the effective identity and CVE list: nothing is
// applied.
func (a *Agent) clearEffective() error {
	var errs []error
	for _, f := range []string{EffectiveFile, CVEListFile} {
		if err := os.Remove(filepath.Join(a.stateDir(), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("clear %s: %w", f, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return atomicfile.SyncDir(a.stateDir())
}

// KernelPackage finds the installed package of the kernel with the given
// release on the agent's system (kernel.InstalledPackage).
func (a *Agent) KernelPackage(release string) Package {
	return kernel.InstalledPackage(a.root(), release)
}

// ParseEffective parses the effective_version file (kernel.ParseEffective).
func ParseEffective(b []byte) (kernel.Effective, error) { return kernel.ParseEffective(b) }
