package trust

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// signHash is the digest every kcare signature uses. gpg accepts it for
// ed25519 keys, and Verify refuses anything weaker than SHA-256.
const signHash = crypto.SHA256

// GenerateKey makes a new signing key, EdDSA over ed25519 as an OpenPGP v4
// key so that gpg 2.2 reads it, with the user id "name <email>", or just
// "name" when email is empty. It returns the private and public keys, both
// ASCII-armored. The private key is not protected by a passphrase; keep it
// where only the signer can read it.
func GenerateKey(name, email string) (private, public []byte, err error) {
	e, err := generateKey(name, email, nil)
	if err != nil {
		return nil, nil, err
	}
	private, err = armorPrivate(e)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	public, err = armorPublic(e)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return private, public, nil
}

// generateKey makes the entity for GenerateKey. A non-nil config may set the
// creation time (Time) and a lifetime (KeyLifetimeSecs); the algorithm and
// hash are always kcare's.
func generateKey(name, email string, config *packet.Config) (*openpgp.Entity, error) {
	if name == "" {
		return nil, errors.New("generate key: name is empty")
	}
	for _, f := range []string{name, email} {
		if strings.ContainsAny(f, "()<>\x00") {
			return nil, fmt.Errorf("generate key: %q contains one of ( ) < > or NUL, which a user id cannot hold", f)
		}
	}
	c := packet.Config{}
	if config != nil {
		c = *config
	}
	c.Algorithm = packet.PubKeyAlgoEdDSA
	c.Curve = packet.Curve25519
	c.DefaultHash = signHash
	c.V6Keys = false
	e, err := openpgp.NewEntity(name, "", email, &c)
	if err != nil {
		return nil, fmt.Errorf("generate key for %q: %w", name, err)
	}
	// NewEntity adds an encryption subkey. A kcare key only signs, so it
	// carries no key that anyone could encrypt to.
	e.Subkeys = nil
	return e, nil
}

func armorPrivate(e *openpgp.Entity) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		return nil, fmt.Errorf("write private key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

func armorPublic(e *openpgp.Entity) ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	if err := e.Serialize(w); err != nil {
		return nil, fmt.Errorf("write public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// A Signer makes detached signatures with one private key.
type Signer struct {
	entity *openpgp.Entity
	now    func() time.Time // nil means time.Now
}

// ReadSigner reads one private key, ASCII-armored or binary, as written by
// GenerateKey or by "gpg --export-secret-keys". The key must not be protected
// by a passphrase and must be able to sign now.
func ReadSigner(armoredPrivate []byte) (*Signer, error) {
	entities, err := readEntities(armoredPrivate, openpgp.PrivateKeyType)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	if len(entities) != 1 {
		return nil, fmt.Errorf("read private key: found %d keys, want exactly one", len(entities))
	}
	e := entities[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("read private key %s: it is a public key", fingerprint(e.PrimaryKey))
	}
	s := &Signer{entity: e}
	key, ok := e.SigningKey(s.config().Now())
	switch {
	case !ok:
		return nil, fmt.Errorf("read private key %s: no key that can sign now (expired, revoked or not a signing key)", s.Fingerprint())
	case key.PrivateKey == nil || key.PrivateKey.Dummy():
		return nil, fmt.Errorf("read private key %s: the signing key's secret part is missing", s.Fingerprint())
	case key.PrivateKey.Encrypted:
		return nil, fmt.Errorf("read private key %s: it is protected by a passphrase; export it without one", s.Fingerprint())
	}
	return s, nil
}

func (s *Signer) config() *packet.Config {
	return &packet.Config{DefaultHash: signHash, Time: s.now}
}

// Sign reads data to its end and returns an ASCII-armored detached signature
// of it, the kind "gpg --verify" checks.
func (s *Signer) Sign(data io.Reader) ([]byte, error) {
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, s.entity, data, s.config()); err != nil {
		return nil, fmt.Errorf("sign with key %s: %w", s.Fingerprint(), err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// WithClock returns a signer that dates its signatures by now instead of
// this machine's clock: for tests of what a verifier does with a
// signature made on a machine whose clock is wrong, or with its own.
func (s *Signer) WithClock(now func() time.Time) *Signer {
	return &Signer{entity: s.entity, now: now}
}

// Fingerprint returns the fingerprint of the signer's primary key in
// upper-case hex, as gpg prints it. It equals the Fingerprint that Verify
// reports for this signer's signatures.
func (s *Signer) Fingerprint() string {
	return fingerprint(s.entity.PrimaryKey)
}

// PublicKey returns the signer's public key, ASCII-armored, for a keyring.
func (s *Signer) PublicKey() ([]byte, error) {
	b, err := armorPublic(s.entity)
	if err != nil {
		return nil, fmt.Errorf("export public key %s: %w", s.Fingerprint(), err)
	}
	return b, nil
}
