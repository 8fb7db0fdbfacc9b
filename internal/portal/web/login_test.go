package web_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/portal/web"
)

// heldCheck is a password check the test can hold: while held, each
// check says it started and waits to be let go.
type heldCheck struct {
	held    atomic.Bool
	started chan struct{}
	release chan struct{}
}

func newHeldCheck() *heldCheck {
	return &heldCheck{started: make(chan struct{}, 100), release: make(chan struct{})}
}

func (h *heldCheck) check(hash, password string) error {
	if h.held.Load() {
		h.started <- struct{}{}
		<-h.release
	}
	return plainCheck(hash, password)
}

// guesses runs n wrong sign-ins at once, the i-th from the address and
// as the user from(i) gives, with every password check held. Each either
// starts a check or is answered without one; once all n have done
// either, the checks are let go. It returns how many checks ran, the
// answers given without one, and the answers of those checked.
func guesses(u *testUI, h *heldCheck, n int, from func(i int) (ip, user string)) (hashed int, refused, checked []*http.Response) {
	h.held.Store(true)
	answers := make(chan *http.Response, n)
	for i := range n {
		go func() {
			ip, user := from(i)
			answers <- u.signIn(ip, user, "a wrong guess", "")
		}()
	}
	for hashed+len(refused) < n {
		select {
		case <-h.started:
			hashed++
		case r := <-answers:
			refused = append(refused, r)
		}
	}
	close(h.release)
	for range hashed {
		checked = append(checked, <-answers)
	}
	h.held.Store(false)
	h.release = make(chan struct{})
	return hashed, refused, checked
}

var loginErrorRE = regexp.MustCompile(`id="login-error">([^<]*)<`)

// loginError is the reason the sign-in form shows.
func loginError(resp *http.Response) string {
	m := loginErrorRE.FindStringSubmatch(body(resp))
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// wantAnswer checks resp is code with the Retry-After and the reason.
func wantAnswer(t *testing.T, what string, resp *http.Response, code int, retry, reason string) {
	t.Helper()
	got := fmt.Sprintf("%d Retry-After=%q %q", resp.StatusCode, resp.Header.Get("Retry-After"), loginError(resp))
	want := fmt.Sprintf("%d Retry-After=%q %q", code, retry, reason)
	if got != want {
		t.Errorf("%s: %s, want %s", what, got, want)
	}
}

// TestSignInGuessesInParallel: parallel guesses at one user from one
// address are checked one at a time, so a pair one failure short of its
// lockout gets one more guess, not sixteen; the others are refused
// without hashing.
func TestSignInGuessesInParallel(t *testing.T) {
	h := newHeldCheck()
	u := newTestUI(t, web.Config{CheckPassword: h.check})
	for i := range 4 {
		if resp := u.signIn("127.0.0.2", "alice", "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	hashed, refused, checked := guesses(u, h, 16, func(int) (string, string) { return "127.0.0.2", "alice" })
	if hashed != 1 || len(refused) != 15 {
		t.Fatalf("16 parallel guesses: %d hashed, %d refused without hashing; want 1 and 15", hashed, len(refused))
	}
	for i, resp := range refused {
		wantAnswer(t, fmt.Sprintf("refused guess %d", i), resp, http.StatusTooManyRequests, "1",
			"another sign-in from your address is being checked; try again in 1 s")
	}
	wantAnswer(t, "the checked guess", checked[0], http.StatusUnauthorized, "", "wrong user name or password")
	// That was the fifth failure: the pair is locked out.
	wantAnswer(t, "the right password after five failures", u.signIn("127.0.0.2", "alice", alicePassword, ""),
		http.StatusTooManyRequests, "30", "too many failed sign-ins; try again in 30 s")
}

// TestSignInHashMemory: no more password hashes run at once than the
// memory allows; sign-ins beyond it are refused with 429 and Retry-After
// without hashing, from every address.
func TestSignInHashMemory(t *testing.T) {
	h := newHeldCheck()
	u := newTestUI(t, web.Config{CheckPassword: h.check, HashMemory: 2 * auth.HashMemory, HashWait: time.Nanosecond})
	hashed, refused, checked := guesses(u, h, 16, func(i int) (string, string) {
		return fmt.Sprintf("127.0.0.%d", i+2), fmt.Sprintf("user%d", i)
	})
	if hashed != 2 || len(refused) != 14 {
		t.Fatalf("16 parallel sign-ins from 16 addresses: %d hashed, %d refused without hashing; want 2 and 14", hashed, len(refused))
	}
	for i, resp := range refused {
		wantAnswer(t, fmt.Sprintf("refused sign-in %d", i), resp, http.StatusTooManyRequests, "1",
			"the portal is busy checking other sign-ins; try again in 1 s")
	}
	for i, resp := range checked {
		wantAnswer(t, fmt.Sprintf("checked sign-in %d", i), resp, http.StatusUnauthorized, "", "wrong user name or password")
	}
	// Refused sign-ins are not failures: the admin signs in at once.
	if resp := u.signIn("127.0.0.1", "alice", alicePassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice after the burst: %d %s, want 303", resp.StatusCode, loginError(resp))
	}
}

// TestSignInLockoutPerSource: failures lock out the user from that
// address only, so nobody can lock an admin out from elsewhere.
func TestSignInLockoutPerSource(t *testing.T) {
	u := newTestUI(t, web.Config{})
	for i := range 5 {
		if resp := u.signIn("127.0.0.2", "alice", "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d from 127.0.0.2: %d, want 401", i+1, resp.StatusCode)
		}
	}
	wantAnswer(t, "alice from 127.0.0.2, locked out", u.signIn("127.0.0.2", "alice", alicePassword, ""),
		http.StatusTooManyRequests, "30", "too many failed sign-ins; try again in 30 s")
	if resp := u.signIn("127.0.0.1", "alice", alicePassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice from 127.0.0.1 while 127.0.0.2 is locked out: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
	// Another user from the locked-out address is not locked out.
	if resp := u.signIn("127.0.0.2", "bob", bobPassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("bob from 127.0.0.2: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
	// The lockout ends on the UI's clock.
	u.advance(31 * time.Second)
	if resp := u.signIn("127.0.0.2", "alice", alicePassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice from 127.0.0.2 after the lockout: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
}

// TestSignInSourceSpray: guessing many users' passwords from one address
// locks that address out after 20 failures, for every user, and no
// other address.
func TestSignInSourceSpray(t *testing.T) {
	u := newTestUI(t, web.Config{})
	for i := range 20 {
		if resp := u.signIn("127.0.0.3", fmt.Sprintf("user%d", i), "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d from 127.0.0.3: %d, want 401", i+1, resp.StatusCode)
		}
	}
	wantAnswer(t, "bob from 127.0.0.3 after 20 failures", u.signIn("127.0.0.3", "bob", bobPassword, ""),
		http.StatusTooManyRequests, "30", "too many failed sign-ins; try again in 30 s")
	if resp := u.signIn("127.0.0.1", "bob", bobPassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("bob from 127.0.0.1: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
}

// TestSignInLockoutIPv6: an IPv6 source is its /64, the least a host
// gets, so moving within it does not reset the count.
func TestSignInLockoutIPv6(t *testing.T) {
	u := newTestUI(t, web.Config{})
	for i := range 5 {
		ip := fmt.Sprintf("2001:db8::%d", i+1)
		if resp := u.signIn(ip, "alice", "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d from %s: %d, want 401", i+1, ip, resp.StatusCode)
		}
	}
	wantAnswer(t, "alice from 2001:db8::ffff, in the same /64", u.signIn("2001:db8::ffff", "alice", alicePassword, ""),
		http.StatusTooManyRequests, "30", "too many failed sign-ins; try again in 30 s")
	if resp := u.signIn("2001:db8:0:1::1", "alice", alicePassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice from 2001:db8:0:1::1, another /64: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
	if resp := u.signIn("::ffff:127.0.0.1", "alice", alicePassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("alice from ::ffff:127.0.0.1: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
}

// TestSignInLockoutReplicas: two replicas of a portal on one PostgreSQL
// database count failed sign-ins together: guesses spread over both lock
// the pair out on both, and a sign-in through one clears the pair's count
// on the other.
func TestSignInLockoutReplicas(t *testing.T) {
	dsn := storetest.FreshPostgres(t)
	open := func() store.Store {
		st, err := store.Open(context.Background(), t.TempDir(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	sa := open()
	addTestUsers(t, sa)
	a, b := newTestUIOn(t, sa, web.Config{}), newTestUIOn(t, open(), web.Config{})
	for i := range 5 {
		u := a
		if i%2 == 1 {
			u = b
		}
		if resp := u.signIn("127.0.0.2", "alice", "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d from 127.0.0.2: %d, want 401", i+1, resp.StatusCode)
		}
	}
	for name, u := range map[string]*testUI{"a": a, "b": b} {
		wantAnswer(t, "alice from 127.0.0.2 on replica "+name, u.signIn("127.0.0.2", "alice", alicePassword, ""),
			http.StatusTooManyRequests, "30", "too many failed sign-ins; try again in 30 s")
	}
	for i := range 4 {
		if resp := a.signIn("127.0.0.3", "alice", "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d from 127.0.0.3: %d, want 401", i+1, resp.StatusCode)
		}
	}
	if resp := b.signIn("127.0.0.3", "alice", alicePassword, ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice from 127.0.0.3 on replica b: %d %q, want 303", resp.StatusCode, loginError(resp))
	}
	// The sign-in cleared the pair's four failures: five more to a lockout.
	for i := range 4 {
		if resp := a.signIn("127.0.0.3", "alice", "a wrong guess", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d from 127.0.0.3 after signing in: %d, want 401", i+1, resp.StatusCode)
		}
	}
}
