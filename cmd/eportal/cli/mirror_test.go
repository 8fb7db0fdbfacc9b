package cli

import (
	"strings"
	"testing"
)

func TestSyncStatusUnhealthy(t *testing.T) {
	data := t.TempDir()
	stdout, _, code := run(t, "", "sync", "--status", "--data", data)
	if code != ExitError || !strings.Contains(stdout, `"healthy": false`) {
		t.Errorf("sync --status before any sync: exit %d, %q; want 1 and healthy false", code, stdout)
	}
	if _, stderr, code := run(t, "", "sync", "--data", data); code != ExitUsage || !strings.Contains(stderr, "--upstream") {
		t.Errorf("sync without --upstream: exit %d, %q; want usage", code, stderr)
	}
	if _, stderr, code := run(t, "", "import", "/nonexistent.tar", "--data", data); code != ExitError || !strings.Contains(stderr, "publisher keys") {
		t.Errorf("import without publisher keys: exit %d, %q", code, stderr)
	}
}
