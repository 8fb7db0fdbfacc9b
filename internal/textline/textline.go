// Package textline keeps text that came from outside (a hostname a server
// reported) on its one line of a text report: the Nagios API's body, whose
// status line carries perfdata after "|", check_kcare's output, and
// eportal's tables.
package textline

import "strings"

// Escape returns s with every byte that could end a line, start perfdata
// or drive a terminal written as \xHH: control characters, DEL, "|" and
// every byte outside ASCII. The result is printable ASCII without "|".
// Escape is idempotent (a backslash is left as it is), so text escaped by
// the portal passes through check_kcare unchanged. A tab is escaped too, so
// a value cannot shift the columns of a table.
func Escape(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r >= 0x7f || r == '|' })
	if i < 0 {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for j := i; j < len(s); j++ {
		c := s[j]
		if c < 0x20 || c >= 0x7f || c == '|' {
			b.WriteString(`\x`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
