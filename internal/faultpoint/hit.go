//go:build !faults

package faultpoint

// Hit does nothing: this binary was built without the "faults" tag.
func Hit(string) {}
