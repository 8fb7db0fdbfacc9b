package store

import "strings"

// MaskKey is an activation key as the audit log shows it: its first four
// characters and "…", fewer for a short key (none below eight), so an
// operator can tell keys apart but nobody reading the log can use one.
func MaskKey(key string) string {
	if key == "" {
		return ""
	}
	return key[:min(4, len(key)/4)] + "…"
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
