package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/trust"
)

const debianVersion = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)\n"

func testManifest() Manifest {
	return Manifest{
		Name:  "6.1.0-56-amd64-2",
		Level: 2,
		Kernel: Kernel{
			BuildID:  "eb4fbcd037e7253717950bf2b93bd5566f47c56f",
			Release:  "6.1.0-56-amd64",
			Version:  debianVersion,
			KernelID: "f78293328fd93c8717bc4ed0f0ae1f4243d5b898",
		},
		Module:           Module{File: "kcare_test_l2.ko", Name: "kcare_test_l2", Vermagic: "6.1.0-56-amd64 SMP preempt mod_unload modversions "},
		CVEs:             []CVE{{ID: "CVE-2026-0002", Description: "fixture", URL: "https://www.cve.org/CVERecord?id=CVE-2026-0002"}},
		EffectiveRelease: "6.1.0-56.2-amd64",
		Released:         time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
	}
}

func write(t *testing.T, m Manifest, module []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, m, module); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	mod := []byte("\x7fELF pretend module")
	data := write(t, testManifest(), mod)
	b, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !bytes.Equal(b.Module, mod) {
		t.Errorf("module = %q, want %q", b.Module, mod)
	}
	if b.Manifest.Module.Size != int64(len(mod)) || b.Manifest.Format != FormatVersion || b.Manifest.Level != 2 {
		t.Errorf("manifest = %+v", b.Manifest)
	}
	if again := write(t, testManifest(), mod); !bytes.Equal(again, data) {
		t.Error("Write is not deterministic")
	}
}

// rawTar builds an archive entry by entry, for malformed bundles.
func rawTar(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		body := []byte(strings.Repeat("x", int(h.Size)))
		if h.Name == ManifestFile && h.Size == 0 {
			mj, _ := json.Marshal(withDigest(testManifest(), []byte("mod")))
			body, h.Size = mj, int64(len(mj))
		}
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeDir {
			body, h.Size = nil, 0
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

func withDigest(m Manifest, mod []byte) Manifest {
	var buf bytes.Buffer
	Write(&buf, m, mod)
	b, _ := Parse(buf.Bytes())
	return b.Manifest
}

func TestParseRefusals(t *testing.T) {
	good := write(t, testManifest(), []byte("mod"))
	tampered := bytes.Replace(good, []byte("mod\x00"), []byte("MOD\x00"), 1)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"not_tar", []byte("this is not a tar archive, not at all, no"), ErrMalformed},
		{"module_changed", tampered, ErrDigestMismatch},
		{"oversize", make([]byte, MaxBundleSize+1), ErrTooLarge},
		{"only_manifest", rawTar(t, tar.Header{Name: ManifestFile, Typeflag: tar.TypeReg, Mode: 0o644}), ErrMalformed},
		{"module_first", rawTar(t, tar.Header{Name: "kcare_test_l2.ko", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}, tar.Header{Name: ManifestFile, Typeflag: tar.TypeReg, Mode: 0o644}), ErrMalformed},
		{"symlink", rawTar(t, tar.Header{Name: ManifestFile, Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "kcare_test_l2.ko", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), ErrMalformed},
		{"third_entry", rawTar(t, tar.Header{Name: ManifestFile, Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "kcare_test_l2.ko", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}, tar.Header{Name: "extra", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}), ErrMalformed},
		{"huge_module_entry", rawTar(t, tar.Header{Name: ManifestFile, Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "kcare_test_l2.ko", Typeflag: tar.TypeReg, Size: MaxModuleSize + 1, Mode: 0o644}), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.data); !errors.Is(err, tt.want) {
				t.Errorf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestManifestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
	}{
		{"format", func(m *Manifest) { m.Format = 2 }},
		{"level_zero", func(m *Manifest) { m.Level = 0 }},
		{"build_id", func(m *Manifest) { m.Kernel.BuildID = "not-hex" }},
		{"version_other_release", func(m *Manifest) { m.Kernel.Version = "Linux version 5.15.0-76-generic (buildd@lcy02-amd64-019)\n" }},
		{"kernel_id", func(m *Manifest) { m.Kernel.KernelID = "abc" }},
		{"module_name", func(m *Manifest) { m.Module.Name = "e1000" }},
		{"module_file", func(m *Manifest) { m.Module.File = "../../etc/passwd" }},
		{"vermagic", func(m *Manifest) { m.Module.Vermagic = "5.15.0-76-generic SMP mod_unload " }},
		{"cve", func(m *Manifest) { m.CVEs = []CVE{{ID: "not a cve"}} }},
		{"released", func(m *Manifest) { m.Released = time.Time{} }},
		{"name_newline", func(m *Manifest) { m.Name = "a\nb" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := withDigest(testManifest(), []byte("mod"))
			tt.change(&m)
			if err := m.Validate(); !errors.Is(err, ErrMalformed) {
				t.Errorf("Validate = %v, want ErrMalformed", err)
			}
		})
	}
	m := withDigest(testManifest(), []byte("mod"))
	if err := m.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

func TestParseManifestUnknownFieldsAllowed(t *testing.T) {
	m := withDigest(testManifest(), []byte("mod"))
	mj, _ := json.Marshal(m)
	mj = bytes.Replace(mj, []byte(`{"format":1`), []byte(`{"format":1,"added_later":{"x":1}`), 1)
	if _, err := ParseManifest(mj); err != nil {
		t.Errorf("ParseManifest with an added field: %v", err)
	}
}

func TestOpenVerifiesFirst(t *testing.T) {
	priv, pub, err := trust.GenerateKey("kcare bundle test", "")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := trust.ReadSigner(priv)
	keys, _ := trust.ReadKeyring(pub)
	// A signed archive that is not a bundle: Open must get past the
	// signature and refuse it as malformed; an unsigned one must be
	// refused for the signature without being parsed.
	junk := []byte("signed junk")
	sig, _ := s.Sign(bytes.NewReader(junk))
	if _, err := Open(junk, sig, keys); !errors.Is(err, ErrMalformed) {
		t.Errorf("Open(signed junk) = %v, want ErrMalformed", err)
	}
	if _, err := Open(junk, nil, keys); !errors.Is(err, trust.ErrUnsigned) {
		t.Errorf("Open(unsigned junk) = %v, want ErrUnsigned", err)
	}
	good := write(t, testManifest(), []byte("mod"))
	sig, _ = s.Sign(bytes.NewReader(good))
	b, err := Open(good, sig, keys)
	if err != nil {
		t.Fatalf("Open(good): %v", err)
	}
	if b.Signer.Fingerprint != s.Fingerprint() {
		t.Errorf("signer %s, want %s", b.Signer.Fingerprint, s.Fingerprint())
	}
}

func FuzzParse(f *testing.F) {
	f.Add(write(&testing.T{}, testManifest(), []byte("mod")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		if err := b.Manifest.Validate(); err != nil {
			t.Errorf("Parse accepted an invalid manifest: %v", err)
		}
		if int64(len(b.Module)) != b.Manifest.Module.Size {
			t.Errorf("module size %d, manifest %d", len(b.Module), b.Manifest.Module.Size)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	mj, _ := json.Marshal(withDigest(testManifest(), []byte("mod")))
	f.Add(mj)
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(again); err != nil {
			t.Errorf("re-parse of an accepted manifest failed: %v", err)
		}
	})
}

// TestCheckEntry: a bundle may carry a check program as a third entry,
// which the manifest names with its size and digest; a check that differs
// from the manifest, a named check that is missing, or a third entry the
// manifest does not name, are refused.
func TestCheckEntry(t *testing.T) {
	mod, check := []byte("\x7fELF pretend module"), []byte("#!/bin/sh\ngrep -q 'level 2' /proc/cmdline\n")
	var buf bytes.Buffer
	if err := WriteCheck(&buf, testManifest(), mod, "check", check); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	b, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if string(b.Check) != string(check) || b.Manifest.Check == nil || b.Manifest.Check.File != "check" || b.Manifest.Check.Size != int64(len(check)) {
		t.Errorf("Parse: check %q, manifest %+v", b.Check, b.Manifest.Check)
	}
	if b, err := Parse(write(t, testManifest(), mod)); err != nil || b.Check != nil || b.Manifest.Check != nil {
		t.Errorf("a bundle without a check: %+v, %v", b, err)
	}

	tampered := bytes.Replace(good, []byte("level 2"), []byte("level 3"), 1)
	// The manifest names a check the archive lacks: drop the third entry.
	var noCheck bytes.Buffer
	tr := tar.NewReader(bytes.NewReader(good))
	tw := tar.NewWriter(&noCheck)
	for i := 0; i < 2; i++ {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		tw.WriteHeader(hdr)
		tw.Write(data)
	}
	tw.Close()
	for _, tt := range []struct {
		name string
		data []byte
		want error
	}{
		{"check_changed", tampered, ErrDigestMismatch},
		{"check_missing", noCheck.Bytes(), ErrMalformed},
	} {
		if _, err := Parse(tt.data); !errors.Is(err, tt.want) {
			t.Errorf("%s: Parse error = %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, name := range []string{"", "../check", "manifest.json", "kcare_test_l2.ko", ".hidden"} {
		if err := WriteCheck(&bytes.Buffer{}, testManifest(), mod, name, check); !errors.Is(err, ErrMalformed) {
			t.Errorf("WriteCheck with check named %q: %v, want ErrMalformed", name, err)
		}
	}
}

// TestAffixedMatchesRegexp: the module and file name patterns match what
// the regular expressions they replace match.
func TestAffixedMatchesRegexp(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    interface{ MatchString(string) bool }
		re   *regexp.Regexp
	}{
		{"module", moduleName, regexp.MustCompile(`^kcare_[a-z0-9_]{1,50}$`)},
		{"file", fileName, regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}\.ko$`)},
	} {
		for _, s := range []string{"", "kcare_", "kcare_l1", "kcare_test_l1", "kcare_" + strings.Repeat("a", 50), "kcare_" + strings.Repeat("a", 51),
			"kcare_L1", "xkcare_l1", "kcare_l1.ko", ".ko", "a.ko", "kcare_test_l1.ko", strings.Repeat("a", 100) + ".ko",
			strings.Repeat("a", 101) + ".ko", "a.ko.ko", "a b.ko", "é.ko", "a.KO"} {
			if got, want := tt.p.MatchString(s), tt.re.MatchString(s); got != want {
				t.Errorf("%s: MatchString(%q) = %v, %s says %v", tt.name, s, got, tt.re, want)
			}
		}
	}
}
