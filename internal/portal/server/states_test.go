package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/portal/store"
)

// TestStatesAgree: with a sticky key and a delayed feed, every face
// tells one story of which servers are out of date: the state column
// (the core's classification, as the web UI and the metrics show it), the
// store's state filters (the servers page's filter and the overview's
// counts), the REST API's is_updated, and the Nagios API.
func TestStatesAgree(t *testing.T) {
	forKinds(t, func(t *testing.T, kind string) {
		p := newPortal(t, kind)
		ctx := context.Background()
		// Level 1 three days ago, level 2 thirty hours ago, level 3 two
		// hours ago.
		for lv, age := range map[int]time.Duration{1: 72 * time.Hour, 2: 30 * time.Hour, 3: 2 * time.Hour} {
			p.mustPublish(t, lv, p.now.Add(-age))
		}
		if err := p.st.AddFeed(ctx, &store.Feed{Name: "slow", DeployAfter: 24 * time.Hour, Created: p.now}); err != nil {
			t.Fatal(err)
		}
		sets, _ := p.st.Patchsets(ctx)
		var names []string
		for _, ps := range sets {
			names = append(names, ps.Name)
		}
		if err := p.st.SetPatchsets(ctx, "slow", names, true); err != nil {
			t.Fatal(err)
		}
		// The sticky day ends before level 2's release: level 1 is the
		// newest allowed. The slow feed's day of delay allows level 2.
		sticky := p.now.Add(-72 * time.Hour).Format("2006-01-02")
		p.addKey(t, store.Key{Key: "k-plain"})
		p.addKey(t, store.Key{Key: "k-sticky", Sticky: sticky})
		p.addKey(t, store.Key{Key: "k-delayed", Feed: "slow"})
		for i, key := range []string{"k-plain", "k-sticky", "k-delayed"} {
			for lv := 1; lv <= 3; lv++ {
				id := fmt.Sprintf("%s-l%d", key, lv)
				srv := &store.Server{ID: id, Hostname: id, IP: fmt.Sprintf("192.0.2.%d", 10*i+lv), Registered: p.now}
				if err := p.st.Register(ctx, key, srv); err != nil {
					t.Fatal(err)
				}
				ci := store.Report{Hostname: id, IP: srv.IP, Release: fakekernel.Release, BuildID: fakekernel.BuildID, Level: lv, At: p.now}
				if err := p.st.CheckIn(ctx, id, ci); err != nil {
					t.Fatal(err)
				}
			}
		}
		wantOut := []string{"k-delayed-l1", "k-plain-l1", "k-plain-l2"}

		c := p.srv.Core()
		all, err := c.Servers(ctx, store.ServerFilter{})
		if err != nil {
			t.Fatal(err)
		}
		cs, err := c.Classify(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		byState := map[apitype.ServerState][]string{}
		for _, s := range cs {
			byState[s.State] = append(byState[s.State], s.ID)
		}
		for st := range byState {
			sort.Strings(byState[st])
		}
		if !slices.Equal(byState[apitype.StateOutOfDate], wantOut) {
			t.Errorf("state column: out of date %v, want %v", byState[apitype.StateOutOfDate], wantOut)
		}
		for _, st := range apitype.ServerStates {
			var f store.ServerFilter
			if err := c.StateFilter(&f, st); err != nil {
				t.Fatal(err)
			}
			list, err := c.Servers(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got := serverIDs(list)
			if !slices.Equal(got, byState[st]) {
				t.Errorf("state filter %s: %v, state column %v", st, got, byState[st])
			}
		}
		stats, err := c.Stats(ctx)
		if err != nil || stats.OutOfDate != len(wantOut) || stats.UpToDate != 9-len(wantOut) {
			t.Errorf("overview counts %+v, %v; want %d out of date, %d up to date", stats, err, len(wantOut), 9-len(wantOut))
		}
		resp, body := get(t, p.http.URL+"/admin/api/servers?is_updated=false&limit=100", map[string]string{"X-Api-Key": p.admin})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("REST: %d %s", resp.StatusCode, body)
		}
		rest := jsonFields(body, "id")
		sort.Strings(rest)
		if !slices.Equal(rest, wantOut) {
			t.Errorf("REST is_updated=false: %v, want %v", rest, wantOut)
		}
		var nagios []string
		for _, key := range []string{"k-plain", "k-sticky", "k-delayed"} {
			_, text := getText(t, p.http.URL+"/api/kcare/nagios/"+key)
			for _, line := range strings.Split(text, "\n") {
				if host, ok := strings.CutSuffix(line, " is OUTOFDATE"); ok {
					nagios = append(nagios, strings.Fields(host)[0])
				}
			}
		}
		sort.Strings(nagios)
		if !slices.Equal(nagios, wantOut) {
			t.Errorf("Nagios: out of date %v, want %v", nagios, wantOut)
		}
	})
}

func serverIDs(list []store.Server) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.ID)
	}
	sort.Strings(out)
	return out
}

func jsonFields(body, name string) []string {
	var out []string
	for _, part := range strings.Split(body, `"`+name+`":"`)[1:] {
		out = append(out, part[:strings.IndexByte(part, '"')])
	}
	return out
}
