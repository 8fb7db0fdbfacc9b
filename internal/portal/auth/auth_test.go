package auth

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
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

// TestLimiter: the memory budget sets how many hashes run at once; one
// beyond waits for a slot, and gets ErrBusy when none frees in time.
func TestLimiter(t *testing.T) {
	if got := NewLimiter(DefaultHashMemory).Cap(); got != 4 {
		t.Errorf("NewLimiter(DefaultHashMemory).Cap() = %d, want 4", got)
	}
	if got := NewLimiter(HashMemory - 1).Cap(); got != 1 {
		t.Errorf("NewLimiter(less than one hash).Cap() = %d, want 1", got)
	}
	l := NewLimiter(2 * HashMemory)
	ctx := context.Background()
	r1, err1 := l.Acquire(ctx, 0)
	r2, err2 := l.Acquire(ctx, 0)
	if err1 != nil || err2 != nil {
		t.Fatalf("two slots of two: %v, %v", err1, err2)
	}
	if _, err := l.Acquire(ctx, time.Nanosecond); !errors.Is(err, ErrBusy) {
		t.Fatalf("a third of two slots: %v, want ErrBusy", err)
	}
	// A waiter gets the slot that frees.
	got := make(chan error)
	go func() {
		r, err := l.Acquire(ctx, time.Hour)
		if err == nil {
			r()
		}
		got <- err
	}()
	r1()
	if err := <-got; err != nil {
		t.Errorf("waiting for a freed slot: %v", err)
	}
	r2()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	l1 := NewLimiter(HashMemory)
	r, _ := l1.Acquire(ctx, 0)
	defer r()
	if _, err := l1.Acquire(cctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("a canceled wait: %v, want context.Canceled", err)
	}
}

// TestDummyHash: the dummy hash is well formed, of HashPassword's cost, and
// matches no password.
func TestDummyHash(t *testing.T) {
	real, err := HashPassword("a real password")
	if err != nil {
		t.Fatal(err)
	}
	cost := func(h string) string { return strings.Join(strings.Split(h, "$")[:4], "$") }
	if cost(DummyHash) != cost(real) {
		t.Errorf("DummyHash cost %q, want %q", cost(DummyHash), cost(real))
	}
	for _, pw := range []string{"", "a real password", "no such user, a dummy password"} {
		if err := CheckPassword(DummyHash, pw); !errors.Is(err, ErrMismatch) {
			t.Errorf("CheckPassword(DummyHash, %q) = %v, want ErrMismatch", pw, err)
		}
	}
}
