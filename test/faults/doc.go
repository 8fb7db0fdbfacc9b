// Package faults holds kcare's fault tests: the agent stopped at each of
// its fault points (internal/faultpoint), killed or with the guest's
// power cut there, on a real Debian kernel in QEMU, with full disks,
// damaged caches and records, a clock a year off, a portal restarting and
// connections cut mid-bundle, two kcarectl at once; and the portal killed
// under load on SQLite and PostgreSQL, its PostgreSQL restarted, its
// SQLite database held by a long admin command, and its disk full during
// a publish and a sync. Each case ends by checking that the kernel and
// kcare's record agree, and that nothing acknowledged was lost.
// docs/reliability.md lists the cases and their tests; `make faulttest`
// runs them.
package faults
