// Package atomicfile writes a file so that a reader sees its old contents
// or its new ones, never a part, even after a crash; and so that a
// symbolic link planted in the file's directory cannot redirect the write
// to another file. Every file kcarectl and eportal write whole goes
// through it: WriteFile, or Create and Commit for one written as a stream.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"
)

// createTries bounds how many random temporary names WriteFile tries
// before it gives up; each clash is 2^-64 likely unless someone made it.
const createTries = 8

// tempName returns a new temporary name for a file named base: hidden,
// with 16 random hex digits, unguessable by anyone planting a link.
var tempName = func(base string) string {
	var b [8]byte
	rand.Read(b[:])
	return "." + base + ".tmp-" + hex.EncodeToString(b[:])
}

// WriteFile writes data to path with permissions exactly perm (whatever
// the umask). It creates a temporary file in path's directory under a
// random name with O_CREAT|O_EXCL|O_NOFOLLOW, so that nothing already at
// that name, a symbolic link included, is opened; writes and syncs it,
// created 0600 until it holds all of data; renames it over path, which
// replaces a symbolic link at path instead of following it; and syncs the
// directory. The directory must exist. On failure path is unchanged and
// the temporary file removed. A process killed part-way leaves at most a
// temporary file, which RemoveTemps finds.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// File is a file being written atomically: written to a temporary file
// beside its path, and put at its path by Commit. Until then the path
// keeps what it had.
type File struct {
	f    *os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts writing path atomically, as WriteFile does, for a
// caller that writes it as a stream (an archive): Write to it, then
// Commit; Close without Commit removes the temporary file.
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := create(dir, base)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &File{f: f, path: path, perm: perm}, nil
}

// Write writes to the temporary file.
func (f *File) Write(b []byte) (int, error) { return f.f.Write(b) }

// Sync syncs what was written so far, before Commit: a writer takes the
// space a file needs before it does what the file is to record, so that
// what is left afterwards is Commit's rename, which needs none.
func (f *File) Sync() error {
	if err := f.f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// Commit gives the file its permissions, syncs it, renames it over its
// path and syncs the directory.
func (f *File) Commit() (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s: %w", f.path, err)
		}
	}()
	if f.done {
		return errors.New("already committed or closed")
	}
	f.done = true
	tmp := f.f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err = f.f.Chmod(f.perm); err != nil {
		f.f.Close()
		return err
	}
	if err = f.f.Sync(); err != nil {
		f.f.Close()
		return err
	}
	if err = f.f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, f.path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(tmp))
}

// Close removes the temporary file unless Commit has put it in place.
func (f *File) Close() error {
	if f.done {
		return nil
	}
	f.done = true
	f.f.Close()
	return os.Remove(f.f.Name())
}

// create makes a new temporary file in dir for a file named base.
func create(dir, base string) (*os.File, error) {
	var err error
	for range createTries {
		name := filepath.Join(dir, tempName(base))
		var f *os.File
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ELOOP) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free temporary name after %d tries: %w", createTries, err)
}

// SyncDir syncs a directory, so that a rename or removal in it lasts
// through a crash. A directory that does not exist needs none.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ErrSymlink is a lock or other file found to be a symbolic link where
// kcarectl opens a file of its own: someone planted it, and it is not
// followed.
var ErrSymlink = errors.New("is a symbolic link; refusing to follow it")

// OpenLock opens the lock file at path for flock, creating it with perm
// if it does not exist, without following a symbolic link at path
// (ErrSymlink) and refusing anything but a regular file. Its contents are
// never read or written.
func OpenLock(path string, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("lock %s: %w", path, ErrSymlink)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// tempRE matches the names tempName makes.
var tempRE = regexp.MustCompile(`^\..+\.tmp-[0-9a-f]{16}$`)

// IsTemp reports whether name is one WriteFile gives its temporary files.
func IsTemp(name string) bool { return tempRE.MatchString(name) }

// RemoveTemps removes the temporary files that writers killed part-way
// left in dir (not below it), and returns their names. Only regular files
// with names IsTemp matches are removed; a directory that does not exist
// has none.
func RemoveTemps(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() || !IsTemp(e.Name()) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	if len(removed) > 0 {
		errs = append(errs, SyncDir(dir))
	}
	return removed, errors.Join(errs...)
}
