// Package auth hashes operator passwords and makes and checks secrets:
// API tokens and per-server secrets, stored only as hashes.
package auth

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters for passwords (RFC 9106's second recommended
// option: 64 MiB, 3 passes, 4 lanes).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	argonKeyLen  = 32
)

// HashMemory is the memory, in bytes, that one password hash at these
// parameters takes.
const HashMemory = argonMemory * 1024

// DefaultHashMemory is the memory that concurrent password hashes may
// take together by default: four at once.
const DefaultHashMemory = 4 * HashMemory

// ErrMismatch is a wrong password.
var ErrMismatch = errors.New("wrong password")

// ErrBusy is a password hash refused because as many are running as the
// memory allows, and none finished in time.
var ErrBusy = errors.New("too many password hashes at once")

// Limiter bounds how many password hashes run at once, so that the
// memory they take together stays within a budget: each is HashMemory,
// and a caller beyond the budget waits for one to finish.
type Limiter struct {
	slots chan struct{}
}

// NewLimiter returns a Limiter for hashes that may take memory bytes
// together: memory/HashMemory hashes at once, at least one.
func NewLimiter(memory int64) *Limiter {
	return &Limiter{slots: make(chan struct{}, max(1, memory/HashMemory))}
}

// Cap is how many hashes may run at once.
func (l *Limiter) Cap() int { return cap(l.slots) }

// Acquire takes a slot for one hash, waiting up to wait for one to free.
// It returns ErrBusy when none did, or ctx's error; else a release func
// the caller must call when its hash is done.
func (l *Limiter) Acquire(ctx context.Context, wait time.Duration) (release func(), err error) {
	release = func() { <-l.slots }
	select {
	case l.slots <- struct{}{}:
		return release, nil
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return release, nil
	case <-t.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// DummyHash is a well-formed hash of HashPassword's cost that no password
// matches: checking a password against it for an unknown user takes as long
// as for a known one. A constant, so that no process pays a hash at start.
var DummyHash = fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
	"a2NhcmUtZHVtbXktc2FsdA", "a2NhcmUgZHVtbXkgaGFzaCwgbWF0Y2hpbmcgbm9uZS4")

// HashPassword returns the argon2id hash of password in the PHC string
// format: "$argon2id$v=19$m=65536,t=3,p=4$SALT$HASH".
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", errors.New("password too short (8 characters at least)")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// CheckPassword reports ErrMismatch unless password matches hash, an
// argon2id PHC string as HashPassword makes (or, from older portals,
// "pbkdf2-sha256$ITER$SALT$HASH").
func CheckPassword(hash, password string) error {
	if strings.HasPrefix(hash, "pbkdf2-sha256$") {
		return checkPBKDF2(hash, password)
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return errors.New("unknown password hash format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("bad password hash: version")
	}
	var mem, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil || mem == 0 || t == 0 || p == 0 || mem > 1<<22 || t > 64 {
		return errors.New("bad password hash: parameters")
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return errors.New("bad password hash")
	}
	got := argon2.IDKey([]byte(password), salt, t, mem, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

func checkPBKDF2(hash, password string) error {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 {
		return errors.New("bad password hash")
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 {
		return errors.New("bad password hash")
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[2])
	want, err2 := enc.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return errors.New("bad password hash")
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

// NewSecret returns a random secret as 40 hex characters.
func NewSecret() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// HashSecret hashes a token or server secret for storage and lookup.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// SecretMatches reports whether secret hashes to hash, in constant time.
func SecretMatches(hash []byte, secret string) bool {
	return subtle.ConstantTimeCompare(hash, HashSecret(secret)) == 1
}
