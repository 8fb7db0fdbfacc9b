//go:build !linux

package main

import "errors"

func pinSelf(cpus []int) error { return errors.New("-loadgen-cpus: only on Linux") }
