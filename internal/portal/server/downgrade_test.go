package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portalclient"
)

// attackerAddr is the loopback address the attacker's connections come
// from, so that per-source limits never hit the agent under test.
var attackerAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

// attackerHTTP is an HTTP client whose connections come from attackerAddr.
func attackerHTTP() *http.Client {
	d := &net.Dialer{LocalAddr: attackerAddr, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// mitm is a man in the middle between an agent and the portal, as on a
// plain-HTTP network path: it forwards every request from attackerAddr,
// and a test may change the request on its way (rewrite) or answer in the
// portal's place (replay).
type mitm struct {
	http   *httptest.Server
	portal string
	out    *http.Client

	mu      sync.Mutex
	rewrite func(r *http.Request)
	replay  *captured
}

// captured is a signed index an attacker kept: the exact body and its
// signature header.
type captured struct {
	body []byte
	sig  string
}

func newMITM(t *testing.T, portal string) *mitm {
	t.Helper()
	m := &mitm{portal: portal, out: attackerHTTP()}
	m.http = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.http.Close)
	return m
}

// set plays an attack until the next set; set(nil, nil) passes requests
// through untouched.
func (m *mitm) set(rewrite func(r *http.Request), replay *captured) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rewrite, m.replay = rewrite, replay
}

func (m *mitm) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	rewrite, replay := m.rewrite, m.replay
	m.mu.Unlock()
	if replay != nil && r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/index/") {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(index.SignatureHeader, replay.sig)
		w.Write(replay.body)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, err := http.NewRequestWithContext(r.Context(), r.Method, m.portal+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	if rewrite != nil {
		rewrite(req)
	}
	resp, err := m.out.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// attacker is a server the attacker registered itself, from attackerAddr.
type attacker struct {
	c *portalclient.Client
}

func (p *portal) newAttacker(t *testing.T, key string) *attacker {
	t.Helper()
	c := &portalclient.Client{PatchServer: p.http.URL, HTTP: attackerHTTP(), Backoff: time.Millisecond}
	id, secret, err := c.Register(context.Background(), key, "attacker")
	if err != nil {
		t.Fatalf("attacker registers with %s: %v", key, err)
	}
	c.ServerID, c.Secret = id, secret
	return &attacker{c: c}
}

// capture fetches the attacker's own signed index for the question asked.
func (a *attacker) capture(t *testing.T, prefix, sticky string) *captured {
	t.Helper()
	body, sig, err := a.c.Index(context.Background(), fakekernel.BuildID, prefix, sticky)
	if err != nil || sig == nil {
		t.Fatalf("attacker fetches its index: %v (signature %d bytes)", err, len(sig))
	}
	return &captured{body: body, sig: index.EncodeSignature(sig)}
}

// victim is a host at level 3 that reaches the portal through the mitm.
type victim struct {
	*host
}

func (p *portal) newVictim(t *testing.T, m *mitm) *victim {
	t.Helper()
	h := p.newHost(t)
	h.c.PatchServer = m.http.URL
	h.register(t, "fleet")
	v := &victim{host: h}
	if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 3 {
		t.Fatalf("victim's first update: level %d, %v; want 3", level, err)
	}
	v.checkIn(t)
	return v
}

// checkIn reports the level in effect, as kcarectl does after every run.
func (v *victim) checkIn(t *testing.T) {
	t.Helper()
	info, err := v.a.Info()
	if err != nil {
		t.Fatal(err)
	}
	ci := apitype.CheckIn{Hostname: "victim", Release: info.Kernel.Release, BuildID: info.Kernel.BuildID,
		KernelID: info.Kernel.KernelID, Level: info.Level, EffectiveRelease: info.EffectiveRelease, Result: "ok", AgentVersion: "test"}
	if err := v.c.CheckIn(context.Background(), ci); err != nil {
		t.Fatalf("check-in: %v", err)
	}
}

// TestDowngradeAttacks: a network attacker between the agent and a real
// portal cannot move the agent below the level in effect, by rewriting
// the request, replaying another server's signed index, or serving the
// signed answer another server got to the same question; an operator's
// undeploy does move it down, by a rollback order in the signed index.
func TestDowngradeAttacks(t *testing.T) {
	p := newPortal(t, "sqlite")
	ctx := context.Background()
	// A feed three days behind main: level 2 is the newest it allows.
	if err := p.st.AddFeed(ctx, &store.Feed{Name: "slow", DeployAfter: 72 * time.Hour, Auto: true, Created: p.now}); err != nil {
		t.Fatal(err)
	}
	p.mustPublish(t, 1, p.now.Add(-10*24*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-5*24*time.Hour))
	p.mustPublish(t, 3, p.now.Add(-24*time.Hour))
	p.addKey(t, store.Key{Key: "fleet"})
	p.addKey(t, store.Key{Key: "late", Feed: "slow"})
	oldSticky := p.now.Add(-8 * 24 * time.Hour).Format("2006-01-02") // before level 2

	m := newMITM(t, p.http.URL)
	// The attacker's own servers: one on main, two on the slow feed, one
	// of which reported level 3 and so is owed a rollback order to 2.
	onMain := p.newAttacker(t, "fleet")
	onSlow := p.newAttacker(t, "late")
	ordered := p.newAttacker(t, "late")
	if err := ordered.c.CheckIn(ctx, apitype.CheckIn{Hostname: "attacker", BuildID: fakekernel.BuildID, Level: 3, Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	otherInputs := onMain.capture(t, "48h", "")     // main feed, PREFIX=48h: level 2
	otherOrder := ordered.capture(t, "", "")        // slow feed, an order to level 2 for another server
	stickyIndex := onMain.capture(t, "", oldSticky) // main feed, an old sticky date: level 1

	tests := []struct {
		name    string
		rewrite func(r *http.Request)
		replay  *captured
		want    error
	}{
		{"sticky_rewritten", func(r *http.Request) {
			q := r.URL.Query()
			q.Set("sticky", oldSticky)
			r.URL.RawQuery = q.Encode()
		}, nil, index.ErrWrongRequest},
		{"replay_index_for_other_inputs", nil, otherInputs, index.ErrWrongRequest},
		{"replay_index_for_old_sticky", nil, stickyIndex, index.ErrWrongRequest},
		{"replay_other_servers_rollback_order", nil, otherOrder, index.ErrWrongRequest},
		{"same_question_lower_level_no_order", func(r *http.Request) {
			// The signed answer a server on a slower feed gets to the
			// very question the victim asked.
			r.SetBasicAuth(onSlow.c.ServerID, onSlow.c.Secret)
		}, nil, agent.ErrDowngrade},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := p.newVictim(t, m)
			loads := v.k.Loads()
			m.set(tt.rewrite, tt.replay)
			defer m.set(nil, nil)
			level, err := v.update(t, agent.UpdateOptions{})
			if level != 3 {
				t.Errorf("level %d after the attack, want 3 (error %v)", level, err)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("update error = %v, want %v", err, tt.want)
			}
			if n := v.k.Loads(); n != loads {
				t.Errorf("%d modules loaded during the attack, want none", n-loads)
			}
		})
	}

	t.Run("operator_undeploy_orders_rollback", func(t *testing.T) {
		v := p.newVictim(t, m)
		p.undeploy(t, "main")
		loads := v.k.Loads()
		if level, err := v.update(t, agent.UpdateOptions{}); err != nil || level != 2 {
			t.Fatalf("update after the undeploy: level %d, %v; want 2", level, err)
		}
		if n := v.k.Loads(); n != loads+1 {
			t.Errorf("%d modules loaded by the rollback, want 1", n-loads)
		}
		v.checkIn(t)
		if level, err := v.update(t, agent.UpdateOptions{}); !errors.Is(err, agent.ErrNothingToDo) || level != 2 {
			t.Errorf("update after the rollback: level %d, %v; want 2, nothing to do", level, err)
		}
	})
}

// undeploy disables, in feed, the patchset of the newest level and every
// newer one, as an operator does through the REST API.
func (p *portal) undeploy(t *testing.T, feed string) {
	t.Helper()
	list, err := p.st.FeedPatchsets(context.Background(), feed)
	if err != nil || len(list) == 0 {
		t.Fatalf("patchsets in %s: %v, %v", feed, list, err)
	}
	newest := list[len(list)-1].Patchset
	req, _ := http.NewRequest("POST", p.http.URL+"/admin/api/patchsets/manage?"+url.Values{
		"feed": {feed}, "action": {"undeploy-downto"}, "patchset": {newest}}.Encode(), nil)
	req.Header.Set("X-Api-Key", p.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("undeploy-downto %s in %s: %s", newest, feed, resp.Status)
	}
}

// TestRollbackOrderIPLicense: a server known only by its IP license gets
// its rollback order too, named by its address, once it reported its level.
func TestRollbackOrderIPLicense(t *testing.T) {
	p := newPortal(t, "sqlite")
	ctx := context.Background()
	p.mustPublish(t, 1, p.now.Add(-10*24*time.Hour))
	p.mustPublish(t, 2, p.now.Add(-5*24*time.Hour))
	if err := p.st.AddIPLicense(ctx, &store.IPLicense{CIDR: "127.0.0.1/32", Feed: "main", Created: p.now}); err != nil {
		t.Fatal(err)
	}
	h := p.newHost(t)
	if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 2 {
		t.Fatalf("update under the IP license: level %d, %v; want 2", level, err)
	}
	if err := h.c.CheckIn(ctx, apitype.CheckIn{Hostname: "lab1", BuildID: fakekernel.BuildID, Level: 2, Result: "ok"}); err != nil {
		t.Fatal(err)
	}
	p.undeploy(t, "main")
	body, sig, err := h.c.Index(ctx, fakekernel.BuildID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	v := index.Verifier{Keys: ring(t, portalKey), BuildID: fakekernel.BuildID, Now: func() time.Time { return p.now }}
	idx, err := v.Verify(body, sig)
	if err != nil {
		t.Fatalf("verify the index after the undeploy: %v", err)
	}
	want := index.Rollback{Level: 1, From: 2, ServerID: "ip-127-0-0-1"}
	if idx.Rollback == nil || *idx.Rollback != want {
		t.Fatalf("rollback order %+v, want %+v", idx.Rollback, want)
	}
	if level, err := h.update(t, agent.UpdateOptions{}); err != nil || level != 1 {
		t.Errorf("update after the undeploy: level %d, %v; want 1", level, err)
	}
}
