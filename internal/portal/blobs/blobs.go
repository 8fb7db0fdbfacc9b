// Package blobs keeps bundles by their sha256, written once and never
// changed, so any proxy or CDN may cache them forever: on disk in the
// data directory, or, for replicas of a portal on one database, in the
// database (a Remote), with the data directory a read-through cache of
// them from which downloads are sent.
package blobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/portal/datadir"
)

// Store is a directory of blobs: DIR/sha256/ab/abcdef…. With a Remote,
// the directory is a cache of the blobs the Remote keeps.
type Store struct {
	Dir    string
	Remote Remote
}

// Remote is where a portal's replicas keep their blobs: its database.
type Remote interface {
	// PutBlob stores data under its digest d; again changes nothing.
	PutBlob(ctx context.Context, d string, data []byte) error
	// ReadBlob writes the blob d to w; an error matching ErrNotFound
	// when there is none.
	ReadBlob(ctx context.Context, d string, w io.Writer) (int64, error)
}

// remoteBound bounds storing or fetching one blob in a Remote.
const remoteBound = 5 * time.Minute

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
	if s.Remote != nil {
		// The shared copy first: a replica whose cache has the blob may
		// be the one that put it there before the database had it.
		ctx, cancel := context.WithTimeout(context.Background(), remoteBound)
		defer cancel()
		if err := s.Remote.PutBlob(ctx, d, data); err != nil {
			return "", err
		}
	}
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
	if errors.Is(err, syscall.ENOENT) && s.Remote != nil {
		if err := s.fetch(d); err != nil {
			return nil, err
		}
		fd, err = syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	}
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

// fetch copies the blob d from the Remote into the cache: streamed to a
// temporary file, its sha256 checked, and renamed into place, so that
// what the cache holds is always whole and right. Replicas, or requests,
// fetching one blob at once each write their own copy; the last rename
// wins, with the same bytes.
func (s Store) fetch(d string) error {
	p := s.Path(d)
	if err := datadir.MkdirAll(filepath.Dir(p)); err != nil {
		return err
	}
	f, err := atomicfile.Create(p, datadir.FileMode)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), remoteBound)
	defer cancel()
	h := sha256.New()
	if _, err := s.Remote.ReadBlob(ctx, d, io.MultiWriter(f, h)); err != nil {
		return fmt.Errorf("fetch blob %s: %w", d, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d {
		return fmt.Errorf("fetch blob %s: the database holds bytes with sha256 %s", d, got)
	}
	return f.Commit()
}
