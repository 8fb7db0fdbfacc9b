// Package blobs keeps bundles on disk by their sha256, written once and
// never changed, so any proxy or CDN may cache them forever.
package blobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/portal/datadir"
)

// Store is a directory of blobs: DIR/sha256/ab/abcdef….
type Store struct{ Dir string }

var digestRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidDigest reports whether d is a lower-case sha256 hex digest.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// ErrNotFound is a digest the store does not hold.
var ErrNotFound = errors.New("blob not found")

// Path returns where the blob with digest d lives.
func (s Store) Path(d string) string {
	return filepath.Join(s.Dir, "sha256", d[:2], d)
}

// Put stores data and returns its digest. Storing the same bytes twice is
// a no-op.
func (s Store) Put(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	p := s.Path(d)
	if _, err := os.Stat(p); err == nil {
		return d, nil
	}
	if err := datadir.MkdirAll(filepath.Dir(p)); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(p, data, datadir.FileMode); err != nil {
		return "", err
	}
	return d, nil
}

// Open opens the blob with digest d, for reading. The file is opened
// as a plain descriptor, which the runtime's poller (of no use for a
// regular file) is not asked to take: every download opens one.
func (s Store) Open(d string) (*os.File, error) {
	if !ValidDigest(d) {
		return nil, fmt.Errorf("%w: bad digest", ErrNotFound)
	}
	p := s.Path(d)
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ENOENT) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// Get reads a whole blob, checking its digest.
func (s Store) Get(d string) ([]byte, error) {
	f, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != d {
		return nil, fmt.Errorf("blob %s is corrupt on disk", d)
	}
	return b, nil
}
