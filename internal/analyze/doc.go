// Package analyze finds the functions a kernel fix changes: it builds the
// objects a patch touches from the distribution's kernel source and
// config, before and after the patch, and compares them function by
// function, so a livepatch that misses one is refused.
package analyze
