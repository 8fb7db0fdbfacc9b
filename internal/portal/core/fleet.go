package core

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/store"
)

// evaluator classifies servers at the portal's now.
func (c *Core) evaluator() *fleet.Evaluator {
	return &fleet.Evaluator{Store: c.st, Now: c.Now(), InactiveAge: c.cfg.InactiveAge}
}

// Classify returns each server with its state and the level it is
// allowed.
func (c *Core) Classify(ctx context.Context, servers []store.Server) ([]fleet.Classified, error) {
	return c.evaluator().Classify(ctx, servers)
}

// StateFilter sets f to select the servers in state, so that a list
// filters in the store: the same states Classify gives. "" selects all.
func (c *Core) StateFilter(f *store.ServerFilter, state apitype.ServerState) error {
	yes, no := true, false
	f.Now = c.Now()
	age := c.cfg.InactiveAge
	switch state {
	case "":
	case apitype.StateInactive:
		f.CheckinAge = age
	case apitype.StateUnsupported:
		f.ActiveWithin, f.Unsupported = age, &yes
	case apitype.StateOutOfDate:
		f.ActiveWithin, f.IsUpdated = age, &no
	case apitype.StateUpToDate:
		f.ActiveWithin, f.IsUpdated, f.Unsupported = age, &yes, &no
	default:
		return invalid("state %q: one of uptodate, outofdate, unsupported, inactive", state)
	}
	return nil
}

// Stats counts the servers by state now.
func (c *Core) Stats(ctx context.Context) (store.FleetStats, error) {
	return c.st.Stats(ctx, c.Now(), c.cfg.InactiveAge)
}

// TopKernels returns the most common kernel releases and effective
// releases, limit of each, most common first.
func (c *Core) TopKernels(ctx context.Context, limit int) (kernels, effective []store.Count, err error) {
	return c.st.TopKernels(ctx, limit)
}

// ErrNoServers is a Nagios question about no servers: a key or reseller
// with none, which KernelCare answers with 404.
var ErrNoServers = fmt.Errorf("no servers: %w", store.ErrNotFound)

// KeyServers returns the classified servers of an activation key, for
// KernelCare's Nagios API. An unknown key is store.ErrInvalidKey; a key
// with no servers ErrNoServers.
func (c *Core) KeyServers(ctx context.Context, key string) ([]fleet.Classified, error) {
	ok, err := c.KeyExists(ctx, key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, store.ErrInvalidKey
	}
	list, err := c.st.Servers(ctx, store.ServerFilter{Key: key})
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, ErrNoServers
	}
	return c.Classify(ctx, list)
}

// KeyServerLevels lists [ip, kernel_id, level] of every server of key,
// ePortal's per-key listing; an unknown key has none (and is
// store.ErrInvalidKey, for the caller's throttle).
func (c *Core) KeyServerLevels(ctx context.Context, key string) ([]apitype.ServerLevel, error) {
	ok, err := c.KeyExists(ctx, key)
	if err != nil {
		return nil, err
	}
	list, err := c.st.Servers(ctx, store.ServerFilter{Key: key})
	if err != nil {
		return nil, err
	}
	out := make([]apitype.ServerLevel, len(list))
	for i, srv := range list {
		out[i] = apitype.ServerLevel{IP: srv.IP, KernelID: srv.KernelID, Level: srv.Level}
	}
	if !ok {
		return out, store.ErrInvalidKey
	}
	return out, nil
}

// Errors of the reseller Nagios API, each with KernelCare's answer.
var (
	ErrNoReseller    = fmt.Errorf("reseller not found: %w", store.ErrNotFound)
	ErrResellerToken = fmt.Errorf("registration token not found for reseller: %w", store.ErrNotFound)
)

// ResellerServers returns the classified servers whose address is in a
// reseller's IP ranges, for the reseller Nagios API, authenticated by the
// reseller's token: ErrNoReseller, ErrResellerToken, or ErrNoServers.
func (c *Core) ResellerServers(ctx context.Context, login, token string) ([]fleet.Classified, error) {
	rs, err := c.resellers()
	if err != nil {
		return nil, ErrNoReseller
	}
	res, err := rs.Reseller(ctx, login)
	if isNotFound(err) {
		return nil, ErrNoReseller
	}
	if err != nil {
		return nil, err
	}
	if len(res.TokenHash) == 0 || !auth.SecretMatches(res.TokenHash, token) {
		return nil, ErrResellerToken
	}
	var ranges []netip.Prefix
	for _, cidr := range res.CIDRs {
		if p, err := netip.ParsePrefix(cidr); err == nil {
			ranges = append(ranges, p)
		}
	}
	all, err := c.st.Servers(ctx, store.ServerFilter{})
	if err != nil {
		return nil, err
	}
	var mine []store.Server
	for _, srv := range all {
		a, err := netip.ParseAddr(srv.IP)
		if err != nil {
			continue
		}
		for _, p := range ranges {
			if p.Contains(a.Unmap()) {
				mine = append(mine, srv)
				break
			}
		}
	}
	if len(mine) == 0 {
		return nil, ErrNoServers
	}
	return c.Classify(ctx, mine)
}

// FleetCount is how many servers of one key (or of no key, "") and feed
// are in one state.
type FleetCount struct {
	Key   string // "" for IP-licensed servers
	Note  string // the key's note
	Feed  string
	State apitype.ServerState
	N     int
}

// FleetCounts counts every server by key, feed and state, with a zero
// for each state of every key: what the metrics report. An IP-licensed
// server counts in the feed its license gave it at its last check-in.
func (c *Core) FleetCounts(ctx context.Context) ([]FleetCount, error) {
	keys, err := c.st.Keys(ctx)
	if err != nil {
		return nil, err
	}
	type group struct{ key, note, feed string }
	groupOf := map[string]group{"": {feed: apitype.MainFeed}}
	for _, k := range keys {
		groupOf[k.Key] = group{k.Key, k.Note, k.Feed}
	}
	list, err := c.st.Servers(ctx, store.ServerFilter{})
	if err != nil {
		return nil, err
	}
	cs, err := c.Classify(ctx, list)
	if err != nil {
		return nil, err
	}
	type label struct {
		group
		state apitype.ServerState
	}
	counts := map[label]int{}
	var order []label
	add := func(l label, n int) {
		if _, ok := counts[l]; !ok {
			order = append(order, l)
		}
		counts[l] += n
	}
	for _, k := range keys {
		for _, st := range apitype.ServerStates {
			add(label{groupOf[k.Key], st}, 0)
		}
	}
	for _, s := range cs {
		g, ok := groupOf[s.Key]
		if !ok {
			// A server whose key went away between the two reads.
			g = group{key: s.Key, feed: apitype.MainFeed}
		}
		if s.Key == "" && s.LicenseFeed != "" {
			g.feed = s.LicenseFeed
		}
		add(label{g, s.State}, 1)
	}
	out := make([]FleetCount, len(order))
	for i, l := range order {
		out[i] = FleetCount{Key: l.key, Note: l.note, Feed: l.feed, State: l.state, N: counts[l]}
	}
	return out, nil
}
