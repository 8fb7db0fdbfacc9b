package auth

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") || len(strings.Split(h, "$")) != 6 {
		t.Errorf("HashPassword = %q, want an argon2id PHC string", h)
	}
	if h2, _ := HashPassword("correct horse battery"); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	if err := CheckPassword(h, "correct horse battery"); err != nil {
		t.Errorf("CheckPassword(right) = %v", err)
	}
	if err := CheckPassword(h, "wrong horse battery"); !errors.Is(err, ErrMismatch) {
		t.Errorf("CheckPassword(wrong) = %v, want ErrMismatch", err)
	}
	if _, err := HashPassword("short"); err == nil {
		t.Error("HashPassword accepted a 5-character password")
	}
	if err := CheckPassword("md5$x", "x"); err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("CheckPassword(unknown format) = %v, want a format error", err)
	}
	if err := CheckPassword("$argon2id$v=19$m=0,t=3,p=4$c2FsdA$aGFzaA", "x"); err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("CheckPassword(zero memory) = %v, want a format error", err)
	}
}

// TestPasswordPBKDF2 checks a hash written by an older portal still works.
func TestPasswordPBKDF2(t *testing.T) {
	salt := []byte("0123456789abcdef")
	key, _ := pbkdf2.Key(sha256.New, "correct horse battery", salt, 1000, 32)
	enc := base64.RawStdEncoding
	h := fmt.Sprintf("pbkdf2-sha256$1000$%s$%s", enc.EncodeToString(salt), enc.EncodeToString(key))
	if err := CheckPassword(h, "correct horse battery"); err != nil {
		t.Errorf("CheckPassword(pbkdf2, right) = %v", err)
	}
	if err := CheckPassword(h, "wrong"); !errors.Is(err, ErrMismatch) {
		t.Errorf("CheckPassword(pbkdf2, wrong) = %v, want ErrMismatch", err)
	}
}

func TestSecret(t *testing.T) {
	s := NewSecret()
	if len(s) != 40 || s == NewSecret() {
		t.Fatalf("NewSecret = %q; want 40 hex characters, different each time", s)
	}
	if !SecretMatches(HashSecret(s), s) || SecretMatches(HashSecret(s), s+"x") {
		t.Error("SecretMatches disagrees with HashSecret")
	}
}
