package index

import (
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/kcare/kcare/internal/trust"
)

// SignatureHeader is the HTTP response header carrying an index's detached
// signature. The body is the exact signed bytes.
const SignatureHeader = "Kcare-Index-Signature"

// EncodeSignature returns sig, binary or armored, as a SignatureHeader
// value: standard base64.
func EncodeSignature(sig []byte) string {
	return base64.StdEncoding.EncodeToString(sig)
}

// maxHeaderLen is the longest header value DecodeSignature reads: the
// encoding of the largest signature trust reads.
var maxHeaderLen = base64.StdEncoding.EncodedLen(trust.MaxSignatureSize)

// DecodeSignature returns the signature in a SignatureHeader value. A
// missing or empty header is trust.ErrUnsigned; one that is not standard
// base64, or too long to hold a signature, is trust.ErrMalformedSignature.
func DecodeSignature(h string) ([]byte, error) {
	h = strings.TrimSpace(h)
	switch {
	case h == "":
		return nil, fmt.Errorf("%s header: %w: header is missing or empty", SignatureHeader, trust.ErrUnsigned)
	case len(h) > maxHeaderLen:
		return nil, fmt.Errorf("%s header: %w: %d characters is over the %d-character limit", SignatureHeader, trust.ErrMalformedSignature, len(h), maxHeaderLen)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("%s header: %w: not base64: %v", SignatureHeader, trust.ErrMalformedSignature, err)
	}
	return sig, nil
}

// LimitedReader returns a reader of at most n bytes of r. When r holds more
// than n bytes, the read that passes the n-th byte returns the bytes up to
// it and an error wrapping ErrTooLarge that names n; so does every read
// after. It is for downloading a bundle no larger than its index announced.
func LimitedReader(r io.Reader, n int64) io.Reader {
	return &limitedReader{r: r, left: max(n, 0), limit: max(n, 0)}
}

type limitedReader struct {
	r     io.Reader
	left  int64 // bytes still allowed
	limit int64
	err   error // sticky ErrTooLarge
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Ask for one byte past the limit, so a source of exactly n bytes ends
	// with EOF and a longer one is caught without an extra read.
	if l.left < int64(len(p)) {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n = int(l.left)
		l.left = 0
		l.err = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, l.limit)
		return n, l.err
	}
	l.left -= int64(n)
	return n, err
}
