package web

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"

	"github.com/kcare/kcare/internal/bundle"
)

// Upload errors; each matches ErrUpload too.
var (
	ErrUpload         = errors.New("bad upload form")
	ErrUploadCSRF     = fmt.Errorf("%w: missing or wrong CSRF token", ErrUpload)
	ErrUploadTooLarge = fmt.Errorf("%w: too large", ErrUpload)
)

// uploadPart is a part the patch upload form may carry, and the most
// bytes it may hold.
type uploadPart struct {
	name string
	max  int64
}

// uploadParts are the patch upload form's parts. The CSRF token comes
// first, as the form's first field.
var uploadParts = []uploadPart{
	{"csrf", 128},
	{"channel", 64},
	{"patchset", 256},
	{"bundle", bundle.MaxBundleSize},
	{"signature", bundle.MaxSignatureSize},
}

const (
	// uploadBeforeCSRF is the most of an upload read before its CSRF
	// token is checked: the preamble and the token's part.
	uploadBeforeCSRF = 8 << 10
	// uploadMaxBody is the most an upload may hold: its parts and their
	// headers.
	uploadMaxBody = bundle.MaxBundleSize + bundle.MaxSignatureSize + 16<<10
)

// readUpload reads the patch upload form, multipart/form-data with the
// given boundary, into memory: nothing is written to disk. The first
// part must be the CSRF token and equal csrf, checked before more than
// uploadBeforeCSRF bytes are read; then each part of uploadParts may come
// once, up to its limit. An unknown or repeated part, or one over its
// limit, refuses the whole form.
func readUpload(body io.Reader, boundary, csrf string) (map[string][]byte, error) {
	if boundary == "" {
		return nil, fmt.Errorf("%w: no multipart boundary", ErrUpload)
	}
	lr := &io.LimitedReader{R: body, N: uploadBeforeCSRF}
	mr := multipart.NewReader(lr, boundary)
	out := map[string][]byte{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, readError(lr, err)
		}
		name := p.FormName()
		i := partIndex(name)
		switch {
		case len(out) == 0 && name != "csrf":
			return nil, ErrUploadCSRF
		case i < 0:
			return nil, fmt.Errorf("%w: unexpected field %q", ErrUpload, name)
		case out[name] != nil:
			return nil, fmt.Errorf("%w: field %q twice", ErrUpload, name)
		}
		b, err := io.ReadAll(io.LimitReader(p, uploadParts[i].max+1))
		if err != nil {
			return nil, readError(lr, err)
		}
		if int64(len(b)) > uploadParts[i].max {
			return nil, fmt.Errorf("%w: %s (limit %d bytes)", ErrUploadTooLarge, name, uploadParts[i].max)
		}
		if name == "csrf" {
			if !tokenMatches(string(b), csrf) {
				return nil, ErrUploadCSRF
			}
			lr.N = uploadMaxBody
		}
		out[name] = b
	}
	if len(out) == 0 {
		return nil, ErrUploadCSRF
	}
	return out, nil
}

func partIndex(name string) int {
	for i, p := range uploadParts {
		if p.name == name {
			return i
		}
	}
	return -1
}

// readError names a read that ran out of its budget too large, and any
// other a bad form.
func readError(lr *io.LimitedReader, err error) error {
	if lr.N <= 0 {
		return fmt.Errorf("%w: %w", ErrUploadTooLarge, err)
	}
	return fmt.Errorf("%w: %w", ErrUpload, err)
}
