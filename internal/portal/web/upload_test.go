package web

import (
	"bytes"
	"errors"
	"mime/multipart"
	"strings"
	"testing"
)

// uploadForm is a multipart upload of the fields, in order, and its
// boundary.
func uploadForm(t testing.TB, fields ...[2]string) ([]byte, string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		var err error
		if f[0] == "bundle" || f[0] == "signature" {
			fw, ferr := w.CreateFormFile(f[0], f[0]+".bin")
			if ferr == nil {
				_, err = fw.Write([]byte(f[1]))
			} else {
				err = ferr
			}
		} else {
			err = w.WriteField(f[0], f[1])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.Boundary()
}

func TestReadUpload(t *testing.T) {
	const tok = "0123456789abcdef"
	full := [][2]string{{"csrf", tok}, {"channel", "test"}, {"patchset", "K20261120_01"}, {"bundle", "BUNDLE"}, {"signature", "SIG"}}
	for _, tc := range []struct {
		name   string
		fields [][2]string
		want   error // nil: accepted
	}{
		{"full", full, nil},
		{"token_only", [][2]string{{"csrf", tok}}, nil},
		{"empty", nil, ErrUploadCSRF},
		{"wrong_token", [][2]string{{"csrf", tok + "x"}, {"bundle", "B"}}, ErrUploadCSRF},
		{"token_not_first", [][2]string{{"bundle", "B"}, {"csrf", tok}}, ErrUploadCSRF},
		{"unknown_field", [][2]string{{"csrf", tok}, {"extra", "x"}}, ErrUpload},
		{"field_twice", [][2]string{{"csrf", tok}, {"channel", "a"}, {"channel", "b"}}, ErrUpload},
		{"token_twice", [][2]string{{"csrf", tok}, {"csrf", tok}}, ErrUpload},
		{"patchset_too_long", [][2]string{{"csrf", tok}, {"patchset", strings.Repeat("x", 257)}}, ErrUploadTooLarge},
		{"token_too_long", [][2]string{{"csrf", strings.Repeat("x", 9<<10)}}, ErrUploadTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, boundary := uploadForm(t, tc.fields...)
			got, err := readUpload(bytes.NewReader(body), boundary, tok)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("readUpload = %v, want the form", err)
				}
				for _, f := range tc.fields {
					if string(got[f[0]]) != f[1] {
						t.Errorf("part %s = %q, want %q", f[0], got[f[0]], f[1])
					}
				}
				if len(got) != len(tc.fields) {
					t.Errorf("readUpload read %d parts, want %d", len(got), len(tc.fields))
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrUpload) {
				t.Errorf("readUpload = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := readUpload(strings.NewReader(""), "", tok); !errors.Is(err, ErrUpload) {
		t.Errorf("readUpload without a boundary = %v, want ErrUpload", err)
	}
}
