package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portal/store"
)

// signedAnswer is a signed index as a server fetched it.
type signedAnswer struct {
	body, sig []byte
	idx       *index.Index
}

// fetchIndex fetches and verifies h's index for the fake kernel.
func (p *portal) fetchIndex(t *testing.T, h *host, prefix, sticky string) signedAnswer {
	t.Helper()
	body, sig, err := h.c.Index(context.Background(), fakekernel.BuildID, prefix, sticky)
	if err != nil {
		t.Fatalf("index of %s: %v", h.c.ServerID, err)
	}
	v := index.Verifier{Keys: ring(t, portalKey), BuildID: fakekernel.BuildID, Prefix: prefix, Sticky: sticky,
		ServerID: h.c.ServerID, Now: func() time.Time { return p.now }}
	idx, err := v.Verify(body, sig)
	if err != nil {
		t.Fatalf("verify the index of %s: %v", h.c.ServerID, err)
	}
	return signedAnswer{body, sig, idx}
}

func levelOf(idx *index.Index) int {
	if idx.Level == nil {
		return 0
	}
	return idx.Level.Level
}

// serverNamed is the server_id a signed body names, "" for none.
func serverNamed(t *testing.T, body []byte) string {
	var v struct {
		ServerID *string `json:"server_id"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if v.ServerID == nil {
		return ""
	}
	return *v.ServerID
}

// TestIndexShared: servers that ask the same question get the same signed
// answer, which names no server; a server the portal orders back gets an
// answer of its own naming it, which no other server gets; a publish, an
// undeploy, a key's sticky date and the clock reaching a level's release
// change the answer at once.
func TestIndexShared(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		ctx := context.Background()
		p.addKey(t, store.Key{Key: "k-shared"})
		p.addKey(t, store.Key{Key: "k-sticky", Sticky: "2026-11-22"})
		p.mustPublish(t, 1, testStart.Add(-10*24*time.Hour))
		p.mustPublish(t, 2, testStart.Add(-2*24*time.Hour))
		a, b, c := p.newHost(t), p.newHost(t), p.newHost(t)
		for _, h := range []*host{a, b, c} {
			h.register(t, "k-shared")
		}
		sticky := p.newHost(t)
		sticky.register(t, "k-sticky")

		ga, gb := p.fetchIndex(t, a, "", ""), p.fetchIndex(t, b, "", "")
		if !bytes.Equal(ga.body, gb.body) || !bytes.Equal(ga.sig, gb.sig) {
			t.Errorf("two servers asking the same question got different answers:\n%s\n%s", ga.body, gb.body)
		}
		if id := serverNamed(t, ga.body); id != "" || levelOf(ga.idx) != 2 {
			t.Errorf("the shared answer names server %q and level %d, want none and 2", id, levelOf(ga.idx))
		}
		// The same question with a sticky date KEY resolves to each key's.
		if got := p.fetchIndex(t, sticky, "", "KEY"); levelOf(got.idx) != 1 {
			t.Errorf("sticky key's server got level %d, want 1 (its key's date is before level 2)", levelOf(got.idx))
		}
		if got := p.fetchIndex(t, a, "", "KEY"); levelOf(got.idx) != 2 {
			t.Errorf("with sticky KEY and a key with none: level %d, want 2", levelOf(got.idx))
		}

		// a applies level 2 and says so; then level 2 is undeployed.
		if err := a.c.CheckIn(ctx, apitype.CheckIn{Hostname: "a", BuildID: fakekernel.BuildID, Level: 2, Result: "ok"}); err != nil {
			t.Fatal(err)
		}
		p.undeploy(t, "main")
		ra, rb, rc := p.fetchIndex(t, a, "", ""), p.fetchIndex(t, b, "", ""), p.fetchIndex(t, c, "", "")
		want := index.Rollback{Level: 1, From: 2, ServerID: a.c.ServerID}
		if ra.idx.Rollback == nil || *ra.idx.Rollback != want || serverNamed(t, ra.body) != a.c.ServerID {
			t.Errorf("a's answer after the undeploy: rollback %+v, server %q; want %+v", ra.idx.Rollback, serverNamed(t, ra.body), want)
		}
		if rb.idx.Rollback != nil || levelOf(rb.idx) != 1 || serverNamed(t, rb.body) != "" {
			t.Errorf("b's answer after the undeploy: rollback %+v, level %d, server %q; want none, 1, none",
				rb.idx.Rollback, levelOf(rb.idx), serverNamed(t, rb.body))
		}
		if !bytes.Equal(rb.body, rc.body) || bytes.Equal(ra.body, rb.body) {
			t.Error("b and c should share an answer, and a's order should be its own")
		}

		// A newer level, released an hour from now: not yet, then at once.
		p.mustPublish(t, 3, testStart.Add(time.Hour))
		if got := p.fetchIndex(t, b, "", ""); levelOf(got.idx) != 1 || got.idx.Latest != 3 {
			t.Errorf("before level 3's release: level %d, latest %d; want 1, 3", levelOf(got.idx), got.idx.Latest)
		}
		p.now = testStart.Add(time.Hour - time.Second)
		if got := p.fetchIndex(t, b, "", ""); levelOf(got.idx) != 1 {
			t.Errorf("a second before level 3's release: level %d, want 1", levelOf(got.idx))
		}
		p.now = testStart.Add(time.Hour)
		if got := p.fetchIndex(t, b, "", ""); levelOf(got.idx) != 3 {
			t.Errorf("at level 3's release: level %d, want 3", levelOf(got.idx))
		}
	})
}

// TestRun: an agent's run in one request records its check-in and
// answers the signed index; a conditional run naming the answer's tag
// gets 304 and no body, and is still recorded; a bad question is refused
// before anything is recorded.
func TestRun(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		ctx := context.Background()
		p.addKey(t, store.Key{Key: "k-run"})
		p.mustPublish(t, 1, testStart.Add(-24*time.Hour))
		h := p.newHost(t)
		h.register(t, "k-run")
		run := func(query, inm string, ci apitype.CheckIn) *http.Response {
			t.Helper()
			b, _ := json.Marshal(ci)
			req, _ := http.NewRequest("POST", p.http.URL+apitype.RunPath+query, bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth(h.c.ServerID, h.c.Secret)
			if inm != "" {
				req.Header.Set("If-None-Match", inm)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		stored := func() *store.Server {
			t.Helper()
			v, err := p.st.Server(ctx, h.c.ServerID)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		ci := apitype.CheckIn{Hostname: "web1", BuildID: fakekernel.BuildID, Release: fakekernel.Release, Result: "ok"}

		resp := run("", "", ci)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tag := resp.Header.Get("ETag")
		sig, err := index.DecodeSignature(resp.Header.Get(index.SignatureHeader))
		if resp.StatusCode != 200 || tag == "" || err != nil {
			t.Fatalf("run: %s, ETag %q, signature %v", resp.Status, tag, err)
		}
		v := index.Verifier{Keys: ring(t, portalKey), BuildID: fakekernel.BuildID, ServerID: h.c.ServerID, Now: func() time.Time { return p.now }}
		if idx, err := v.Verify(body, sig); err != nil || levelOf(idx) != 1 {
			t.Fatalf("run's index: %v, %v", idx, err)
		}
		if got := stored(); got.Hostname != "web1" || !got.LastCheckin.Equal(p.now) {
			t.Errorf("after the run: hostname %q, last check-in %v; want web1, %v", got.Hostname, got.LastCheckin, p.now)
		}

		p.now = p.now.Add(time.Minute)
		resp = run("", tag, ci)
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get(index.SignatureHeader) != "" || resp.Header.Get("ETag") != tag {
			t.Errorf("conditional run: %s, %d bytes, signature %q, ETag %q; want 304, none, none, %s",
				resp.Status, len(body), resp.Header.Get(index.SignatureHeader), resp.Header.Get("ETag"), tag)
		}
		if got := stored(); !got.LastCheckin.Equal(p.now) {
			t.Errorf("the conditional run's check-in: last check-in %v, want %v", got.LastCheckin, p.now)
		}
		// The index alone answers conditionally too.
		req, _ := http.NewRequest("GET", p.http.URL+apitype.IndexPath+fakekernel.BuildID, nil)
		req.SetBasicAuth(h.c.ServerID, h.c.Secret)
		req.Header.Set("If-None-Match", tag)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
			t.Errorf("conditional index: %v, %v; want 304", resp, err)
		} else {
			resp.Body.Close()
		}

		// A new level: the old tag no longer names the answer.
		p.mustPublish(t, 2, testStart.Add(-time.Hour))
		resp = run("", tag, ci)
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("ETag") == tag || !bytes.Contains(body, []byte(`"level": 2,`)) {
			t.Errorf("run after a publish with the old tag: %s, ETag %q; want 200 naming level 2:\n%s", resp.Status, resp.Header.Get("ETag"), body)
		}

		// A bad PREFIX: refused, and the check-in is not recorded.
		before := stored()
		p.now = p.now.Add(time.Minute)
		bad := ci
		bad.Hostname = "renamed"
		resp = run("?prefix=6h", "", bad)
		resp.Body.Close()
		if got := stored(); resp.StatusCode != 400 || got.Hostname != "web1" || !got.LastCheckin.Equal(before.LastCheckin) {
			t.Errorf("run with a bad prefix: %s; stored hostname %q, last check-in %v; want 400 and nothing recorded",
				resp.Status, got.Hostname, got.LastCheckin)
		}
	})
}
