package mirror

// SetMaxArchiveEntries sets the bound on an archive's files until the
// returned function restores it.
func SetMaxArchiveEntries(n int) (restore func()) {
	old := maxArchiveEntries
	maxArchiveEntries = n
	return func() { maxArchiveEntries = old }
}
