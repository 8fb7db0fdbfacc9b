// Package vm holds kcare's end-to-end tests on a real Debian kernel booted
// in QEMU: fixture livepatch modules are built against the kernel's
// headers, packed and signed, and applied by a static kcarectl in the
// guest. Run them with `make vmtest`.
package vm
