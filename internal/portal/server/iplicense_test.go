package server_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/store"
)

// TestOverlappingIPLicenses: a server inside two IP licenses gets the
// narrowest one's feed, and every face says so: the signed index it is
// served, its row in the store (the feed filter), and the metrics.
func TestOverlappingIPLicenses(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		ctx := context.Background()
		for _, f := range []string{"wide", "narrow"} {
			if err := p.st.AddFeed(ctx, &store.Feed{Name: f, Created: p.now}); err != nil {
				t.Fatal(err)
			}
		}
		// The wider license is the older one, so that "the first created"
		// and "the narrowest" give different answers.
		for i, l := range []store.IPLicense{{CIDR: "127.0.0.0/8", Feed: "wide"}, {CIDR: "127.0.0.1/32", Feed: "narrow"}} {
			l.Created = p.now.Add(time.Duration(i) * time.Minute)
			if err := p.st.AddIPLicense(ctx, &l); err != nil {
				t.Fatal(err)
			}
		}
		h := p.newHost(t)
		idx, _, err := h.a.FetchIndex(ctx, h.c, agent.UpdateOptions{})
		if err != nil {
			t.Fatalf("fetch index under the IP licenses: %v", err)
		}
		if idx.Feed != "narrow" {
			t.Errorf("signed index feed = %q, want narrow", idx.Feed)
		}
		if err := h.c.CheckIn(ctx, apitype.CheckIn{Hostname: "lab1", Release: fakekernel.Release, BuildID: fakekernel.BuildID, Result: "ok"}); err != nil {
			t.Fatalf("check-in: %v", err)
		}
		for _, feed := range []string{"narrow", "wide"} {
			want := map[string]int{"narrow": 1, "wide": 0}[feed]
			list, err := p.st.Servers(ctx, store.ServerFilter{Feed: feed})
			if err != nil || len(list) != want {
				t.Errorf("store: servers in feed %s = %d (%v), want %d", feed, len(list), err, want)
			}
		}
		_, m := getText(t, p.http.URL+"/metrics")
		re := regexp.MustCompile(`(?m)^kcare_servers\{feed="([^"]*)",key_id="",note="",state="[a-z]+"\} 1$`)
		got := re.FindAllStringSubmatch(m, -1)
		if len(got) != 1 || got[0][1] != "narrow" {
			t.Errorf("metrics: IP-licensed server counted in %v, want feed narrow once", got)
		}
	})
}
