package trust

import (
	"bytes"
	"crypto"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// bundle stands in for a patch bundle: the bytes being signed.
var bundle = []byte("kcare patch bundle\nkernel: 6.1.0-56-amd64\npatch: kcare_L3\n\x00\x01\x02\xff")

// sentinels are the typed refusals; a refusal must match exactly one.
var sentinels = []error{ErrUnsigned, ErrMalformedSignature, ErrUnknownKey, ErrBadSignature, ErrKeyExpired, ErrKeyRevoked, ErrNoKeys}

func newSigner(t testing.TB, name string) *Signer {
	t.Helper()
	private, _, err := GenerateKey(name, "release@kcare.example")
	if err != nil {
		t.Fatalf("GenerateKey(%q): %v", name, err)
	}
	s, err := ReadSigner(private)
	if err != nil {
		t.Fatalf("ReadSigner: %v", err)
	}
	return s
}

func publicKey(t testing.TB, s *Signer) []byte {
	t.Helper()
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatalf("PublicKey: %v", err)
	}
	return pub
}

func keyring(t testing.TB, signers ...*Signer) *Keyring {
	t.Helper()
	var data []byte
	for _, s := range signers {
		data = append(data, publicKey(t, s)...)
	}
	k, err := ReadKeyring(data)
	if err != nil {
		t.Fatalf("ReadKeyring: %v", err)
	}
	return k
}

func sign(t testing.TB, s *Signer, data []byte) []byte {
	t.Helper()
	sig, err := s.Sign(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return sig
}

// dearmor returns the binary contents of an armored block.
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

func flipByte(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

// checkRefusal requires err to match want and no other sentinel, and to be
// one line.
func checkRefusal(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	for _, other := range sentinels {
		if other != want && errors.Is(err, other) {
			t.Errorf("error %q also matches %v", err, other)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans more than one line", err)
	}
}

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		name, keyName, email string
		wantUID              string
	}{
		{"with-email", "kcare release", "release@kcare.example", "kcare release <release@kcare.example>"},
		{"without-email", "kcare test", "", "kcare test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			private, public, err := GenerateKey(tt.keyName, tt.email)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if !bytes.HasPrefix(private, []byte("-----BEGIN PGP PRIVATE KEY BLOCK-----")) {
				t.Errorf("private key starts %q, want a PGP PRIVATE KEY BLOCK", firstLine(private))
			}
			el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(public))
			if err != nil {
				t.Fatalf("read public key: %v", err)
			}
			if len(el) != 1 {
				t.Fatalf("got %d keys, want 1", len(el))
			}
			e := el[0]
			if e.PrivateKey != nil {
				t.Errorf("public key holds private key material")
			}
			if got := e.PrimaryKey.PubKeyAlgo; got != packet.PubKeyAlgoEdDSA {
				t.Errorf("got algorithm %v, want EdDSA (%v)", got, packet.PubKeyAlgoEdDSA)
			}
			if got := e.PrimaryKey.Version; got != 4 {
				t.Errorf("got key version %d, want 4", got)
			}
			if got := len(e.Subkeys); got != 0 {
				t.Errorf("got %d subkeys, want 0", got)
			}
			if _, ok := e.Identities[tt.wantUID]; !ok {
				t.Errorf("got user ids %v, want %q", keys(e.Identities), tt.wantUID)
			}
			s, err := ReadSigner(private)
			if err != nil {
				t.Fatalf("ReadSigner: %v", err)
			}
			if got, want := s.Fingerprint(), fingerprint(e.PrimaryKey); got != want {
				t.Errorf("got signer fingerprint %s, want %s", got, want)
			}
			if got := s.Fingerprint(); len(got) != 40 || strings.ToUpper(got) != got {
				t.Errorf("got fingerprint %q, want 40 upper-case hex digits", got)
			}
		})
	}
}

func TestGenerateKeyRefuses(t *testing.T) {
	tests := []struct {
		name, keyName, email string
	}{
		{"empty-name", "", "release@kcare.example"},
		{"angle-bracket-in-name", "kcare <release>", ""},
		{"paren-in-email", "kcare", "release(x)@kcare.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := GenerateKey(tt.keyName, tt.email); err == nil {
				t.Errorf("GenerateKey(%q, %q): got no error, want one", tt.keyName, tt.email)
			}
		})
	}
}

func TestSignVerify(t *testing.T) {
	s := newSigner(t, "kcare release")
	created := time.Now().Truncate(time.Second)
	s.now = func() time.Time { return created }
	armored := sign(t, s, bundle)
	ring := keyring(t, newSigner(t, "other"), s)

	tests := []struct {
		name string
		sig  []byte
	}{
		{"armored", armored},
		{"binary", dearmor(t, armored)},
		{"armored-crlf", bytes.ReplaceAll(armored, []byte("\n"), []byte("\r\n"))},
		{"armored-leading-blank-line", append([]byte("\n"), armored...)},
	}
	fp := s.Fingerprint()
	want := Signature{KeyID: fp[len(fp)-16:], Fingerprint: fp, Created: created}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ring.Verify(bytes.NewReader(bundle), tt.sig)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.KeyID != want.KeyID || got.Fingerprint != want.Fingerprint || !got.Created.Equal(want.Created) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestSignatureIsArmoredSHA256(t *testing.T) {
	s := newSigner(t, "kcare release")
	armored := sign(t, s, bundle)
	if !bytes.HasPrefix(armored, []byte("-----BEGIN PGP SIGNATURE-----")) {
		t.Fatalf("signature starts %q, want a PGP SIGNATURE block", firstLine(armored))
	}
	sigs, err := parseSignatures(dearmor(t, armored))
	if err != nil {
		t.Fatalf("parse signature: %v", err)
	}
	if len(sigs) != 1 {
		t.Fatalf("got %d signature packets, want 1", len(sigs))
	}
	if got := sigs[0].Hash; got != crypto.SHA256 {
		t.Errorf("got hash %v, want SHA-256", got)
	}
	if got := sigs[0].SigType; got != packet.SigTypeBinary {
		t.Errorf("got signature type %#x, want binary document (0x00)", got)
	}
}

func TestVerifyRefusals(t *testing.T) {
	s := newSigner(t, "kcare release")
	stranger := newSigner(t, "stranger")
	ring := keyring(t, s)
	good := sign(t, s, bundle)

	tests := []struct {
		name string
		ring *Keyring
		data []byte
		sig  []byte
		want error
	}{
		{"flipped-byte-in-data", ring, flipByte(bundle, 7), good, ErrBadSignature},
		{"flipped-last-byte-in-data", ring, flipByte(bundle, len(bundle)-1), good, ErrBadSignature},
		{"truncated-data", ring, bundle[:len(bundle)-1], good, ErrBadSignature},
		{"appended-data", ring, append(bytes.Clone(bundle), '\n'), good, ErrBadSignature},
		{"empty-data", ring, nil, good, ErrBadSignature},
		{"key-not-in-ring", ring, bundle, sign(t, stranger, bundle), ErrUnknownKey},
		{"nil-signature", ring, bundle, nil, ErrUnsigned},
		{"zero-length-signature", ring, bundle, []byte{}, ErrUnsigned},
		{"blank-signature", ring, bundle, []byte(" \n"), ErrUnsigned},
		{"text-garbage", ring, bundle, []byte("this is not a signature\n"), ErrMalformedSignature},
		{"binary-garbage", ring, bundle, []byte{0xff, 0x00, 0x13, 0x37}, ErrMalformedSignature},
		{"truncated-signature", ring, bundle, good[:len(good)/2], ErrMalformedSignature},
		{"truncated-binary-signature", ring, bundle, dearmor(t, good)[:40], ErrMalformedSignature},
		{"public-key-as-signature", ring, bundle, publicKey(t, s), ErrMalformedSignature},
		{"oversized", ring, bundle, append(bytes.Clone(good), bytes.Repeat([]byte{'\n'}, MaxSignatureSize)...), ErrMalformedSignature},
		{"empty-keyring", &Keyring{}, bundle, good, ErrNoKeys},
		{"nil-keyring", nil, bundle, good, ErrNoKeys},
		{"empty-keyring-unsigned", &Keyring{}, bundle, nil, ErrNoKeys},
		{"sha1", ring, bundle, sha1Signature(t, s, bundle), ErrBadSignature},
		{"text-mode", ring, bundle, textSignature(t, s, bundle), ErrBadSignature},
		{"made-in-future", ring, bundle, futureSignature(t, s, bundle), ErrBadSignature},
	}
	expiredRing, expiredSig := expiredKey(t, bundle)
	tests = append(tests, struct {
		name string
		ring *Keyring
		data []byte
		sig  []byte
		want error
	}{"expired-key", expiredRing, bundle, expiredSig, ErrKeyExpired})
	revokedRing, revokedSig := revokedKey(t, bundle)
	tests = append(tests, struct {
		name string
		ring *Keyring
		data []byte
		sig  []byte
		want error
	}{"revoked-key", revokedRing, bundle, revokedSig, ErrKeyRevoked})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Verify(bytes.NewReader(tt.data), tt.sig)
			if err == nil {
				t.Fatalf("Verify: got %+v and no error, want %v", got, tt.want)
			}
			checkRefusal(t, err, tt.want)
		})
	}
}

func TestVerifyUnknownKeyNamesIt(t *testing.T) {
	s := newSigner(t, "kcare release")
	stranger := newSigner(t, "stranger")
	_, err := keyring(t, s).Verify(bytes.NewReader(bundle), sign(t, stranger, bundle))
	if want := "signature by unknown key " + stranger.Fingerprint(); err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
}

func TestVerifyReadError(t *testing.T) {
	s := newSigner(t, "kcare release")
	errDisk := errors.New("disk read failed")
	r := io.MultiReader(bytes.NewReader(bundle[:10]), &failingReader{errDisk})
	_, err := keyring(t, s).Verify(r, sign(t, s, bundle))
	if !errors.Is(err, errDisk) {
		t.Fatalf("got error %v, want %v", err, errDisk)
	}
	for _, sentinel := range sentinels {
		if errors.Is(err, sentinel) {
			t.Errorf("read error %q matches %v", err, sentinel)
		}
	}
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

// sha1Signature signs data with SHA-1, which OpenPGP allows and Verify
// refuses.
func sha1Signature(t *testing.T, s *Signer, data []byte) []byte {
	t.Helper()
	priv := s.entity.PrivateKey
	sig := &packet.Signature{
		Version:      4,
		SigType:      packet.SigTypeBinary,
		PubKeyAlgo:   priv.PubKeyAlgo,
		Hash:         crypto.SHA1,
		CreationTime: time.Now(),
		IssuerKeyId:  &priv.KeyId,
	}
	noSalt := false // the salt notation has no size for SHA-1
	config := &packet.Config{NonDeterministicSignaturesViaNotation: &noSalt}
	h, err := sig.PrepareSign(config)
	if err != nil {
		t.Fatalf("PrepareSign: %v", err)
	}
	h.Write(data)
	if err := sig.Sign(h, priv, config); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	var buf bytes.Buffer
	if err := sig.Serialize(&buf); err != nil {
		t.Fatalf("Serialize: %v", err)
	}
	return buf.Bytes()
}

// textSignature makes a canonical-text signature (gpg --textmode), which is
// not for binary bundles.
func textSignature(t *testing.T, s *Signer, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSignText(&buf, s.entity, bytes.NewReader(data), s.config()); err != nil {
		t.Fatalf("ArmoredDetachSignText: %v", err)
	}
	return buf.Bytes()
}

func futureSignature(t *testing.T, s *Signer, data []byte) []byte {
	t.Helper()
	future := &Signer{entity: s.entity, now: func() time.Time { return time.Now().Add(time.Hour) }}
	return sign(t, future, data)
}

// expiredKey returns a keyring holding a key that lived for an hour, two
// hours ago, and a signature it made while it was valid.
func expiredKey(t *testing.T, data []byte) (*Keyring, []byte) {
	t.Helper()
	born := time.Now().Add(-2 * time.Hour)
	e, err := generateKey("expired", "", &packet.Config{Time: func() time.Time { return born }, KeyLifetimeSecs: 3600})
	if err != nil {
		t.Fatalf("generateKey: %v", err)
	}
	s := &Signer{entity: e, now: func() time.Time { return born.Add(10 * time.Minute) }}
	return keyring(t, s), sign(t, s, data)
}

// revokedKey returns a keyring holding a revoked key, and a signature the
// key made before it was revoked.
func revokedKey(t *testing.T, data []byte) (*Keyring, []byte) {
	t.Helper()
	s := newSigner(t, "revoked")
	sig := sign(t, s, data)
	if err := s.entity.RevokeKey(packet.KeyCompromised, "test", nil); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	return keyring(t, s), sig
}

func TestReadKeyring(t *testing.T) {
	a := newSigner(t, "a")
	b := newSigner(t, "b")
	pubA, pubB := publicKey(t, a), publicKey(t, b)
	privA, _, err := GenerateKey("private", "")
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}

	tests := []struct {
		name    string
		data    []byte
		wantLen int
		wantErr bool
		wantIs  error
	}{
		{name: "armored", data: pubA, wantLen: 1},
		{name: "binary", data: dearmor(t, pubA), wantLen: 1},
		{name: "binary-concatenated", data: append(dearmor(t, pubA), dearmor(t, pubB)...), wantLen: 2},
		{name: "two-armored-blocks", data: append(bytes.Clone(pubA), pubB...), wantLen: 2},
		{name: "text-around-blocks", data: join("release keys\n\n", pubA, "\nand the backup key:\n", pubB, "\n"), wantLen: 2},
		{name: "same-key-twice", data: append(bytes.Clone(pubA), pubA...), wantLen: 1},
		{name: "empty", data: nil, wantErr: true, wantIs: ErrNoKeys},
		{name: "blank", data: []byte("\n\n"), wantErr: true, wantIs: ErrNoKeys},
		{name: "text-without-key", data: []byte("no keys here\n"), wantErr: true},
		{name: "private-key", data: privA, wantErr: true},
		{name: "binary-private-key", data: dearmor(t, privA), wantErr: true},
		{name: "signature-block", data: sign(t, a, bundle), wantErr: true},
		{name: "binary-garbage", data: []byte{0x99, 0x01, 0x02}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ReadKeyring(tt.data)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got keyring of %d keys and no error, want an error", k.Len())
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("got error %v, want %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadKeyring: %v", err)
			}
			if got := k.Len(); got != tt.wantLen {
				t.Errorf("got %d keys, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestKeyringAdd(t *testing.T) {
	a := newSigner(t, "a")
	b := newSigner(t, "b")
	var k Keyring
	k.Add(keyring(t, a))
	k.Add(keyring(t, a, b))
	k.Add(nil)
	if got := k.Len(); got != 2 {
		t.Fatalf("got %d keys, want 2", got)
	}
	if got, want := strings.Join(k.Fingerprints(), " "), a.Fingerprint()+" "+b.Fingerprint(); got != want {
		t.Errorf("got fingerprints %s, want %s", got, want)
	}
	for _, s := range []*Signer{a, b} {
		if _, err := k.Verify(bytes.NewReader(bundle), sign(t, s, bundle)); err != nil {
			t.Errorf("Verify signature by %s: %v", s.Fingerprint(), err)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	a := newSigner(t, "a")
	b := newSigner(t, "b")
	c := newSigner(t, "c")

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.pub"), publicKey(t, a))
	writeFile(t, filepath.Join(dir, "b.gpg"), dearmor(t, publicKey(t, b)))
	writeFile(t, filepath.Join(dir, "README"), []byte("keys trusted for kcare bundles\n"))
	writeFile(t, filepath.Join(dir, "sub", "c.pub"), publicKey(t, c))
	cFile := filepath.Join(t.TempDir(), "c.asc")
	writeFile(t, cFile, publicKey(t, c))
	emptyDir := t.TempDir()
	badDir := t.TempDir()
	writeFile(t, filepath.Join(badDir, "bad.asc"), []byte("not a key\n"))

	tests := []struct {
		name    string
		paths   []string
		trusted []*Signer
		unknown []*Signer
		wantIs  error // nil: no error
		wantErr bool
	}{
		{name: "directory-with-two-keys", paths: []string{dir}, trusted: []*Signer{a, b}, unknown: []*Signer{c}},
		{name: "file", paths: []string{cFile}, trusted: []*Signer{c}, unknown: []*Signer{a, b}},
		{name: "directory-and-file", paths: []string{dir, cFile}, trusted: []*Signer{a, b, c}},
		{name: "no-paths", wantErr: true, wantIs: ErrNoKeys},
		{name: "empty-directory", paths: []string{emptyDir}, wantErr: true, wantIs: ErrNoKeys},
		{name: "missing", paths: []string{filepath.Join(emptyDir, "missing")}, wantErr: true, wantIs: fs.ErrNotExist},
		{name: "file-without-keys", paths: []string{dir, badDir}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadKeyring(tt.paths...)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got keyring of %d keys and no error, want an error", k.Len())
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("got error %v, want %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKeyring: %v", err)
			}
			if got, want := k.Len(), len(tt.trusted); got != want {
				t.Errorf("got %d keys, want %d", got, want)
			}
			for _, s := range tt.trusted {
				if _, err := k.Verify(bytes.NewReader(bundle), sign(t, s, bundle)); err != nil {
					t.Errorf("Verify signature by %s: %v", s.Fingerprint(), err)
				}
			}
			for _, s := range tt.unknown {
				_, err := k.Verify(bytes.NewReader(bundle), sign(t, s, bundle))
				if !errors.Is(err, ErrUnknownKey) {
					t.Errorf("Verify signature by %s: got error %v, want %v", s.Fingerprint(), err, ErrUnknownKey)
				}
			}
		})
	}
}

func TestReadSigner(t *testing.T) {
	private, public, err := GenerateKey("kcare release", "")
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	other, _, err := GenerateKey("other", "")
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	locked, err := generateKey("locked", "", nil)
	if err != nil {
		t.Fatalf("generateKey: %v", err)
	}
	if err := locked.EncryptPrivateKeys([]byte("passphrase"), nil); err != nil {
		t.Fatalf("EncryptPrivateKeys: %v", err)
	}
	lockedPrivate, err := armorPrivate(locked)
	if err != nil {
		t.Fatalf("armorPrivate: %v", err)
	}

	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"armored", private, false},
		{"binary", dearmor(t, private), false},
		{"public-key", public, true},
		{"two-private-keys", append(dearmor(t, private), dearmor(t, other)...), true},
		{"passphrase-protected", lockedPrivate, true},
		{"empty", nil, true},
		{"garbage", []byte("not a key"), true},
	}
	ring, err := ReadKeyring(public)
	if err != nil {
		t.Fatalf("ReadKeyring: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ReadSigner(tt.data)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got signer %s and no error, want an error", s.Fingerprint())
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadSigner: %v", err)
			}
			if _, err := ring.Verify(bytes.NewReader(bundle), sign(t, s, bundle)); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestArmorBlocks(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"none", "plain text\n", nil},
		{"one", "-----BEGIN PGP X-----\nAA\n-----END PGP X-----\n", []string{"-----BEGIN PGP X-----\nAA\n-----END PGP X-----"}},
		{"two-with-text", "a\n-----BEGIN PGP X-----\n-----END PGP X-----\nb\n-----BEGIN PGP Y-----\n-----END PGP Y-----", []string{"-----BEGIN PGP X-----\n-----END PGP X-----", "-----BEGIN PGP Y-----\n-----END PGP Y-----"}},
		{"two-without-newline", "-----BEGIN PGP X-----\n-----END PGP X----------BEGIN PGP Y-----\n-----END PGP Y-----\n", []string{"-----BEGIN PGP X-----\n-----END PGP X-----", "-----BEGIN PGP Y-----\n-----END PGP Y-----"}},
		{"unterminated", "-----BEGIN PGP X-----\nAA\n", []string{"-----BEGIN PGP X-----\nAA\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, b := range armorBlocks([]byte(tt.in)) {
				got = append(got, string(b))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzVerify feeds arbitrary signatures to Verify. It must never panic,
// must accept only the real signature, and must refuse everything else
// with one of the typed errors.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, "kcare release")
	ring := keyring(f, s)
	good := sign(f, s, bundle)
	f.Add(good)
	f.Add(dearmor(f, good))
	f.Add(good[:len(good)/2])
	f.Add(sign(f, newSigner(f, "stranger"), bundle))
	f.Add(publicKey(f, s))
	f.Add([]byte{})
	f.Add([]byte("-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n"))
	f.Add([]byte{0x88, 0x75, 0x04, 0x00})
	f.Fuzz(func(t *testing.T, sig []byte) {
		got, err := ring.Verify(bytes.NewReader(bundle), sig)
		if err == nil {
			if got.Fingerprint != s.Fingerprint() {
				t.Fatalf("accepted signature by %s, want only %s", got.Fingerprint, s.Fingerprint())
			}
			return
		}
		for _, sentinel := range sentinels {
			if errors.Is(err, sentinel) {
				return
			}
		}
		t.Fatalf("got untyped error %q", err)
	})
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func join(parts ...any) []byte {
	var buf bytes.Buffer
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			buf.WriteString(p)
		case []byte:
			buf.Write(p)
		}
	}
	return buf.Bytes()
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestVerifyAsSigned: a signature dated a year ahead of this machine's
// clock (or this clock a year behind) is refused as made in the future,
// with the error saying when; the same signature, once accepted, checks
// out again with the keyring AsSigned whatever the clock says, and a
// tampered one still does not.
func TestVerifyAsSigned(t *testing.T) {
	s := newSigner(t, "kcare release")
	ring := keyring(t, s)
	made := time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	sig := sign(t, s.WithClock(func() time.Time { return made }), bundle)

	_, err := ring.Verify(bytes.NewReader(bundle), sig)
	var fe *FutureError
	if !errors.Is(err, ErrBadSignature) || !errors.As(err, &fe) || !fe.Made.Equal(made) {
		t.Fatalf("Verify of a signature a year ahead = %v, want a FutureError (an ErrBadSignature) made at %s", err, made)
	}
	if got, err := ring.AsSigned().Verify(bytes.NewReader(bundle), sig); err != nil || !got.Created.Equal(made) {
		t.Errorf("AsSigned().Verify = %+v, %v; want it accepted, created %s", got, err, made)
	}
	if _, err := ring.AsSigned().Verify(bytes.NewReader(flipByte(bundle, 7)), sig); !errors.Is(err, ErrBadSignature) {
		t.Errorf("AsSigned().Verify of tampered data = %v, want ErrBadSignature", err)
	}
	if k, rsig := revokedKey(t, bundle); true {
		if _, err := k.AsSigned().Verify(bytes.NewReader(bundle), rsig); !errors.Is(err, ErrKeyRevoked) {
			t.Errorf("AsSigned().Verify by a revoked key = %v, want ErrKeyRevoked", err)
		}
	}
}

// TestVerifyKeyMadeInTheFuture: with this machine's clock a year behind
// the signer's, the signer's key itself is from the future, and the
// refusal says the signature was made in the future, as for a signature
// alone, not that the key expired.
func TestVerifyKeyMadeInTheFuture(t *testing.T) {
	born := time.Now().Add(365 * 24 * time.Hour)
	e, err := generateKey("future", "", &packet.Config{Time: func() time.Time { return born }})
	if err != nil {
		t.Fatal(err)
	}
	s := &Signer{entity: e, now: func() time.Time { return born.Add(time.Minute) }}
	_, err = keyring(t, s).Verify(bytes.NewReader(bundle), sign(t, s, bundle))
	var fe *FutureError
	if !errors.As(err, &fe) || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify by a key made a year ahead = %v, want a FutureError", err)
	}
	if _, err := keyring(t, s).AsSigned().Verify(bytes.NewReader(bundle), sign(t, s, bundle)); err != nil {
		t.Errorf("AsSigned().Verify = %v, want it accepted", err)
	}
}
