// Package datadir makes the files and directories eportal keeps: its data
// directory (the database, the index signing key, TLS key, blobs, sync
// state) and the archives it writes. Directories are made 0700 and files
// 0600 whatever the umask, because the data directory holds the portal's
// private keys and a database of key and session hashes that no other
// local user may read. What already exists is left as it is.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kcare/kcare/internal/atomicfile"
)

// Modes of what eportal makes.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// MkdirAll makes dir and any missing parents, each DirMode.
func MkdirAll(dir string) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("mkdir %s: not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := MkdirAll(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, DirMode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // made by someone else meanwhile
		}
		return err
	}
	// The umask may have taken bits away; none is to be added back
	// beyond DirMode.
	return os.Chmod(dir, DirMode)
}

// OpenFile opens path with flag (os.O_RDWR|os.O_CREATE, …). A file it
// creates gets FileMode; an existing file keeps its mode.
func OpenFile(path string, flag int) (*os.File, error) {
	if flag&os.O_CREATE == 0 {
		return os.OpenFile(path, flag, 0)
	}
	f, err := os.OpenFile(path, flag|os.O_EXCL, FileMode)
	if err == nil {
		if err := f.Chmod(FileMode); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	if flag&os.O_EXCL != 0 || !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return os.OpenFile(path, flag&^os.O_CREATE, 0)
}

// MkdirTemp makes a new DirMode directory in dir named by pattern, as
// os.MkdirTemp does.
func MkdirTemp(dir, pattern string) (string, error) {
	d, err := os.MkdirTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(d, DirMode); err != nil {
		os.Remove(d)
		return "", err
	}
	return d, nil
}

// WriteFile writes data to path atomically as a FileMode file
// (atomicfile.WriteFile); its directory is made with MkdirAll.
func WriteFile(path string, data []byte) error {
	if err := MkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, FileMode)
}
