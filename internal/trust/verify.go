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
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// acceptedHashes are the digests Verify accepts. Anything else, SHA-1 and
// SHA-224 among them, is refused even where OpenPGP still allows it.
var acceptedHashes = map[crypto.Hash]bool{
	crypto.SHA256:   true,
	crypto.SHA384:   true,
	crypto.SHA512:   true,
	crypto.SHA3_256: true,
	crypto.SHA3_512: true,
}

// A Signature describes a signature that Verify accepted.
type Signature struct {
	// KeyID is the 64-bit id of the key that made the signature, in
	// upper-case hex: the primary key or one of its signing subkeys.
	KeyID string
	// Fingerprint is the fingerprint of the signer's primary key in
	// upper-case hex, as Signer.Fingerprint returns it.
	Fingerprint string
	// Created is when the signature was made, by the signer's clock.
	Created time.Time
}

// FutureError is a signature dated further ahead of this machine's clock
// than ClockSkew allows: this clock or the signer's is wrong. It is an
// ErrBadSignature (errors.Is); errors.As finds the times.
type FutureError struct {
	Issuer string
	Made   time.Time // when the signature says it was made
	Now    time.Time // this machine's clock when it was checked
}

func (e *FutureError) Error() string {
	return fmt.Sprintf("%v by key %s: made in the future, at %s; check the clocks", ErrBadSignature, e.Issuer, e.Made.UTC().Format(time.RFC3339))
}

// Unwrap makes a FutureError an ErrBadSignature.
func (e *FutureError) Unwrap() error { return ErrBadSignature }

// ClockSkew is how far in the future a signature's (or its key's) creation
// time may be, by this machine's clock, before Verify refuses it: the
// clocks of a signer and a verifier never agree exactly.
const ClockSkew = 5 * time.Minute

// Verify checks that sig, an ASCII-armored or binary OpenPGP detached
// signature, was made over data by a key in the keyring. It reads data to
// its end. Checks run in a fixed order and the first failure is returned:
// ErrNoKeys, ErrUnsigned, ErrMalformedSignature, ErrUnknownKey, then
// ErrBadSignature, ErrKeyRevoked or ErrKeyExpired. An error that is none of
// these means data could not be read.
//
// If sig holds several signatures, the first one by a key in the keyring is
// checked.
func (k *Keyring) Verify(data io.Reader, sig []byte) (Signature, error) {
	if k.Len() == 0 {
		return Signature{}, fmt.Errorf("%w: keyring is empty", ErrNoKeys)
	}
	if len(bytes.TrimSpace(sig)) == 0 {
		return Signature{}, fmt.Errorf("%w: signature is empty", ErrUnsigned)
	}
	if len(sig) > MaxSignatureSize {
		return Signature{}, fmt.Errorf("%w: %d bytes is over the %d-byte limit", ErrMalformedSignature, len(sig), MaxSignatureSize)
	}
	raw, err := decodeSignature(sig)
	if err != nil {
		return Signature{}, fmt.Errorf("%w: %s", ErrMalformedSignature, err)
	}
	sigs, err := parseSignatures(raw)
	if err != nil {
		return Signature{}, fmt.Errorf("%w: %s", ErrMalformedSignature, err)
	}
	chosen, err := k.choose(sigs)
	if err != nil {
		return Signature{}, err
	}
	issuer := issuerName(chosen)
	if chosen.SigType != packet.SigTypeBinary {
		return Signature{}, fmt.Errorf("%w by key %s: signature type 0x%02x is not a binary document signature", ErrBadSignature, issuer, uint8(chosen.SigType))
	}
	if !acceptedHashes[chosen.Hash] {
		return Signature{}, fmt.Errorf("%w by key %s: hash %s is too weak", ErrBadSignature, issuer, chosen.Hash)
	}

	rec := &errRecorder{r: data}
	// Judge times as if the clock were ClockSkew ahead, so that a
	// signature or key made on a machine whose clock runs a little ahead is
	// not refused as made in the future; or, for a keyring AsSigned, as of
	// the moment the signature was made.
	at := time.Now().Add(ClockSkew)
	if k.asSigned {
		at = chosen.CreationTime
	}
	cfg := &packet.Config{Time: func() time.Time { return at }}
	verified, signer, err := openpgp.VerifyDetachedSignature(k.entities, rec, bytes.NewReader(raw), cfg)
	if rec.err != nil {
		return Signature{}, fmt.Errorf("read signed data: %w", rec.err)
	}
	if err != nil {
		if !k.asSigned && k.keyFromFuture(chosen) {
			// With this clock behind the signer's, the key is from the
			// future too, which the library calls expired.
			return Signature{}, &FutureError{Issuer: issuer, Made: chosen.CreationTime, Now: time.Now()}
		}
		return Signature{}, refusal(err, chosen, issuer)
	}
	// The library picks the signature by the same rule as choose; make sure
	// the one it checked is the one whose policy was checked above.
	if verified == nil || signer == nil || verified.IssuerKeyId == nil || *verified.IssuerKeyId != *chosen.IssuerKeyId {
		return Signature{}, fmt.Errorf("%w by key %s: verified signature is not the one checked", ErrBadSignature, issuer)
	}
	return Signature{
		KeyID:       fmt.Sprintf("%016X", *verified.IssuerKeyId),
		Fingerprint: fingerprint(signer.PrimaryKey),
		Created:     verified.CreationTime,
	}, nil
}

// decodeSignature returns the binary packets of sig, removing the armor if
// it has one.
func decodeSignature(sig []byte) ([]byte, error) {
	if isBinary(sig) {
		return sig, nil
	}
	block, err := armor.Decode(bytes.NewReader(sig))
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("neither binary OpenPGP nor ASCII armor")
		}
		return nil, fmt.Errorf("decode armor: %v", err)
	}
	if block.Type != openpgp.SignatureType {
		return nil, fmt.Errorf("armored block is %s, want %s", block.Type, openpgp.SignatureType)
	}
	raw, err := io.ReadAll(block.Body)
	if err != nil {
		return nil, fmt.Errorf("decode armor: %v", err)
	}
	return raw, nil
}

// parseSignatures parses raw as a detached signature: one or more
// signature packets and nothing else.
func parseSignatures(raw []byte) ([]*packet.Signature, error) {
	var sigs []*packet.Signature
	r := packet.NewReader(bytes.NewReader(raw))
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read packets: %s", strings.TrimPrefix(err.Error(), "openpgp: "))
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			return nil, fmt.Errorf("found a %s packet, want only signature packets", packetName(p))
		}
		if sig.IssuerKeyId == nil {
			return nil, errors.New("signature does not name the key that made it")
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return nil, errors.New("no signature packet found")
	}
	return sigs, nil
}

// choose returns the first signature made by a signing key in the keyring,
// the same one openpgp.VerifyDetachedSignature checks.
func (k *Keyring) choose(sigs []*packet.Signature) (*packet.Signature, error) {
	for _, sig := range sigs {
		if len(k.entities.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign)) > 0 {
			return sig, nil
		}
	}
	var names []string
	for _, sig := range sigs {
		name := issuerName(sig)
		if len(k.entities.KeysById(*sig.IssuerKeyId)) > 0 {
			name += " (in the keyring, but not a signing key)"
		}
		names = append(names, name)
	}
	return nil, fmt.Errorf("%w %s", ErrUnknownKey, strings.Join(names, ", "))
}

// refusal turns an error from the OpenPGP library, for a signature whose key
// is in the keyring, into one of the package's errors. Anything it does not
// recognise is a bad signature: verification fails closed.
func refusal(err error, sig *packet.Signature, issuer string) error {
	var (
		structural  pgperrors.StructuralError
		unsupported pgperrors.UnsupportedError
	)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return fmt.Errorf("%w %s", ErrUnknownKey, issuer)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return fmt.Errorf("%w %s", ErrKeyRevoked, issuer)
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return fmt.Errorf("%w: signing key %s has expired", ErrKeyExpired, issuer)
	case errors.Is(err, pgperrors.ErrSignatureExpired) && sig.CreationTime.After(time.Now().Add(ClockSkew)):
		return &FutureError{Issuer: issuer, Made: sig.CreationTime, Now: time.Now()}
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return fmt.Errorf("%w: signature by key %s, or the key's self-signature, is expired or not yet valid", ErrKeyExpired, issuer)
	case errors.As(err, &structural), errors.As(err, &unsupported):
		return fmt.Errorf("%w: %s", ErrMalformedSignature, err)
	case isMismatch(err):
		return fmt.Errorf("%w by key %s: signature does not match the data", ErrBadSignature, issuer)
	}
	return fmt.Errorf("%w by key %s: %s", ErrBadSignature, issuer, err)
}

// isMismatch reports whether err is the library's failure of the signature
// arithmetic itself, as opposed to a policy refusal such as an unknown
// critical notation, whose own message says more.
func isMismatch(err error) bool {
	var se pgperrors.SignatureError
	if !errors.As(err, &se) {
		return false
	}
	return strings.HasSuffix(string(se), "verification failure") || strings.Contains(string(se), "hash tag")
}

// issuerName names the key that made sig: its fingerprint when the
// signature carries one, else its key id.
func issuerName(sig *packet.Signature) string {
	if len(sig.IssuerFingerprint) > 0 {
		return fmt.Sprintf("%X", sig.IssuerFingerprint)
	}
	return fmt.Sprintf("%016X", *sig.IssuerKeyId)
}

func packetName(p packet.Packet) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", p), "*packet.")
}

// errRecorder passes reads through and keeps the first error other than
// io.EOF, so a failure to read the signed data is not taken for a bad
// signature.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

// keyFromFuture reports whether the key that made sig was created further
// ahead of this machine's clock than ClockSkew allows.
func (k *Keyring) keyFromFuture(sig *packet.Signature) bool {
	limit := time.Now().Add(ClockSkew)
	for _, key := range k.entities.KeysById(*sig.IssuerKeyId) {
		if key.PublicKey.CreationTime.After(limit) {
			return true
		}
	}
	return false
}
