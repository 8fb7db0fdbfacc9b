package mirror_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/mirror"
)

type entry struct {
	name string
	data []byte
	size int64 // the header's size when it is not len(data)
}

// tarOf writes entries as a tar, with a SHA256SUMS of them at the end
// when sums is true. An entry with size set gets a header only.
func tarOf(t *testing.T, sums bool, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var s strings.Builder
	for _, e := range entries {
		size := int64(len(e.data))
		if e.size != 0 {
			size = e.size
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o600, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if e.size != 0 {
			return buf.Bytes() // a header claiming more than follows
		}
		tw.Write(e.data)
		sum := sha256.Sum256(e.data)
		fmt.Fprintf(&s, "%x  %s\n", sum, e.name)
	}
	if sums {
		tw.WriteHeader(&tar.Header{Name: "SHA256SUMS", Mode: 0o600, Size: int64(s.Len()), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write([]byte(s.String()))
	}
	tw.Close()
	return buf.Bytes()
}

func blobName(data []byte) string {
	sum := sha256.Sum256(data)
	return "blobs/" + hex.EncodeToString(sum[:])
}

// TestImportRefuses: archives a streaming import must refuse, each with
// ErrBadArchive and nothing stored or left in the blob directory.
func TestImportRefuses(t *testing.T) {
	defer mirror.SetMaxArchiveEntries(4)()
	blob := []byte("a bundle")
	levels := func(digest string) []byte {
		return []byte(fmt.Sprintf(`{"levels":[{"build_id":"x","level":1,"digest":%q,"size":8}]}`, digest))
	}
	goodDigest := strings.TrimPrefix(blobName(blob), "blobs/")
	tests := []struct {
		name    string
		archive []byte
		want    string
	}{
		{"blob_not_its_name", tarOf(t, true, entry{name: "levels.json", data: levels(goodDigest)}, entry{name: blobName([]byte("other")), data: blob}),
			"has sha256 " + goodDigest},
		{"member_over_the_bundle_bound", tarOf(t, false, entry{name: blobName(blob), size: bundle.MaxBundleSize + 1}),
			fmt.Sprintf("is %d bytes, limit %d", bundle.MaxBundleSize+1, bundle.MaxBundleSize)},
		{"too_many_files", tarOf(t, true, entry{name: "levels.json", data: levels(goodDigest)},
			entry{name: blobName([]byte("1")), data: []byte("1")}, entry{name: blobName([]byte("2")), data: []byte("2")},
			entry{name: blobName([]byte("3")), data: []byte("3")}, entry{name: blobName(blob), data: blob}),
			"more than 4 files"},
		{"level_digest_outside_the_spool", tarOf(t, true, entry{name: "levels.json", data: levels("../../portal.key")}, entry{name: blobName(blob), data: blob}),
			"no bundle ../../portal.key in the archive"},
		{"no_sums", tarOf(t, false, entry{name: "levels.json", data: levels(goodDigest)}, entry{name: blobName(blob), data: blob}),
			"no SHA256SUMS or levels.json"},
		{"unexpected_name", tarOf(t, true, entry{name: "../portal.key", data: blob}), `unexpected entry "../portal.key"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPortal(t, nil)
			_, err := mirror.Import(context.Background(), p.st, p.bs, publishers, bytes.NewReader(tt.archive))
			if !errors.Is(err, mirror.ErrBadArchive) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Import: %v; want ErrBadArchive saying %q", err, tt.want)
			}
			if got := p.levels(t); len(got) != 0 {
				t.Errorf("levels %v stored", got)
			}
			if ents, _ := os.ReadDir(p.bs.Dir); len(ents) != 0 {
				t.Errorf("%d entries left in the blob directory, want none", len(ents))
			}
		})
	}
}
