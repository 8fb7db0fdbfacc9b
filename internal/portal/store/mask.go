package store

import (
	"unicode/utf8"
)

// MaskKey is an activation key as the audit log, logs and error messages
// show it: its first four characters and "…", fewer for a short key (none
// below eight), so an operator can tell keys apart but nobody reading the
// text can use one.
func MaskKey(key string) string {
	if key == "" {
		return ""
	}
	n := min(4, utf8.RuneCountInString(key)/4)
	cut := 0
	for i := 0; i < n; i++ {
		_, size := utf8.DecodeRuneInString(key[cut:])
		cut += size
	}
	return key[:cut] + "…"
}
