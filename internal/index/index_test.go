package index

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/google/go-cmp/cmp"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/trust"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	testServerID = "srv-7c1e2a9d"
	testPrefix   = "24h"
	testSticky   = "KEY"
	testBuildID  = "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
	otherBuild   = "4b1a05bb2ba8e1d9e8a6a3c4b1d1b71f2f38a0c6"
	testDigest   = "9f2c4e1d7a0b8c3e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a"
)

// publisherSig stands in for the publisher's signature over the .kcp; this
// package only carries it.
const publisherSig = "-----BEGIN PGP SIGNATURE-----\n\nwqsEABYIAF0FgmsJCmUJEK7VH+77zJxoNRQAAAAAABwAEHNhbHRAbm90YXRpb25z\nLm9wZW5wZ3Bqcy5vcme5KPG9vX16ZL5dnrpQLGQLFiEEnSbkzlaTWJfBeanOrtUf\n7vvMnGgAAJ3LAQDe9Z8N2FTzws0LLwZW7NKl5/Fbffgg/oj8x+nVyLF+vAEA/dvg\nacd45PMFDGU485uKcSflPThF8FzofgQIssMdSAM=\n=/JHG\n-----END PGP SIGNATURE-----\n"

var (
	issued = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	now    = issued.Add(time.Hour)
)

// testIndex is what a portal serves a Debian 12 server on the main feed.
func testIndex() *Index {
	return &Index{
		Type:     Type,
		Version:  42,
		Issued:   issued,
		Expires:  issued.Add(24 * time.Hour),
		ServerID: testServerID,
		BuildID:  testBuildID,
		KernelID: "f78293328fd93c8717bc4ed0f0ae1f4243d5b898",
		Feed:     "main",
		Level: &Level{
			Level:            3,
			Name:             "6.1.0-56-amd64-3",
			Patchset:         "K20261120_01",
			Digest:           testDigest,
			Size:             48213,
			URL:              "/blobs/sha256/" + testDigest,
			Signature:        publisherSig,
			EffectiveRelease: "6.1.0-56.3-amd64",
			CVEs: []bundle.CVE{
				{ID: "CVE-2026-0002", Description: "use-after-free in netfilter nf_tables", URL: "https://www.cve.org/CVERecord?id=CVE-2026-0002"},
				{ID: "CVE-2026-0003"},
			},
			Released: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
		},
		Latest:  4,
		Request: &Request{BuildID: testBuildID, Prefix: testPrefix, Sticky: testSticky},
	}
}

func newSigner(t testing.TB, name string) *trust.Signer {
	t.Helper()
	private, _, err := trust.GenerateKey(name, "portal@kcare.example")
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", name, err)
	}
	s, err := trust.ReadSigner(private)
	if err != nil {
		t.Fatalf("ReadSigner: %v", err)
	}
	return s
}

func keyring(t testing.TB, signers ...*trust.Signer) *trust.Keyring {
	t.Helper()
	var data []byte
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			t.Fatalf("PublicKey: %v", err)
		}
		data = append(data, pub...)
	}
	k, err := trust.ReadKeyring(data)
	if err != nil {
		t.Fatalf("ReadKeyring: %v", err)
	}
	return k
}

func mustSign(t testing.TB, idx *Index, s *trust.Signer) (body, sig []byte) {
	t.Helper()
	body, sig, err := Sign(idx, s)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return body, sig
}

func signBytes(t testing.TB, s *trust.Signer, body []byte) []byte {
	t.Helper()
	sig, err := s.Sign(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sig
}

func verifier(keys *trust.Keyring) *Verifier {
	return &Verifier{Keys: keys, BuildID: testBuildID, Prefix: testPrefix, Sticky: testSticky, ServerID: testServerID,
		LastVersion: 41, Now: func() time.Time { return now }}
}

// with returns testIndex changed by edit.
func with(edit func(*Index)) *Index {
	idx := testIndex()
	edit(idx)
	return idx
}

func TestRoundTrip(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	v := verifier(keyring(t, portal))
	body, sig := mustSign(t, testIndex(), portal)
	got, err := v.Verify(body, sig)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if diff := cmp.Diff(testIndex(), got); diff != "" {
		t.Errorf("Verify returned a different index (-want +got):\n%s", diff)
	}
	if v.LastVersion != 42 {
		t.Errorf("LastVersion = %d after accepting version 42, want 42", v.LastVersion)
	}
}

func TestVerifyAccepts(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	mirror := newSigner(t, "kcare mirror")
	keys := keyring(t, portal, mirror)
	tests := []struct {
		name    string
		idx     *Index
		signer  *trust.Signer
		binary  bool
		last    int64
		wantVer int64
	}{
		{"newer-version", testIndex(), portal, false, 41, 42},
		{"equal-version", testIndex(), portal, false, 42, 42},
		{"first-index", testIndex(), portal, false, 0, 42},
		{"mirror-key", testIndex(), mirror, false, 41, 42},
		{"binary-signature", testIndex(), portal, true, 41, 42},
		{"no-level", with(func(i *Index) { i.Level = nil; i.Latest = 0 }), portal, false, 41, 42},
		{"held-back-level", with(func(i *Index) { i.Level.Level = 2 }), portal, false, 41, 42},
		{"no-cves", with(func(i *Index) { i.Level.CVEs = nil }), portal, false, 41, 42},
		{"issued-4m-ahead", with(func(i *Index) { i.Issued = now.Add(4 * time.Minute) }), portal, false, 41, 42},
		{"issued-5m-ahead", with(func(i *Index) { i.Issued = now.Add(MaxClockSkew) }), portal, false, 41, 42},
		{"version-zero", with(func(i *Index) { i.Version = 0 }), portal, false, 0, 0},
		{"other-time-zone", with(func(i *Index) { i.Issued = i.Issued.In(time.FixedZone("CET", 3600)) }), portal, false, 41, 42},
		{"rollback-order-for-this-server", with(func(i *Index) { i.Rollback = &Rollback{Level: 3, From: 4, ServerID: testServerID} }), portal, false, 41, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, sig := mustSign(t, tt.idx, tt.signer)
			if tt.binary {
				sig = dearmor(t, sig)
			}
			v := verifier(keys)
			v.LastVersion = tt.last
			got, err := v.Verify(body, sig)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Version != tt.wantVer || v.LastVersion != tt.wantVer {
				t.Errorf("got version %d, LastVersion %d, want %d", got.Version, v.LastVersion, tt.wantVer)
			}
		})
	}
}

func TestVerifyTwice(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	v := verifier(keyring(t, portal))
	body, sig := mustSign(t, testIndex(), portal)
	for i := range 2 {
		if _, err := v.Verify(body, sig); err != nil {
			t.Fatalf("fetch %d: Verify: %v", i+1, err)
		}
	}
	old, oldSig := mustSign(t, with(func(i *Index) { i.Version = 41 }), portal)
	if _, err := v.Verify(old, oldSig); !errors.Is(err, ErrRollback) {
		t.Errorf("version 41 after 42 was accepted: got %v, want %v", err, ErrRollback)
	}
}

func TestVerifyRefusals(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	stranger := newSigner(t, "stranger")
	keys := keyring(t, portal)
	good, goodSig := mustSign(t, testIndex(), portal)
	signed := func(idx *Index) [2][]byte {
		body, sig := mustSign(t, idx, portal)
		return [2][]byte{body, sig}
	}
	// raw signs body as it is, bypassing Sign's checks, as a compromised
	// or broken portal might.
	raw := func(body string) [2][]byte {
		return [2][]byte{[]byte(body), signBytes(t, portal, []byte(body))}
	}
	tampered := bytes.Replace(good, []byte(`"latest": 4`), []byte(`"latest": 5`), 1)
	if bytes.Equal(tampered, good) {
		t.Fatal("tampering did not change the body")
	}
	big := append(bytes.Clone(good), bytes.Repeat([]byte(" "), DefaultMaxSize)...)

	tests := []struct {
		name string
		in   [2][]byte // body, signature
		last int64
		want error
	}{
		{"replayed-older", signed(with(func(i *Index) { i.Version = 40 })), 41, ErrRollback},
		{"expired", signed(with(func(i *Index) { i.Expires = now.Add(-time.Minute); i.Issued = now.Add(-25 * time.Hour) })), 41, ErrExpired},
		{"expires-now", signed(with(func(i *Index) { i.Expires = now })), 41, ErrExpired},
		{"other-kernel", signed(with(func(i *Index) { i.BuildID, i.Request.BuildID = otherBuild, otherBuild })), 41, ErrWrongKernel},
		{"issued-in-future", signed(with(func(i *Index) { i.Issued = now.Add(MaxClockSkew + time.Second) })), 41, ErrFuture},
		{"unknown-key", [2][]byte{good, signBytes(t, stranger, good)}, 41, trust.ErrUnknownKey},
		{"tampered-body", [2][]byte{tampered, goodSig}, 41, trust.ErrBadSignature},
		{"unsigned", [2][]byte{good, nil}, 41, trust.ErrUnsigned},
		{"garbage-signature", [2][]byte{good, []byte("not a signature")}, 41, trust.ErrMalformedSignature},
		{"oversize-body", [2][]byte{big, signBytes(t, portal, big)}, 41, ErrTooLarge},
		{"not-json", raw("kcare-index version 42\n"), 41, ErrMalformed},
		{"empty-body", raw(""), 41, ErrMalformed},
		{"json-array", raw(`[]`), 41, ErrMalformed},
		{"trailing-data", raw(string(good) + `{}`), 41, ErrMalformed},
		{"wrong-type", raw(strings.Replace(string(good), `"kcare-index"`, `"kcare-bundle"`, 1)), 41, ErrMalformed},
		{"no-type", raw(strings.Replace(string(good), `"type": "kcare-index",`, ``, 1)), 41, ErrMalformed},
		{"version-string", raw(strings.Replace(string(good), `"version": 42`, `"version": "42"`, 1)), 41, ErrMalformed},
		{"no-expiry", raw(strings.Replace(string(good), `"expires": "2026-11-22T10:00:00Z",`, ``, 1)), 41, ErrMalformed},
		{"short-digest", raw(strings.Replace(string(good), `"digest": "`+testDigest, `"digest": "`+testDigest[:63], 1)), 41, ErrMalformed},
		{"upper-case-digest", raw(strings.Replace(string(good), `"digest": "`+testDigest, `"digest": "`+strings.ToUpper(testDigest), 1)), 41, ErrMalformed},
		{"absolute-url", raw(strings.Replace(string(good), `"url": "/blobs`, `"url": "https://evil.example/blobs`, 1)), 41, ErrMalformed},
		{"url-other-digest", raw(strings.Replace(string(good), `"url": "/blobs/sha256/9f`, `"url": "/blobs/sha256/8f`, 1)), 41, ErrMalformed},
		{"url-dot-dot", raw(strings.Replace(string(good), `"url": "/blobs/sha256/`, `"url": "/blobs/sha256/../../`, 1)), 41, ErrMalformed},
		{"size-zero", raw(strings.Replace(string(good), `"size": 48213`, `"size": 0`, 1)), 41, ErrMalformed},
		{"size-65-mib", raw(strings.Replace(string(good), `"size": 48213`, `"size": 68157440`, 1)), 41, ErrMalformed},
		{"no-publisher-signature", raw(strings.Replace(string(good), `"signature": "-----BEGIN`, `"signature": "BEGIN`, 1)), 41, ErrMalformed},
		{"level-above-latest", raw(strings.Replace(string(good), `"latest": 4`, `"latest": 2`, 1)), 41, ErrMalformed},
		{"escape-in-name", raw(strings.Replace(string(good), `"name": "6.1.0-56-amd64-3"`, `"name": "\u001b]0;pwned\u0007"`, 1)), 41, ErrMalformed},
		{"bad-cve", raw(strings.Replace(string(good), `"id": "CVE-2026-0003"`, `"id": "cve 3"`, 1)), 41, ErrMalformed},
		// The signature is checked first: a stranger's garbage is not parsed.
		{"unknown-key-garbage", [2][]byte{[]byte("{"), signBytes(t, stranger, []byte("{"))}, 41, trust.ErrUnknownKey},
		// The request stated must be the one made, and a rollback order
		// must be for this server: else a man in the middle rewrote the
		// request or replayed another server's answer.
		{"no-request-stated", signed(with(func(i *Index) { i.Request = nil })), 41, ErrWrongRequest},
		{"other-sticky", signed(with(func(i *Index) { i.Request.Sticky = "2026-11-01" })), 41, ErrWrongRequest},
		{"no-sticky", signed(with(func(i *Index) { i.Request.Sticky = "" })), 41, ErrWrongRequest},
		{"other-prefix", signed(with(func(i *Index) { i.Request.Prefix = "48h" })), 41, ErrWrongRequest},
		{"rollback-order-for-other-server", signed(with(func(i *Index) { i.Rollback = &Rollback{Level: 3, From: 4, ServerID: "srv-0000"} })), 41, ErrWrongRequest},
		{"rollback-order-escape-in-reason", raw(strings.Replace(string(mustMarshal(t, with(func(i *Index) {
			i.Rollback = &Rollback{Level: 3, From: 4, ServerID: testServerID, Reason: "halted"}
		}))), `"reason": "halted"`, `"reason": "\u001b]0;pwned\u0007"`, 1)), 41, ErrMalformed},
		{"request-other-build-id", raw(strings.Replace(string(good), `"build_id": "`+testBuildID+`",
    "prefix"`, `"build_id": "`+otherBuild+`",
    "prefix"`, 1)), 41, ErrMalformed},
		// The kernel is checked before the clock and the version.
		{"other-kernel-expired-older", signed(with(func(i *Index) {
			i.BuildID, i.Request.BuildID, i.Version, i.Issued, i.Expires = otherBuild, otherBuild, 1, now.Add(-48*time.Hour), now.Add(-24*time.Hour)
		})), 41, ErrWrongKernel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(keys)
			v.LastVersion = tt.last
			idx, err := v.Verify(tt.in[0], tt.in[1])
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if idx != nil {
				t.Errorf("got index %+v with error %v, want nil", idx, err)
			}
			if v.LastVersion != tt.last {
				t.Errorf("LastVersion = %d after a refusal, want it unchanged at %d", v.LastVersion, tt.last)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") {
				t.Errorf("error message is not one line: %q", msg)
			}
		})
	}
}

func TestVerifyNoKeys(t *testing.T) {
	body, sig := mustSign(t, testIndex(), newSigner(t, "kcare portal"))
	v := verifier(nil)
	if _, err := v.Verify(body, sig); !errors.Is(err, trust.ErrNoKeys) {
		t.Errorf("got %v, want %v", err, trust.ErrNoKeys)
	}
}

func TestVerifyMaxSize(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	body, sig := mustSign(t, testIndex(), portal)
	tests := []struct {
		name    string
		maxSize int64
		want    error
	}{
		{"default", 0, nil},
		{"exact", int64(len(body)), nil},
		{"one-short", int64(len(body)) - 1, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(keyring(t, portal))
			v.MaxSize = tt.maxSize
			if _, err := v.Verify(body, sig); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyMessages(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	keys := keyring(t, portal)
	good := string(mustMarshal(t, testIndex()))
	tests := []struct {
		name string
		body []byte
		want string
	}{
		{"rollback", mustMarshal(t, with(func(i *Index) { i.Version = 41 })), "index version 41 is older than the last accepted 42: rollback refused"},
		{"expired", mustMarshal(t, with(func(i *Index) { i.Issued, i.Expires = now.Add(-26*time.Hour), now.Add(-2*time.Hour) })), "index expired at 2026-11-21T09:00:00Z, 2h0m0s ago by this host's clock (2026-11-21T11:00:00Z); " +
			"an index is good from its issue time (2026-11-20T09:00:00Z, less 5m0s of clock skew) until it expires: check this host's clock"},
		{"wrong-kernel", mustMarshal(t, with(func(i *Index) { i.BuildID, i.Request.BuildID = otherBuild, otherBuild })), "index is for another kernel: issued for build-id " + otherBuild + ", this kernel is " + testBuildID},
		{"future", mustMarshal(t, with(func(i *Index) { i.Issued = now.Add(time.Hour) })), "index issued in the future: at 2026-11-21T12:00:00Z, 1h0m0s ahead of this host's clock (2026-11-21T11:00:00Z), more than the 5m0s allowed; " +
			"an index is good from its issue time (less 5m0s of clock skew) until it expires (2026-11-22T10:00:00Z): check this host's clock"},
		{"malformed", []byte(strings.Replace(good, `"latest": 4`, `"latest": 2`, 1)), "malformed index: level 3 is newer than the latest published, 2"},
		{"wrong-request", mustMarshal(t, with(func(i *Index) { i.Request.Sticky = "2026-11-01" })), `index answers another request: the index answers build-id ` + testBuildID + `, prefix "24h", sticky "2026-11-01", this agent asked build-id ` + testBuildID + `, prefix "24h", sticky "KEY"`},
		{"no-request", mustMarshal(t, with(func(i *Index) { i.Request = nil })), "index answers another request: the index states no request (build-id, prefix, sticky); it was signed by a portal that does not bind them"},
		{"other-servers-order", mustMarshal(t, with(func(i *Index) { i.Rollback = &Rollback{Level: 3, From: 4, ServerID: "srv-0000"} })), "index answers another request: its rollback order is for server srv-0000, this server is " + testServerID},
		{"oversize", bytes.Repeat([]byte(" "), DefaultMaxSize+1), "index body: too large: 1048577 bytes, limit 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := verifier(keys)
			v.LastVersion = 42
			_, err := v.Verify(tt.body, signBytes(t, portal, tt.body))
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func mustMarshal(t *testing.T, idx *Index) []byte {
	t.Helper()
	body, err := marshal(idx)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return body
}

func TestSignRefuses(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	tests := []struct {
		name string
		idx  *Index
	}{
		{"other-type", with(func(i *Index) { i.Type = "kcare-bundle" })},
		{"no-build-id", with(func(i *Index) { i.BuildID = "" })},
		{"no-expiry", with(func(i *Index) { i.Expires = time.Time{} })},
		{"expires-before-issued", with(func(i *Index) { i.Expires = i.Issued.Add(-time.Second) })},
		{"negative-version", with(func(i *Index) { i.Version = -1 })},
		{"level-zero", with(func(i *Index) { i.Level.Level = 0 })},
		{"wrong-url", with(func(i *Index) { i.Level.URL = "/blobs/sha256/" + strings.Repeat("0", 64) })},
		{"size-zero", with(func(i *Index) { i.Level.Size = 0 })},
		{"slash-in-name", with(func(i *Index) { i.Level.Name = "../6.1.0-56-amd64-3" })},
		{"no-release-time", with(func(i *Index) { i.Level.Released = time.Time{} })},
		{"bad-kernel-id", with(func(i *Index) { i.KernelID = "6.1.0-56-amd64" })},
		{"request-other-build-id", with(func(i *Index) { i.Request.BuildID = otherBuild })},
		{"request-long-sticky", with(func(i *Index) { i.Request.Sticky = strings.Repeat("1", 17) })},
		{"request-control-prefix", with(func(i *Index) { i.Request.Prefix = "24h\n" })},
		{"rollback-no-level", with(func(i *Index) { i.Level = nil; i.Rollback = &Rollback{Level: 3, From: 4, ServerID: testServerID} })},
		{"rollback-other-level", with(func(i *Index) { i.Rollback = &Rollback{Level: 2, From: 4, ServerID: testServerID} })},
		{"rollback-upward", with(func(i *Index) { i.Rollback = &Rollback{Level: 3, From: 3, ServerID: testServerID} })},
		{"rollback-no-server", with(func(i *Index) { i.Rollback = &Rollback{Level: 3, From: 4} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Sign(tt.idx, portal); !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want %v", err, ErrMalformed)
			}
		})
	}
}

func TestSignFillsTypeAndKeepsInput(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	idx := with(func(i *Index) { i.Type = ""; i.Level.CVEs = nil })
	body, sig := mustSign(t, idx, portal)
	if idx.Type != "" || idx.Level.CVEs != nil {
		t.Errorf("Sign changed its input: type %q, cves %v", idx.Type, idx.Level.CVEs)
	}
	if !bytes.Contains(body, []byte(`"type": "kcare-index"`)) || !bytes.Contains(body, []byte(`"cves": []`)) {
		t.Errorf("body lacks the type or an empty cves list:\n%s", body)
	}
	if _, err := verifier(keyring(t, portal)).Verify(body, sig); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func TestGolden(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	body, _ := mustSign(t, testIndex(), portal)
	path := filepath.Join("testdata", "index.golden")
	if *update {
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(body)); diff != "" {
		t.Errorf("signed body differs from %s (-want +got):\n%s", path, diff)
	}
	// The golden body, signed as it is, verifies: it is what agents read.
	if _, err := verifier(keyring(t, portal)).Verify(want, signBytes(t, portal, want)); err != nil {
		t.Errorf("Verify %s: %v", path, err)
	}
}

func TestLimitedReader(t *testing.T) {
	kcp := bytes.Repeat([]byte("kcare bundle "), 1000) // 13000 bytes
	size := int64(len(kcp))
	tests := []struct {
		name string
		data []byte
		n    int64
		want error
	}{
		{"exact-size", kcp, size, nil},
		{"smaller", kcp[:100], size, nil},
		{"empty", nil, size, nil},
		{"size-plus-one", append(bytes.Clone(kcp), 'x'), size, ErrTooLarge},
		{"much-larger", bytes.Repeat(kcp, 10), size, ErrTooLarge},
		{"zero-limit-empty", nil, 0, nil},
		{"zero-limit-one-byte", []byte("x"), 0, ErrTooLarge},
		{"negative-limit", []byte("x"), -1, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte at a time as well as in large reads.
			for _, src := range []io.Reader{bytes.NewReader(tt.data), &oneByteReader{data: tt.data}} {
				got, err := io.ReadAll(LimitedReader(src, tt.n))
				if !errors.Is(err, tt.want) {
					t.Fatalf("%T: got %v, want %v", src, err, tt.want)
				}
				if int64(len(got)) > max(tt.n, 0) {
					t.Errorf("%T: read %d bytes through a %d-byte limit", src, len(got), tt.n)
				}
				if tt.want == nil && !bytes.Equal(got, tt.data) {
					t.Errorf("%T: got %d bytes, want the %d of the source", src, len(got), len(tt.data))
				}
			}
		})
	}
}

func TestLimitedReaderErrorNamesLimit(t *testing.T) {
	_, err := io.ReadAll(LimitedReader(strings.NewReader("0123456789"), 4))
	if want := "too large: more than 4 bytes"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestLimitedReaderPassesErrors(t *testing.T) {
	broken := errors.New("connection reset by peer")
	r := LimitedReader(io.MultiReader(strings.NewReader("abc"), &failingReader{broken}), 10)
	if _, err := io.ReadAll(r); !errors.Is(err, broken) {
		t.Errorf("got %v, want %v", err, broken)
	}
}

type oneByteReader struct{ data []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], r.data = r.data[0], r.data[1:]
	return 1, nil
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestSignatureHeader(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	body, armored := mustSign(t, testIndex(), portal)
	for _, tt := range []struct {
		name string
		sig  []byte
	}{
		{"armored", armored},
		{"binary", dearmor(t, armored)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := EncodeSignature(tt.sig)
			if strings.ContainsAny(h, "\r\n ") {
				t.Fatalf("header value %q has whitespace", h)
			}
			got, err := DecodeSignature(h)
			if err != nil {
				t.Fatalf("DecodeSignature: %v", err)
			}
			if !bytes.Equal(got, tt.sig) {
				t.Errorf("got %q, want %q", got, tt.sig)
			}
			if _, err := verifier(keyring(t, portal)).Verify(body, got); err != nil {
				t.Errorf("Verify with the decoded signature: %v", err)
			}
		})
	}
}

func TestDecodeSignatureRefuses(t *testing.T) {
	tests := []struct {
		name string
		h    string
		want error
	}{
		{"empty", "", trust.ErrUnsigned},
		{"spaces", "  ", trust.ErrUnsigned},
		{"garbage", "not base64!", trust.ErrMalformedSignature},
		{"url-encoding", "-_-_", trust.ErrMalformedSignature},
		{"truncated", EncodeSignature([]byte("-----BEGIN PGP SIGNATURE-----"))[:7], trust.ErrMalformedSignature},
		{"too-long", strings.Repeat("A", maxHeaderLen+4), trust.ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSignature(tt.h); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// dearmor returns the binary packets of an armored signature.
func dearmor(t testing.TB, armored []byte) []byte {
	t.Helper()
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		t.Fatalf("armor.Decode: %v", err)
	}
	b, err := io.ReadAll(block.Body)
	if err != nil {
		t.Fatalf("read armor body: %v", err)
	}
	return b
}

// TestVerifyClockSkew: with this host's clock a year off, an index is
// refused with an error that names the index's time window and the
// host's clock: a year ahead, the index has expired; a year behind, its
// signature was made in the future (the signature check comes first).
func TestVerifyClockSkew(t *testing.T) {
	portal := newSigner(t, "kcare portal")
	keys := keyring(t, portal)
	year := 365 * 24 * time.Hour

	ahead := verifier(keys)
	body, sig := mustSign(t, testIndex(), portal)
	ahead.Now = func() time.Time { return now.Add(year) }
	_, err := ahead.Verify(body, sig)
	want := "index expired at 2026-11-22T10:00:00Z, 364 days ago by this host's clock (2027-11-21T11:00:00Z); " +
		"an index is good from its issue time (2026-11-21T10:00:00Z, less 5m0s of clock skew) until it expires: check this host's clock"
	if !errors.Is(err, ErrExpired) || err.Error() != want {
		t.Errorf("host a year ahead: got %v, want ErrExpired: %q", err, want)
	}

	// The portal's clock a year ahead of this host's: as this host's a
	// year behind, which the signature check sees first, by the wall clock.
	made := time.Now().Add(year).UTC().Truncate(time.Second)
	later := portal.WithClock(func() time.Time { return made })
	idx := testIndex()
	idx.Issued, idx.Expires = made, made.Add(72*time.Hour)
	body, sig = mustSign(t, idx, later)
	_, err = verifier(keys).Verify(body, sig)
	re := regexp.MustCompile(`^index issued in the future: signed at ` + regexp.QuoteMeta(made.Format(time.RFC3339)) +
		`, 365 days ahead of this host's clock \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\), more than the 5m0s allowed; ` +
		`an index is good from its issue time \(less 5m0s of clock skew\) until it expires: check this host's clock$`)
	if !errors.Is(err, ErrFuture) || !re.MatchString(err.Error()) {
		t.Errorf("host a year behind: got %v, want ErrFuture matching %s", err, re)
	}
}
