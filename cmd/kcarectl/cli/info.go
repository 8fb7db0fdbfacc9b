package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/kcare/kcare/internal/agent"
)

func runInfo(ctx context.Context, a *agent.Agent, asJSON bool, stdout io.Writer) error {
	recoverQuietly(ctx, a)
	info, err := a.Info()
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	writeInfo(stdout, info)
	return nil
}

func writeInfo(w io.Writer, info *agent.Info) {
	switch info.State {
	case "applied":
		fmt.Fprintf(w, "kpatch-state: patch is applied\n")
	case "unsupported":
		fmt.Fprintf(w, "kpatch-state: kernel has no livepatch support\n")
	default:
		fmt.Fprintf(w, "kpatch-state: no patches applied\n")
	}
	fmt.Fprintf(w, "kpatch-kernel: %s\n", info.Kernel.Release)
	fmt.Fprintf(w, "kpatch-build-id: %s\n", info.Kernel.BuildID)
	fmt.Fprintf(w, "kpatch-kernel-id: %s\n", info.Kernel.KernelID)
	if info.State == "applied" {
		fmt.Fprintf(w, "kpatch-level: %d\n", info.Level)
		fmt.Fprintf(w, "kpatch-name: %s\n", info.Patch)
		fmt.Fprintf(w, "kpatch-module: %s\n", info.Module)
		if info.Released != nil {
			fmt.Fprintf(w, "kpatch-build-time: %s\n", info.Released.UTC().Format(time.RFC3339))
		}
		if info.Applied != nil {
			fmt.Fprintf(w, "kpatch-applied: %s\n", info.Applied.UTC().Format(time.RFC3339))
		}
		for _, c := range info.CVEs {
			fmt.Fprintf(w, "kpatch-cve: %s\n", c.ID)
		}
	}
	if info.CachedLevel > 0 {
		fmt.Fprintf(w, "kpatch-cached-level: %d\n", info.CachedLevel)
	}
	fmt.Fprintf(w, "kpatch-effective-release: %s\n", info.EffectiveRelease)
}

func runUname(a *agent.Agent, stdout io.Writer) error {
	info, err := a.Info()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, info.EffectiveRelease)
	return nil
}

// runPatchInfo prints one block of KernelCare's kpatch-* lines per fix in
// the applied level.
func runPatchInfo(a *agent.Agent, stdout io.Writer) error {
	info, err := a.Info()
	if err != nil {
		return err
	}
	if info.State != "applied" {
		fmt.Fprintf(stdout, "No patches applied\n")
		return nil
	}
	for i, c := range info.CVEs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		desc := c.Description
		if desc == "" {
			desc = info.Description
		}
		fmt.Fprintf(stdout, "kpatch-name: %s/%s\n", info.Kernel.Release, c.ID)
		fmt.Fprintf(stdout, "kpatch-description: %s\n", desc)
		fmt.Fprintf(stdout, "kpatch-kernel: %s\n", info.Kernel.Release)
		fmt.Fprintf(stdout, "kpatch-cve: %s\n", c.ID)
		fmt.Fprintf(stdout, "kpatch-cve-url: %s\n", c.URL)
		fmt.Fprintf(stdout, "kpatch-level: %d\n", info.Level)
	}
	if len(info.CVEs) == 0 {
		fmt.Fprintf(stdout, "kpatch-name: %s/%s\nkpatch-description: %s\nkpatch-kernel: %s\nkpatch-level: %d\n",
			info.Kernel.Release, info.Patch, info.Description, info.Kernel.Release, info.Level)
	}
	return nil
}

// recoverQuietly brings the kernel and the record into agreement before a
// report, after a kcarectl that stopped part-way (agent.Recover), when
// this kcarectl may: it does nothing while another kcarectl holds the
// lock, nor for a user who cannot take it. What it did goes to stderr.
func recoverQuietly(ctx context.Context, a *agent.Agent) {
	err := a.Recover(ctx)
	if err != nil && a.Log != nil && !errors.Is(err, agent.ErrLocked) && !errors.Is(err, fs.ErrPermission) {
		a.Log.Write([]byte("warning: " + err.Error() + "\n"))
	}
}
