// Package taint reads the kernel's taint mask (/proc/sys/kernel/tainted):
// which bit is which flag, the letters the kernel prints for them, and
// which ones every kcare livepatch sets by itself, so that they are no
// sign of trouble.
package taint

import (
	"fmt"
	"strconv"
	"strings"
)

// Mask is the kernel's taint mask, as /proc/sys/kernel/tainted holds it.
type Mask uint64

// The flags, by bit, as the kernel's taint_flags table names them.
const (
	Proprietary    Mask = 1 << 0  // P: a proprietary module was loaded
	ForcedModule   Mask = 1 << 1  // F: a module was force-loaded
	OutOfSpec      Mask = 1 << 2  // S: the CPU runs out of its specification
	ForcedRmmod    Mask = 1 << 3  // R: a module was force-unloaded
	MachineCheck   Mask = 1 << 4  // M: a machine check exception occurred
	BadPage        Mask = 1 << 5  // B: a bad page was referenced
	User           Mask = 1 << 6  // U: taint requested by user space
	Die            Mask = 1 << 7  // D: the kernel died (an oops)
	OverriddenACPI Mask = 1 << 8  // A: an ACPI table was overridden
	Warn           Mask = 1 << 9  // W: a kernel warning was issued
	Staging        Mask = 1 << 10 // C: a staging driver was loaded
	Firmware       Mask = 1 << 11 // I: a firmware bug was worked around
	OutOfTree      Mask = 1 << 12 // O: an out-of-tree module was loaded
	Unsigned       Mask = 1 << 13 // E: an unsigned module was loaded
	SoftLockup     Mask = 1 << 14 // L: a soft lockup occurred
	Livepatch      Mask = 1 << 15 // K: the kernel was live patched
	Aux            Mask = 1 << 16 // X: an auxiliary taint, distribution-defined
	Randstruct     Mask = 1 << 17 // T: built with the randstruct plugin
	Test           Mask = 1 << 18 // N: an in-kernel test ran
	Fwctl          Mask = 1 << 19 // J: fwctl was used (6.15 on)
)

// letters are the flags' letters by bit, as the kernel prints them.
const letters = "PFSRMBUDAWCIOELKXTNJ"

// Expected are the flags applying a kcare livepatch sets by itself: K,
// and, for a module built out of the kernel's tree and not signed with
// the kernel's key, O and E. They are no sign of trouble.
const Expected = Livepatch | OutOfTree | Unsigned

// Parse reads the text of /proc/sys/kernel/tainted.
func Parse(s string) (Mask, error) {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("taint mask %q: %w", strings.TrimSpace(s), err)
	}
	return Mask(v), nil
}

// String returns the letters of the flags set, in bit order ("WOEK"); a
// bit the kernel had no letter for in 6.15 is written as its number in
// brackets ("[23]"). An untainted kernel is "".
func (m Mask) String() string {
	var b strings.Builder
	for bit := 0; bit < 64; bit++ {
		if m&(1<<bit) == 0 {
			continue
		}
		if bit < len(letters) {
			b.WriteByte(letters[bit])
		} else {
			fmt.Fprintf(&b, "[%d]", bit)
		}
	}
	return b.String()
}

// Unexpected returns the flags of m that are a sign of trouble: all but
// Expected.
func (m Mask) Unexpected() Mask { return m &^ Expected }

// Added returns the unexpected flags m has that before did not: what
// changed for the worse since before.
func (m Mask) Added(before Mask) Mask { return (m &^ before).Unexpected() }
