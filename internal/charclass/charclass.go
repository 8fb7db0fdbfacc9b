// Package charclass matches the simplest patterns there are, a string of
// a bounded number of characters each from one set, `^[A-Za-z0-9._-]{1,253}$`,
// without a regular expression. A regular expression compiles a bounded
// repetition into a program as long as its bound, at every start of the
// process that holds it: the hostname pattern alone is 3,300 allocations,
// and kcarectl, which checks a dozen such fields, spent most of its start
// in a slow virtual machine compiling them.
package charclass

import (
	"fmt"
	"unicode/utf8"
)

// Class is a set of characters and the lengths, in characters, a string
// of them may have.
type Class struct {
	in       [utf8.RuneSelf]bool // the ASCII characters named
	negate   bool                // every character but those, non-ASCII ones included
	min, max int
}

// New returns the class spec names, as the inside of a regular
// expression's brackets does: single characters and ranges "a-z", a
// leading "^" for all characters but those, "-" as itself first or last.
// Every character named must be ASCII. It panics on a bad spec, as
// regexp.MustCompile does: specs are constants.
func New(spec string, min, max int) *Class {
	c := &Class{min: min, max: max}
	if len(spec) > 0 && spec[0] == '^' {
		c.negate, spec = true, spec[1:]
	}
	for i := 0; i < len(spec); i++ {
		lo := spec[i]
		hi := lo
		if i+2 < len(spec) && spec[i+1] == '-' {
			hi = spec[i+2]
			i += 2
		}
		if lo >= utf8.RuneSelf || hi >= utf8.RuneSelf || hi < lo {
			panic(fmt.Sprintf("charclass: bad spec %q", spec))
		}
		for b := lo; ; b++ {
			c.in[b] = true
			if b == hi {
				break
			}
		}
	}
	if min < 0 || max < min {
		panic(fmt.Sprintf("charclass: bad lengths %d to %d", min, max))
	}
	return c
}

// MatchString reports whether s is min to max characters of the class.
// An invalid UTF-8 byte is the character U+FFFD, as for regexp.
func (c *Class) MatchString(s string) bool {
	n := 0
	for _, r := range s {
		named := r < utf8.RuneSelf && c.in[r]
		if named == c.negate {
			return false
		}
		n++
		if n > c.max {
			return false
		}
	}
	return n >= c.min
}

// Headed is one character of a class, then a string of another, as
// `^[0-9][A-Za-z0-9.+~-]{0,99}$` says.
type Headed struct{ head, rest *Class }

// Then returns the pattern of one character of c followed by a string of
// rest. c must be of one character (New(spec, 1, 1)).
func (c *Class) Then(rest *Class) *Headed {
	if c.min != 1 || c.max != 1 {
		panic("charclass: Then of a class not of one character")
	}
	return &Headed{c, rest}
}

// MatchString reports whether s is a character of the head's class and
// then a string of the rest's.
func (h *Headed) MatchString(s string) bool {
	_, n := utf8.DecodeRuneInString(s)
	return s != "" && h.head.MatchString(s[:n]) && h.rest.MatchString(s[n:])
}
