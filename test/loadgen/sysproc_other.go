//go:build unix && !linux

package main

import "syscall"

// sysProcAttr puts a child in its own process group, so that a terminal's
// interrupt reaches loadgen alone and loadgen stops the child in order.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
