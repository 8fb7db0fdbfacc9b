package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

const victimText = "victim\n"

// plantVictim makes a victim file (or only its name, when !exists) and a
// symbolic link to it at link.
func plantVictim(t *testing.T, link string, exists bool) string {
	t.Helper()
	victim := filepath.Join(t.TempDir(), "victim")
	if exists {
		if err := os.WriteFile(victim, []byte(victimText), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	return victim
}

func checkVictim(t *testing.T, victim string, exists bool) {
	t.Helper()
	b, err := os.ReadFile(victim)
	switch {
	case !exists && !errors.Is(err, fs.ErrNotExist):
		t.Errorf("the link's target was created: %q, %v", b, err)
	case exists && string(b) != victimText:
		t.Errorf("victim holds %q, %v; want %q", b, err, victimText)
	}
}

func list(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "systemid")
	for _, tt := range []struct {
		data string
		perm os.FileMode
	}{{"first\n", 0o644}, {"second\n", 0o600}, {"", 0o644}} {
		if err := WriteFile(path, []byte(tt.data), tt.perm); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != tt.perm {
			t.Fatalf("after writing %q with %v: %v, %v", tt.data, tt.perm, fi.Mode(), err)
		}
		if b, _ := os.ReadFile(path); string(b) != tt.data {
			t.Errorf("file holds %q, want %q", b, tt.data)
		}
	}
	if got := list(t, dir); len(got) != 1 || got[0] != "systemid" {
		t.Errorf("directory holds %q, want only systemid", got)
	}
}

// TestWriteFileReplacesLinkAtPath: a symbolic link at the path itself is
// replaced by the new file, and its target left alone.
func TestWriteFileReplacesLinkAtPath(t *testing.T) {
	for _, exists := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "server-secret")
		victim := plantVictim(t, path, exists)
		if err := WriteFile(path, []byte("secret\n"), 0o600); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		checkVictim(t, victim, exists)
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("path is %v, %v; want a regular file", fi.Mode(), err)
		}
	}
}

// TestWriteFileRefusesPlantedTempName: were the temporary name guessed
// and a link planted there, it is neither followed nor replaced: the
// write fails and path, the link and its target are unchanged.
func TestWriteFileRefusesPlantedTempName(t *testing.T) {
	old := tempName
	defer func() { tempName = old }()
	tempName = func(base string) string { return "." + base + ".tmp-guessed" }
	for _, exists := range []bool{true, false} {
		dir := t.TempDir()
		path := filepath.Join(dir, "server-secret")
		if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, ".server-secret.tmp-guessed")
		victim := plantVictim(t, link, exists)
		err := WriteFile(path, []byte("secret\n"), 0o600)
		if err == nil {
			t.Fatal("WriteFile through a planted link succeeded")
		}
		checkVictim(t, victim, exists)
		if b, _ := os.ReadFile(path); string(b) != "old\n" {
			t.Errorf("path holds %q after the failed write, want it unchanged", b)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("the planted link is now %v, %v", fi.Mode(), err)
		}
	}
}

func TestWriteFileNoDirectory(t *testing.T) {
	err := WriteFile(filepath.Join(t.TempDir(), "missing", "state.json"), []byte("{}"), 0o644)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile into a missing directory = %v, want ErrNotExist", err)
	}
}

func TestOpenLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kcarectl.lock")
	f, err := OpenLock(path, 0o600)
	if err != nil {
		t.Fatalf("OpenLock: %v", err)
	}
	f.Close()
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file is %v, %v; want a regular file, 0600", fi.Mode(), err)
	}
	if f, err = OpenLock(path, 0o600); err != nil {
		t.Fatalf("OpenLock of an existing lock: %v", err)
	}
	f.Close()

	for _, exists := range []bool{true, false} {
		link := filepath.Join(t.TempDir(), "kcarectl.lock")
		victim := plantVictim(t, link, exists)
		if _, err := OpenLock(link, 0o600); !errors.Is(err, ErrSymlink) {
			t.Errorf("OpenLock of a planted link = %v, want ErrSymlink", err)
		}
		checkVictim(t, victim, exists)
	}

	fifo := filepath.Join(t.TempDir(), "kcarectl.lock")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLock(fifo, 0o600); err == nil {
		t.Error("OpenLock of a FIFO succeeded, want a refusal")
	}
}

// TestSyncThenCommit: a file written and synced stays out of place until
// Commit, and Close without Commit leaves nothing.
func TestSyncThenCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(data string) *File {
		f, err := Create(path, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := write("new\n")
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Errorf("before Commit %s holds %q, want the old contents", path, b)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Close() // nothing to do after Commit
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Errorf("after Commit %s holds %q, want %q", path, b, "new\n")
	}
	write("newer\n").Close()
	if got := list(t, dir); len(got) != 1 || got[0] != "state.json" {
		t.Errorf("after Close the directory holds %v, want only state.json", got)
	}
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Errorf("after Close %s holds %q, want %q", path, b, "new\n")
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	// What a writer killed after creating its temporary file leaves.
	left := "." + tempName("state.json")[1:]
	for _, name := range []string{left, "state.json", ".state.json.tmp-notours", "level-2.kcp"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "."+tempName("d")[1:]), 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveTemps(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != left {
		t.Errorf("RemoveTemps removed %v, want [%s]", removed, left)
	}
	if got := len(list(t, dir)); got != 4 {
		t.Errorf("%d entries left, want 4 (the file, the names that are not temporary, the directory): %v", got, list(t, dir))
	}
	if removed, err := RemoveTemps(filepath.Join(dir, "missing")); err != nil || removed != nil {
		t.Errorf("RemoveTemps of a missing directory = %v, %v; want nothing", removed, err)
	}
}
