package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/kernel"
)

// Files the agent keeps the kernel's health in, in its state directory.
const (
	// LastApplyFile is the last apply: its level, whether the level came
	// into effect, and the kernel's health just before it and just after.
	LastApplyFile = "last-apply.json"
	// KmsgFile is the agent's count of warnings and oopses in the kernel
	// log, for kernels without /sys/kernel/warn_count: the boot, the
	// last record counted, the counts.
	KmsgFile = "kmsg.json"
)

// lastApply is LastApplyFile.
type lastApply struct {
	Level  int            `json:"level"`
	OK     bool           `json:"ok"`
	At     time.Time      `json:"at"`
	Before kernel.Health  `json:"before"`
	After  *kernel.Health `json:"after,omitempty"` // nil when the level did not come into effect
}

// kmsgCount is KmsgFile.
type kmsgCount struct {
	BootID   string `json:"boot_id"`
	Last     uint64 `json:"last"`
	Warnings int64  `json:"warnings"`
	Oopses   int64  `json:"oopses"`
	Lost     bool   `json:"lost,omitempty"` // records went before they were counted
}

// health reads the kernel's health. On a kernel without warning and
// oops counters it counts them in the kernel log itself, adding what was
// logged since its last count (KmsgFile) in this boot; when the log
// cannot be read the counts stay unknown (-1).
func (a *Agent) health() (kernel.Health, error) {
	h, err := kernel.ReadHealth(a.root())
	if err != nil || h.CountsFrom != "" {
		return h, err
	}
	path := filepath.Join(a.stateDir(), KmsgFile)
	var c kmsgCount
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &c) // unreadable: count again from the start
	}
	fresh := c.BootID != h.BootID
	if fresh {
		c = kmsgCount{BootID: h.BootID}
	}
	n, err := kernel.ReadKmsg(a.root(), c.Last, fresh)
	if err != nil {
		a.logf("warning: %v; the kernel's warnings and oopses are not counted", err)
		return h, nil
	}
	c.Last, c.Warnings, c.Oopses, c.Lost = n.Last, c.Warnings+n.Warnings, c.Oopses+n.Oopses, c.Lost || n.Lost
	if b, err := json.Marshal(c); err == nil {
		if err := writeAtomic(path, append(b, '\n'), 0o644); err != nil {
			a.logf("warning: record the kernel log count: %v", err)
		}
	}
	h.Warnings, h.Oopses, h.CountsFrom = c.Warnings, c.Oopses, kernel.CountsKmsg
	return h, nil
}

// verdict says what changed for the worse between two readings of the
// kernel's health in one boot: new warnings, oopses or unexpected taint
// flags; "" when nothing did.
func verdict(before, after kernel.Health) string {
	var bad []string
	if before.BootID != after.BootID {
		return "the kernel rebooted"
	}
	if before.Warnings >= 0 && after.Warnings > before.Warnings {
		bad = append(bad, plural(after.Warnings-before.Warnings, "new kernel warning"))
	}
	if before.Oopses >= 0 && after.Oopses > before.Oopses {
		bad = append(bad, plural(after.Oopses-before.Oopses, "new kernel oops"))
	}
	if added := after.Taint.Added(before.Taint); added != 0 {
		bad = append(bad, "new taint "+added.String())
	}
	return joinAnd(bad)
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if what[len(what)-1] == 's' {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func joinAnd(parts []string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	out := parts[0]
	for _, p := range parts[1 : len(parts)-1] {
		out += ", " + p
	}
	return out + " and " + parts[len(parts)-1]
}

// recordApply writes LastApplyFile; a failure to is a warning.
func (a *Agent) recordApply(r lastApply) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		err = writeAtomic(filepath.Join(a.stateDir(), LastApplyFile), append(b, '\n'), 0o644)
	}
	if err != nil {
		a.logf("warning: record the apply of level %d: %v", r.Level, err)
	}
}

func (a *Agent) readLastApply() (*lastApply, error) {
	b, err := os.ReadFile(filepath.Join(a.stateDir(), LastApplyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r lastApply
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", LastApplyFile, err)
	}
	return &r, nil
}

// Telemetry is the kernel's health as a check-in reports it: now, and
// as of the last apply.
func (a *Agent) Telemetry() (*apitype.Telemetry, error) {
	h, err := a.health()
	if err != nil {
		return nil, err
	}
	t := &apitype.Telemetry{BootID: h.BootID, Uptime: int64(h.Uptime / time.Second), Taint: uint64(h.Taint),
		TaintFlags: h.Taint.String(), Warnings: h.Warnings, Oopses: h.Oopses, CountsFrom: h.CountsFrom}
	r, err := a.readLastApply()
	if err != nil {
		a.logf("warning: %v", err)
	}
	if r != nil && !r.At.IsZero() && apitype.ValidBootID(r.Before.BootID) {
		t.LastApply = &apitype.ApplyReport{Level: r.Level, OK: r.OK, At: r.At.UTC(), BootID: r.Before.BootID,
			Taint: uint64(r.Before.Taint), Warnings: r.Before.Warnings, Oopses: r.Before.Oopses}
	}
	return t, nil
}
