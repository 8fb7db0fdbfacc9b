package main

import "syscall"

// sysProcAttr puts a child in its own process group, so that a terminal's
// interrupt reaches loadgen alone and loadgen stops the child in order,
// and has the kernel kill the child if loadgen dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
