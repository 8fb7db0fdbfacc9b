package mirror

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// An export archive is a tar of:
//
//	levels.json        the levels, as apitype.MirrorLevel, oldest first
//	blobs/<sha256>     each level's bundle
//	SHA256SUMS         "<sha256>  <name>" for every other file
//
// Import reads the archive once, as a stream: each bundle goes to a spool
// directory in the blob directory (DATA/blobs/.import-*) while its sha256 is
// taken, and is refused at once when that is not its name. At the end it
// checks every file against SHA256SUMS, then every bundle's size, digest,
// publisher signature and manifest against its level, one bundle in
// memory at a time, and only then stores anything. The spool is removed
// whatever happens.

// Bounds of what Import reads.
const (
	MaxArchiveSize = 4 << 30 // all of the archive
	maxLevelsJSON  = 64 << 20
	maxSHA256SUMS  = 16 << 20
)

// maxArchiveEntries bounds the files in an archive (a variable for the
// tests).
var maxArchiveEntries = 100_000

// ErrBadArchive is an archive that fails any check: nothing is imported.
var ErrBadArchive = errors.New("bad archive")

// ExportOptions select what to export.
type ExportOptions struct {
	Since   time.Time // levels published after this
	Kernels []string  // build-ids; empty is all
}

// Export writes the selected levels and their bundles to w.
func Export(ctx context.Context, st store.LevelStore, bs blobs.Store, o ExportOptions, w io.Writer) (int, error) {
	all, err := st.AllLevels(ctx, o.Since)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, k := range o.Kernels {
		want[k] = true
	}
	var levels []apitype.MirrorLevel
	for _, l := range all {
		if len(want) == 0 || want[l.BuildID] {
			levels = append(levels, FromStore(l))
		}
	}
	lj, err := json.MarshalIndent(map[string]any{"levels": levels}, "", "  ")
	if err != nil {
		return 0, err
	}
	tw := tar.NewWriter(w)
	var sums strings.Builder
	add := func(name string, data []byte) error {
		sum := sha256.Sum256(data)
		fmt.Fprintf(&sums, "%s  %s\n", hex.EncodeToString(sum[:]), name)
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("levels.json", lj); err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, l := range levels {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		data, err := bs.Get(l.Digest)
		if err != nil {
			return 0, fmt.Errorf("bundle of level %d of %s: %w", l.Level, l.BuildID, err)
		}
		if err := add("blobs/"+l.Digest, data); err != nil {
			return 0, err
		}
	}
	s := []byte(sums.String())
	if err := tw.WriteHeader(&tar.Header{Name: "SHA256SUMS", Mode: 0o644, Size: int64(len(s)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return 0, err
	}
	if _, err := tw.Write(s); err != nil {
		return 0, err
	}
	return len(levels), tw.Close()
}

// ImportResult says what Import did.
type ImportResult struct {
	Levels  int // in the archive
	Stored  int // new here
	Already int // stored before
}

// Import verifies a whole archive and only then stores its levels. It is
// idempotent: levels already stored are skipped.
func Import(ctx context.Context, st store.LevelStore, bs blobs.Store, publishers *trust.Keyring, r io.Reader) (*ImportResult, error) {
	if err := datadir.MkdirAll(bs.Dir); err != nil {
		return nil, err
	}
	spool, err := datadir.MkdirTemp(bs.Dir, ".import-*")
	if err != nil {
		return nil, fmt.Errorf("import spool: %w", err)
	}
	defer os.RemoveAll(spool)

	a, err := readArchive(ctx, r, spool)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Levels []apitype.MirrorLevel `json:"levels"`
	}
	dec := json.NewDecoder(bytes.NewReader(a.levelsJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: levels.json: %v", ErrBadArchive, err)
	}
	now := time.Now().UTC()
	checked := make([]*store.Level, 0, len(doc.Levels))
	for _, l := range doc.Levels {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := a.bundle(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: level %d of %s: %v", ErrBadArchive, l.Level, l.BuildID, err)
		}
		sl, err := Check(l, data, publishers, now)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		checked = append(checked, sl)
	}
	res := &ImportResult{Levels: len(checked)}
	for _, sl := range checked {
		data, err := a.bundle(sl.Digest)
		if err != nil {
			return res, err
		}
		if d, err := bs.Put(data); err != nil {
			return res, err
		} else if d != sl.Digest {
			return res, fmt.Errorf("bundle %s changed in the import spool (now %s)", sl.Digest, d)
		}
		switch err := st.AddLevel(ctx, sl); {
		case errors.Is(err, store.ErrExists):
			res.Already++
		case err != nil:
			return res, err
		default:
			res.Stored++
		}
	}
	return res, nil
}

// spooledArchive is an archive read by readArchive: its small files in
// memory, its bundles in the spool directory by digest, each checked
// against SHA256SUMS.
type spooledArchive struct {
	dir        string
	levelsJSON []byte
	bundles    map[string]bool // digests spooled
}

// bundle reads the spooled bundle with digest d.
func (a *spooledArchive) bundle(d string) ([]byte, error) {
	if !a.bundles[d] {
		return nil, fmt.Errorf("no bundle %s in the archive", d)
	}
	return os.ReadFile(filepath.Join(a.dir, d))
}

// readArchive reads r, a tar, once: levels.json and SHA256SUMS into
// memory, each blobs/<sha256> into dir, where its content must have the
// sha256 it is named by. Then every file must match SHA256SUMS, and
// SHA256SUMS name nothing else.
func readArchive(ctx context.Context, r io.Reader, dir string) (*spooledArchive, error) {
	tr := tar.NewReader(&boundedReader{r: r, left: MaxArchiveSize})
	a := &spooledArchive{dir: dir, bundles: map[string]bool{}}
	got := map[string]string{} // file name -> its sha256, SHA256SUMS aside
	var sumsText []byte
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		if n >= maxArchiveEntries {
			return nil, fmt.Errorf("%w: more than %d files", ErrBadArchive, maxArchiveEntries)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadArchive, h.Name)
		}
		digest, isBlob := strings.CutPrefix(h.Name, "blobs/")
		var limit int64
		switch {
		case h.Name == "levels.json":
			limit = maxLevelsJSON
		case h.Name == "SHA256SUMS":
			limit = maxSHA256SUMS
		case isBlob && blobs.ValidDigest(digest):
			limit = bundle.MaxBundleSize
		default:
			return nil, fmt.Errorf("%w: unexpected entry %q", ErrBadArchive, h.Name)
		}
		if h.Size < 0 || h.Size > limit {
			return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrBadArchive, h.Name, h.Size, limit)
		}
		if _, dup := got[h.Name]; dup || h.Name == "SHA256SUMS" && sumsText != nil {
			return nil, fmt.Errorf("%w: %s twice", ErrBadArchive, h.Name)
		}
		if isBlob {
			sum, err := spool(tr, h.Size, filepath.Join(dir, digest))
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrBadArchive, h.Name, err)
			}
			if sum != digest {
				return nil, fmt.Errorf("%w: %s has sha256 %s", ErrBadArchive, h.Name, sum)
			}
			got[h.Name] = sum
			a.bundles[digest] = true
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size+1))
		if err != nil || int64(len(data)) != h.Size {
			return nil, fmt.Errorf("%w: %s is truncated", ErrBadArchive, h.Name)
		}
		if h.Name == "SHA256SUMS" {
			sumsText = data
			continue
		}
		sum := sha256.Sum256(data)
		got[h.Name] = hex.EncodeToString(sum[:])
		a.levelsJSON = data
	}
	if sumsText == nil || a.levelsJSON == nil {
		return nil, fmt.Errorf("%w: no SHA256SUMS or levels.json", ErrBadArchive)
	}
	sums, err := parseSums(sumsText)
	if err != nil {
		return nil, err
	}
	for name, sum := range got {
		if sums[name] != sum {
			return nil, fmt.Errorf("%w: %s does not match SHA256SUMS", ErrBadArchive, name)
		}
	}
	for name := range sums {
		if _, ok := got[name]; !ok {
			return nil, fmt.Errorf("%w: %s is in SHA256SUMS but not in the archive", ErrBadArchive, name)
		}
	}
	return a, nil
}

// spool copies size bytes of r to a new file at path and returns their
// sha256.
func spool(r io.Reader, size int64, path string) (string, error) {
	f, err := datadir.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if n != size {
		return "", errors.New("truncated")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// parseSums parses SHA256SUMS: "<sha256>  <name>" lines, each name once.
func parseSums(text []byte) (map[string]string, error) {
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(text)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || !blobs.ValidDigest(sum) {
			return nil, fmt.Errorf("%w: SHA256SUMS line %q", ErrBadArchive, line)
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("%w: SHA256SUMS names %s twice", ErrBadArchive, name)
		}
		sums[name] = sum
	}
	return sums, nil
}

// errArchiveTooLarge is an archive longer than MaxArchiveSize.
var errArchiveTooLarge = fmt.Errorf("larger than %d bytes", MaxArchiveSize)

// boundedReader reads at most left bytes of r, then fails with
// errArchiveTooLarge.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a longer stream from one that ends here.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, errArchiveTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
