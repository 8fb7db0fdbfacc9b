package store

import (
	"strings"
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

// AuditKey is a key as an audit entry's before or after shows it: its
// settings, with the key masked. nil for nil.
func AuditKey(k *Key) any {
	if k == nil {
		return nil
	}
	ranges := k.IPRanges
	if ranges == nil {
		ranges = []string{}
	}
	return map[string]any{"key": MaskKey(k.Key), "note": k.Note, "limit": k.Limit, "feed": k.Feed, "sticky": k.Sticky, "ip_ranges": ranges}
}

// AuditObject is the object an audit entry names: an activation key,
// the object of every key.* action, masked.
func AuditObject(action, object string) string {
	if strings.HasPrefix(action, "key.") {
		return MaskKey(object)
	}
	return object
}
