package agent

import (
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/kernel"
)

// Info is the patch state of the running kernel: what the kernel has,
// joined with what was recorded. Its JSON fields are stable; fields are
// only added.
type Info struct {
	Kernel           KernelInfo   `json:"kernel"`
	State            string       `json:"state"` // "applied", "none" or "unsupported"
	Level            int          `json:"level"`
	Patch            string       `json:"patch,omitempty"`
	Module           string       `json:"module,omitempty"`
	EffectiveRelease string       `json:"effective_release"`
	CVEs             []bundle.CVE `json:"cves"`
	Applied          *time.Time   `json:"applied,omitempty"`
	Released         *time.Time   `json:"released,omitempty"`
	Description      string       `json:"description,omitempty"`
	CachedLevel      int          `json:"cached_level,omitempty"`
	Livepatches      []string     `json:"livepatches"`
	// PatchState is what the last index accepted from the portal says of
	// the applied level: "uptodate", "outofdate" or "unsupported" (no
	// patches for this kernel); "" before any index was accepted.
	PatchState string `json:"patch_state"`
	// Available is the newest level that index allows; 0 if none.
	Available int `json:"available,omitempty"`
	// EffectiveVersion is the applied level's effective package version;
	// "" when it names none or nothing is applied.
	EffectiveVersion string `json:"effective_version,omitempty"`
	// EffectiveKernelVersion is what kcare-uname -v prints: uname -v, or
	// with a level applied the text EffectiveKernelVersion makes.
	EffectiveKernelVersion string `json:"effective_kernel_version,omitempty"`
}

// patchState compares the applied level with the last index accepted.
func (a *Agent) patchState(info *Info) {
	st, err := a.readIndexState()
	if err != nil || st.Version == 0 && st.Latest == 0 && st.Level == 0 {
		return
	}
	info.Available = st.Level
	switch {
	case st.Latest == 0:
		info.PatchState = "unsupported"
	case st.Level > info.Level:
		info.PatchState = "outofdate"
	default:
		info.PatchState = "uptodate"
	}
}

// KernelInfo names the running kernel.
type KernelInfo struct {
	Release  string `json:"release"`
	BuildID  string `json:"build_id"`
	KernelID string `json:"kernel_id"`
}

// Info reads the running kernel's patch state. A recorded level counts as
// applied only when the kernel has its patch enabled.
func (a *Agent) Info() (*Info, error) {
	id, err := kernel.Read(a.root())
	if err != nil {
		return nil, err
	}
	info := &Info{
		Kernel:           KernelInfo{Release: id.Release, BuildID: id.BuildID, KernelID: id.KernelID()},
		State:            "none",
		EffectiveRelease: id.Release,
		CVEs:             []bundle.CVE{},
		Livepatches:      []string{},
	}
	if uts, err := kernel.ReadUTSVersion(a.root()); err == nil {
		info.EffectiveKernelVersion = uts
	}
	sys := a.sysfs()
	if !sys.Supported() {
		info.State = "unsupported"
		return info, nil
	}
	patches, err := sys.Patches()
	if err != nil {
		return nil, err
	}
	for _, p := range patches {
		info.Livepatches = append(info.Livepatches, p.Name)
	}
	st, err := a.readState()
	if err != nil {
		return nil, err
	}
	defer a.patchState(info)
	if st == nil || st.Manifest.Kernel.BuildID != id.BuildID {
		return info, nil
	}
	m := st.Manifest
	p, err := sys.Patch(m.Module.Name)
	if err != nil || !p.Enabled {
		info.CachedLevel = m.Level
		return info, nil
	}
	info.State = "applied"
	info.Level = m.Level
	info.Patch = m.Name
	info.Module = m.Module.Name
	eff := a.effective(&m)
	info.EffectiveRelease = eff.Release
	info.EffectiveVersion = eff.PackageVersion
	info.EffectiveKernelVersion = eff.Version
	if m.CVEs != nil {
		info.CVEs = m.CVEs
	}
	applied, released := st.Applied, m.Released
	info.Applied, info.Released = &applied, &released
	info.Description = m.Description
	return info, nil
}
