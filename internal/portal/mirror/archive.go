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
	"sort"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// An export archive is a tar of:
//
//	levels.json        the levels, as Level, oldest first
//	blobs/<sha256>     each level's bundle
//	SHA256SUMS         "<sha256>  <name>" for every other file
//
// Import checks SHA256SUMS, every bundle's digest and publisher signature,
// and every manifest against its level before it stores anything.

// MaxArchiveSize bounds what Import reads.
const MaxArchiveSize = 4 << 30

// ErrBadArchive is an archive that fails any check: nothing is imported.
var ErrBadArchive = errors.New("bad archive")

// ExportOptions select what to export.
type ExportOptions struct {
	Since   time.Time // levels published after this
	Kernels []string  // build-ids; empty is all
}

// Export writes the selected levels and their bundles to w.
func Export(ctx context.Context, st store.Store, bs blobs.Store, o ExportOptions, w io.Writer) (int, error) {
	ll, ok := st.(store.LevelLister)
	if !ok {
		return 0, errors.New("this store cannot list its levels")
	}
	all, err := ll.AllLevels(ctx, o.Since)
	if err != nil {
		return 0, err
	}
	want := map[string]bool{}
	for _, k := range o.Kernels {
		want[k] = true
	}
	var levels []Level
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
func Import(ctx context.Context, st store.Store, bs blobs.Store, publishers *trust.Keyring, r io.Reader) (*ImportResult, error) {
	files, sums, err := readArchive(r)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		if sums[n] != hex.EncodeToString(sum[:]) {
			return nil, fmt.Errorf("%w: %s does not match SHA256SUMS", ErrBadArchive, n)
		}
	}
	for n := range sums {
		if _, ok := files[n]; !ok {
			return nil, fmt.Errorf("%w: %s is in SHA256SUMS but not in the archive", ErrBadArchive, n)
		}
	}
	var doc struct {
		Levels []Level `json:"levels"`
	}
	dec := json.NewDecoder(bytes.NewReader(files["levels.json"]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: levels.json: %v", ErrBadArchive, err)
	}
	now := time.Now().UTC()
	checked := make([]*store.Level, 0, len(doc.Levels))
	for _, l := range doc.Levels {
		data, ok := files["blobs/"+l.Digest]
		if !ok {
			return nil, fmt.Errorf("%w: no bundle for level %d of %s", ErrBadArchive, l.Level, l.BuildID)
		}
		sl, err := l.Check(data, publishers, now)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		checked = append(checked, sl)
	}
	res := &ImportResult{Levels: len(checked)}
	for _, sl := range checked {
		if _, err := bs.Put(files["blobs/"+sl.Digest]); err != nil {
			return res, err
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

func readArchive(r io.Reader) (map[string][]byte, map[string]string, error) {
	tr := tar.NewReader(io.LimitReader(r, MaxArchiveSize))
	files := map[string][]byte{}
	var sumsText []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, nil, fmt.Errorf("%w: %s is not a regular file", ErrBadArchive, h.Name)
		}
		ok := h.Name == "levels.json" || h.Name == "SHA256SUMS" ||
			(strings.HasPrefix(h.Name, "blobs/") && blobs.ValidDigest(strings.TrimPrefix(h.Name, "blobs/")))
		if !ok || h.Size < 0 || h.Size > bundle.MaxBundleSize {
			return nil, nil, fmt.Errorf("%w: unexpected entry %q", ErrBadArchive, h.Name)
		}
		data, err := io.ReadAll(io.LimitReader(tr, h.Size+1))
		if err != nil || int64(len(data)) != h.Size {
			return nil, nil, fmt.Errorf("%w: %s is truncated", ErrBadArchive, h.Name)
		}
		if h.Name == "SHA256SUMS" {
			sumsText = data
			continue
		}
		if _, dup := files[h.Name]; dup {
			return nil, nil, fmt.Errorf("%w: %s twice", ErrBadArchive, h.Name)
		}
		files[h.Name] = data
	}
	if sumsText == nil || files["levels.json"] == nil {
		return nil, nil, fmt.Errorf("%w: no SHA256SUMS or levels.json", ErrBadArchive)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sumsText)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			return nil, nil, fmt.Errorf("%w: SHA256SUMS line %q", ErrBadArchive, line)
		}
		sums[name] = sum
	}
	return files, sums, nil
}
