package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/trust"
)

// Sizes of the big export: importLevels bundles of importBundleSize,
// 192 MiB in all.
const (
	importLevels     = 24
	importBundleSize = 8 << 20
	// importMaxGrowth bounds how much more peak resident memory eportal
	// import needs for the big export than for an export of one of its
	// bundles: a small part of the 184 MiB between them.
	importMaxGrowth = 32 << 20
)

// runEportal runs this test binary as a real eportal process and returns
// its output, exit code and peak resident memory in bytes.
func runEportal(t *testing.T, args ...string) (stdout, stderr string, code int, maxRSS int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return o.String(), e.String(), cmd.ProcessState.ExitCode(), ru.Maxrss << 10 // Linux: KiB
}

// bigExport writes an export archive of n levels of size bytes each,
// published by publisher, and returns its path.
func bigExport(t *testing.T, publisher *trust.Signer, n, size int) string {
	t.Helper()
	st := storetest.Open(t, "sqlite")
	bs := blobs.Store{Dir: t.TempDir()}
	srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: bs, IndexKey: bundletest.Signer("kcare import test portal"), Publishers: bundletest.Keyring(t, publisher)})})
	for l := 1; l <= n; l++ {
		data, sig := bundletest.Bundle(t, publisher, l, bundletest.Options{Released: time.Date(2026, 11, l, 9, 0, 0, 0, time.UTC), Pad: size})
		if _, err := srv.Core().Publish(context.Background(), core.CLI, data, sig, core.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "levels.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := mirror.Export(context.Background(), st, bs, mirror.ExportOptions{}, f); err != nil || got != n {
		t.Fatalf("Export: %d, %v", got, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImportStreams: eportal import of a 192 MiB export needs little more
// peak memory than that of an 8 MiB one, and the same archive with one byte of its last
// bundle changed stores nothing and leaves nothing behind.
func TestImportStreams(t *testing.T) {
	publisher := bundletest.Signer("kcare import test publisher")
	pub, _ := publisher.PublicKey()
	archive := bigExport(t, publisher, importLevels, importBundleSize)
	fi, _ := os.Stat(archive)
	newData := func() string {
		d := t.TempDir()
		os.MkdirAll(filepath.Join(d, "publishers"), 0o700)
		os.WriteFile(filepath.Join(d, "publishers", "publisher.pub"), pub, 0o600)
		return d
	}

	small := bigExport(t, publisher, 1, importBundleSize)
	_, stderr, code, smallRSS := runEportal(t, "import", "--data", newData(), small)
	if code != 0 {
		t.Fatalf("eportal import of one level: exit %d, %s", code, stderr)
	}
	t.Logf("eportal import of a one-level archive: peak RSS %d MiB", smallRSS>>20)

	data := newData()
	stdout, stderr, code, rss := runEportal(t, "import", "--data", data, archive)
	t.Logf("eportal import of a %d MiB archive: peak RSS %d MiB", fi.Size()>>20, rss>>20)
	if want := "imported 24 levels (24 new, 0 already here)\n"; code != 0 || stdout != want {
		t.Fatalf("eportal import: exit %d, stdout %q, stderr %q; want 0, %q", code, stdout, stderr, want)
	}
	if rss-smallRSS > importMaxGrowth {
		t.Errorf("eportal import of a %d MiB archive peaked at %d MiB resident, %d MiB more than for one level; want at most %d MiB more",
			fi.Size()>>20, rss>>20, (rss-smallRSS)>>20, importMaxGrowth>>20)
	}

	// The last bundle's last module byte changed: the archive is refused
	// whole, and no blob, level or spool file is left.
	tampered := filepath.Join(t.TempDir(), "tampered.tar")
	b, _ := os.ReadFile(archive)
	last := -1 // the last blob's tar header: a 512-byte block starting with its name
	for i := 0; i+512 <= len(b); i += 512 {
		if bytes.HasPrefix(b[i:], []byte("blobs/")) {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("no blob in the export")
	}
	b[last+512+importBundleSize/2] ^= 0x01
	os.WriteFile(tampered, b, 0o600)
	b = nil
	data = newData()
	stdout, stderr, code, _ = runEportal(t, "import", "--data", data, tampered)
	if code != 1 || stdout != "" {
		t.Errorf("import of a tampered archive: exit %d, stdout %q, stderr %q; want 1 and nothing imported", code, stdout, stderr)
	}
	t.Logf("tampered: %s", stderr)
	left := modes(t, data)
	for _, p := range []string{"publishers", "publishers/publisher.pub", "eportal.db", "eportal.db-wal", "eportal.db-shm"} {
		delete(left, filepath.Join(filepath.Base(data), p))
	}
	delete(left, filepath.Base(data))
	if m, ok := left[filepath.Join(filepath.Base(data), "blobs")]; ok && m.IsDir() {
		delete(left, filepath.Join(filepath.Base(data), "blobs")) // empty: anything in it is listed
	}
	for p := range left {
		t.Errorf("left behind by a refused import: %s", p)
	}
	if out, _, _ := run(t, "", "patchset", "list", "--feed", "main", "--data", data); bytes.Contains([]byte(out), []byte("K2026")) {
		t.Errorf("a refused import left levels:\n%s", out)
	}
}
