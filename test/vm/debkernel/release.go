package debkernel

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// FetchRelease returns the Debian kernel release ("6.1.0-47-amd64"), with
// its headers and kbuild, downloading and extracting it into cacheDir
// unless a complete tree is already there. Unlike Fetch it does not ask
// which kernel is current: a test that needs an older, vulnerable kernel
// names it. The archive must still serve the release.
func FetchRelease(ctx context.Context, cacheDir, release string, logf func(format string, args ...any)) (*Kernel, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "kernel"), 0o755); err != nil {
		return nil, fmt.Errorf("fetch debian kernel %s: %w", release, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return nil, fmt.Errorf("fetch debian kernel %s: %w", release, err)
	}
	defer unlock()
	return fetchRelease(ctx, cacheDir, release, logf)
}
