package auth

import (
	"errors"
	"testing"
)

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
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
