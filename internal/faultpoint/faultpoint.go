// Package faultpoint marks the points in kcarectl's work where the fault
// tests (test/faults) stop it: killed there, or the machine's power cut
// there. A binary built with the "faults" build tag acts at the point
// that KCARE_FAULT names (see Hit in faultpoint_faults.go); one built
// without it, as every release binary is, has an empty Hit that the
// compiler removes with its calls, so it holds no fault code at all
// (TestNoFaultCodeWithoutTag checks the symbols and strings of a build).
package faultpoint

// The points, in the order an apply or an unload passes them.
const (
	// AfterVerify is after every check of a bundle has passed, before
	// anything is written or loaded.
	AfterVerify = "after-verify"
	// CacheWrite is in the middle of caching a bundle: the bundle is
	// written, its signature not yet.
	CacheWrite = "cache-write"
	// AfterLoad is just after finit_module took the module.
	AfterLoad = "after-load"
	// TransitionWait is in the wait for a livepatch transition, while
	// the kernel still has it in progress.
	TransitionWait = "transition-wait"
	// AfterRecord is just after the state of a new level was recorded,
	// before the replaced level's module is removed.
	AfterRecord = "after-record"
	// RemoveReplaced is between the kernel freeing a replaced patch and
	// the removal of its module.
	RemoveReplaced = "remove-replaced"
	// Unload is in the middle of kcarectl --unload: the patches are
	// disabled and gone, their modules not yet removed, nor the record.
	Unload = "unload"
)

// Points lists every point, for the tests to walk.
var Points = []string{AfterVerify, CacheWrite, AfterLoad, TransitionWait, AfterRecord, RemoveReplaced, Unload}

// Env names the point to act at and how, as POINT:ACTION, where ACTION is
//
//	kill           SIGKILL this process at once, as the OOM killer or
//	               an operator's kill -9 would
//	hang           write Marker and the point's name to /dev/console and
//	               standard error, then block for ever: the test harness,
//	               watching the console, cuts the guest's power there
//	sleep=DURATION block for DURATION (time.ParseDuration), then go on
//
// A point passed more than once acts the first time only. Only a binary
// built with the faults tag reads it.
const Env = "KCARE_FAULT"

// Marker starts the line hang writes, for the harness to wait for.
const Marker = "kcare-faultpoint: reached "
