// Package failure names the kinds of failure the kcare commands tell
// apart. A specific error of the packages below (a bad signature, a
// stalled transition, a bad command line) is made with New and is then
// also its category under errors.Is, as go-tuf's metadata errors are: so
// a command maps a few categories to its exit codes, not long lists of
// errors, and a new error of a known kind needs no change there.
package failure

import "errors"

// Category is a kind of failure. Categories are compared by identity.
type Category struct{ name string }

func (c *Category) Error() string { return c.name }

// The categories.
var (
	// Usage: the command line is wrong (an unknown flag, a missing
	// argument, a bad value).
	Usage = &Category{"usage"}
	// Refused: something received failed verification (signature,
	// digest, size, target kernel, vermagic, the question an index
	// answers, a downgrade) and nothing was applied.
	Refused = &Category{"refused"}
	// Unsupported: the kernel cannot take the patch (no livepatch
	// support, the module refused).
	Unsupported = &Category{"unsupported"}
	// Stalled: a livepatch transition did not finish within its bound
	// and was reversed.
	Stalled = &Category{"stalled"}
	// Locked: another process holds the lock.
	Locked = &Category{"locked"}
	// NotSupported: a KernelCare option or setting kcare does not have
	// (user-space patching, the freezer): refused, never ignored.
	NotSupported = &Category{"not supported by kcare"}
)

// categorized is an error of a category.
type categorized struct {
	cat *Category
	msg string
}

func (e *categorized) Error() string { return e.msg }

// Is reports whether target is e's category.
func (e *categorized) Is(target error) bool { return target == e.cat }

// New returns an error with text msg that is also c under errors.Is.
// Each call returns a distinct error, as errors.New does.
func New(c *Category, msg string) error { return &categorized{cat: c, msg: msg} }

// Of returns the first of cats that err is (errors.Is), or nil.
func Of(err error, cats ...*Category) *Category {
	for _, c := range cats {
		if errors.Is(err, c) {
			return c
		}
	}
	return nil
}
