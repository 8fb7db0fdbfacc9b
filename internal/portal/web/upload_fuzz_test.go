package web

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReadUpload: any body is read within the limits or refused with an
// upload error, and what is read carries the right token first.
func FuzzReadUpload(f *testing.F) {
	const tok = "0123456789abcdef"
	for _, fields := range [][][2]string{
		{{"csrf", tok}, {"channel", "stable"}, {"patchset", "K20261120_01"}, {"bundle", "KCP1 bundle"}, {"signature", "-----BEGIN PGP SIGNATURE-----"}},
		{{"csrf", tok}},
		{{"csrf", "wrong"}, {"bundle", "x"}},
		{{"bundle", "x"}, {"csrf", tok}},
		{{"csrf", tok}, {"channel", "a"}, {"channel", "b"}},
	} {
		body, boundary := uploadForm(f, fields...)
		f.Add(body, boundary)
	}
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n0123456789abcde=\r\nf\r\n--b--\r\n"), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		parts, err := readUpload(bytes.NewReader(body), boundary, tok)
		if err != nil {
			if !errors.Is(err, ErrUpload) {
				t.Fatalf("readUpload = %v, not an upload error", err)
			}
			if parts != nil {
				t.Fatalf("readUpload returned parts with an error")
			}
			return
		}
		if string(parts["csrf"]) != tok {
			t.Fatalf("accepted a form with token %q", parts["csrf"])
		}
		for name, b := range parts {
			i := partIndex(name)
			if i < 0 || int64(len(b)) > uploadParts[i].max {
				t.Fatalf("part %q of %d bytes accepted", name, len(b))
			}
		}
	})
}
