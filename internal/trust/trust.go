// Package trust signs and verifies kcare files with OpenPGP detached signatures.
//
// Signatures are the ones gpg makes and checks: a bundle NAME.kcp signed by
// kcare verifies with "gpg --verify NAME.kcp.sig NAME.kcp", and a signature
// made with "gpg --detach-sign" verifies here. Keys are EdDSA (ed25519)
// OpenPGP v4 keys, which gpg 2.2 and later read.
//
// Verification fails closed, and every refusal is one of the errors below,
// to be checked with errors.Is.
package trust

import (
	"errors"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kcare/kcare/internal/failure"
)

// MaxSignatureSize is the largest signature, armored or binary, that Verify
// reads. A detached signature is a few hundred bytes; anything near the limit
// is not one.
const MaxSignatureSize = 64 << 10

// Refusals from Verify, ReadKeyring and LoadKeyring. They are distinct so a
// caller can tell a tampered file from a missing signature or a stranger's key.
var (
	// ErrUnsigned means there is no signature to check.
	ErrUnsigned = failure.New(failure.Refused, "unsigned")
	// ErrMalformedSignature means the signature cannot be read as an OpenPGP
	// detached signature.
	ErrMalformedSignature = failure.New(failure.Refused, "malformed signature")
	// ErrUnknownKey means the signature was made by a key not in the keyring.
	ErrUnknownKey = failure.New(failure.Refused, "signature by unknown key")
	// ErrBadSignature means the signing key is trusted but the signature does
	// not hold for the data, or it breaks policy (weak hash, wrong type,
	// creation time in the future).
	ErrBadSignature = failure.New(failure.Refused, "bad signature")
	// ErrKeyExpired means the signing key, or the signature itself, is past
	// its expiry time.
	ErrKeyExpired = errors.New("expired")
	// ErrKeyRevoked means the signing key has been revoked by its owner.
	ErrKeyRevoked = errors.New("revoked key")
	// ErrNoKeys means there is no trusted key to verify with.
	ErrNoKeys = errors.New("no trusted keys")
)

// isBinary reports whether b starts with an OpenPGP packet header rather
// than ASCII armor: every packet tag byte has its top bit set, and armor is
// plain text.
func isBinary(b []byte) bool {
	return len(b) > 0 && b[0]&0x80 != 0
}

// fingerprint formats a key's fingerprint the way gpg --with-colons prints
// it: upper-case hex without spaces.
func fingerprint(pk *packet.PublicKey) string {
	return fmt.Sprintf("%X", pk.Fingerprint)
}
