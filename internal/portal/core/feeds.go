package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// feedAudit is a feed as an audit entry's before or after shows it.
func feedAudit(f *store.Feed) any {
	if f == nil {
		return nil
	}
	return map[string]any{"name": f.Name, "channel": f.Channel, "deploy_after_hours": int(f.DeployAfter / time.Hour), "auto": f.Auto}
}

// AddFeed adds a feed with no patchsets enabled; channel "" is stable.
func (c *Core) AddFeed(ctx context.Context, a Actor, f *store.Feed) error {
	if f.Channel == "" {
		f.Channel = apitype.ChannelStable
	}
	f.Created = c.Now()
	if err := c.st.AddFeed(ctx, f); err != nil {
		return err
	}
	c.audit(ctx, a, "feed.add", f.Name, fmt.Sprintf("channel=%s deploy_after=%dh auto=%v", f.Channel, int(f.DeployAfter/time.Hour), f.Auto), nil, feedAudit(f))
	return nil
}

// EditFeed changes the feed named name as edit says (its channel, delay
// and Auto) and returns it as saved.
func (c *Core) EditFeed(ctx context.Context, a Actor, name string, edit func(f *store.Feed)) (*store.Feed, error) {
	before, err := c.st.Feed(ctx, name)
	if err != nil {
		return nil, err
	}
	f := *before
	edit(&f)
	f.Name, f.Created = before.Name, before.Created
	if err := c.st.UpdateFeed(ctx, &f); err != nil {
		return nil, err
	}
	c.audit(ctx, a, "feed.edit", name, fmt.Sprintf("channel=%s deploy_after=%dh auto=%v", f.Channel, int(f.DeployAfter/time.Hour), f.Auto), feedAudit(before), feedAudit(&f))
	return &f, nil
}

// DeleteFeed deletes a feed; its keys and IP licenses move to main, which
// cannot be deleted.
func (c *Core) DeleteFeed(ctx context.Context, a Actor, name string) error {
	before, err := c.st.Feed(ctx, name)
	if err != nil {
		return err
	}
	if err := c.st.DeleteFeed(ctx, name); err != nil {
		return err
	}
	c.audit(ctx, a, "feed.delete", name, "keys moved to main", feedAudit(before), nil)
	return nil
}

// Feed returns a feed.
func (c *Core) Feed(ctx context.Context, name string) (*store.Feed, error) {
	return c.st.Feed(ctx, name)
}

// Feeds lists the feeds, main first, then by name.
func (c *Core) Feeds(ctx context.Context) ([]store.Feed, error) { return c.st.Feeds(ctx) }

// FeedPatchsets lists every patchset with its state in feed, oldest first.
func (c *Core) FeedPatchsets(ctx context.Context, feed string) ([]store.FeedPatchset, error) {
	return c.st.FeedPatchsets(ctx, feed)
}

// Patchsets lists every patchset, oldest first.
func (c *Core) Patchsets(ctx context.Context) ([]store.Patchset, error) { return c.st.Patchsets(ctx) }

// enabledAudit is the audit log's view of a feed: the names of the
// patchsets enabled in it.
func (c *Core) enabledAudit(ctx context.Context, feed string) any {
	list, err := c.st.FeedPatchsets(ctx, feed)
	if err != nil {
		return nil
	}
	on := []string{}
	for _, p := range list {
		if p.Enabled {
			on = append(on, p.Patchset)
		}
	}
	return map[string]any{"feed": feed, "enabled": on}
}

// ManagePatchsetsIn applies an ePortal patchset action in each of feeds
// (none: main), or in none: a feed or patchset that does not exist, or
// an unknown action, refuses the whole request before anything changes.
// It returns the patchsets it changed in each feed.
func (c *Core) ManagePatchsetsIn(ctx context.Context, a Actor, feeds []string, patchset string, action apitype.PatchsetAction) (map[string][]string, error) {
	if len(feeds) == 0 {
		feeds = []string{apitype.MainFeed}
	}
	if !action.Valid() {
		return nil, fmt.Errorf("%w: action %q: enable, disable, enable-upto or undeploy-downto", store.ErrInvalidInput, action)
	}
	for _, feed := range feeds {
		if _, err := c.patchsetPlan(ctx, feed, patchset, action); err != nil {
			return nil, err
		}
	}
	out := map[string][]string{}
	for _, feed := range feeds {
		names, err := c.ManagePatchsets(ctx, a, feed, patchset, action)
		if err != nil {
			return out, err
		}
		out[feed] = names
	}
	return out, nil
}

// patchsetPlan returns the patchsets action changes in feed.
func (c *Core) patchsetPlan(ctx context.Context, feed, patchset string, action apitype.PatchsetAction) ([]string, error) {
	list, err := c.st.FeedPatchsets(ctx, feed)
	if err != nil {
		return nil, err
	}
	if _, err := c.st.Feed(ctx, feed); err != nil {
		return nil, fmt.Errorf("feed %s: %w", feed, err)
	}
	pos := -1
	for i, p := range list {
		if p.Patchset == patchset {
			pos = i
		}
	}
	if pos < 0 {
		return nil, fmt.Errorf("patchset %s in feed %s: %w", patchset, feed, store.ErrNotFound)
	}
	var names []string
	switch action {
	case apitype.ActionEnable, apitype.ActionDisable:
		names = []string{patchset}
	case apitype.ActionEnableUpTo:
		for _, p := range list[:pos+1] {
			names = append(names, p.Patchset)
		}
	case apitype.ActionUndeployDownTo:
		for _, p := range list[pos:] {
			names = append(names, p.Patchset)
		}
	default:
		return nil, fmt.Errorf("%w: action %q: enable, disable, enable-upto or undeploy-downto", store.ErrInvalidInput, action)
	}
	return names, nil
}

// ManagePatchsets applies an ePortal patchset action in a feed: enable or
// disable one patchset, enable-upto (it and every older one), or
// undeploy-downto (disable it and every newer one). It returns the
// patchsets it changed.
func (c *Core) ManagePatchsets(ctx context.Context, a Actor, feed, patchset string, action apitype.PatchsetAction) ([]string, error) {
	if feed == "" {
		feed = apitype.MainFeed
	}
	names, err := c.patchsetPlan(ctx, feed, patchset, action)
	if err != nil {
		return nil, err
	}
	enable := action == apitype.ActionEnable || action == apitype.ActionEnableUpTo
	before := c.enabledAudit(ctx, feed)
	if err := c.st.SetPatchsets(ctx, feed, names, enable); err != nil {
		return nil, err
	}
	c.beginRollouts(ctx)
	c.audit(ctx, a, "patchset."+string(action), feed+"/"+patchset, strings.Join(names, ","), before, c.enabledAudit(ctx, feed))
	return names, nil
}

// LevelState is a level's state in a feed, as the feed's page shows it.
type LevelState string

// The states of a level in a feed.
const (
	LevelEnabled     LevelState = "enabled"      // its patchset is enabled: servers of the feed may get it
	LevelDisabled    LevelState = "disabled"     // its patchset was enabled and is not any more
	LevelNotDeployed LevelState = "not deployed" // its patchset was never enabled or disabled here
	LevelTest        LevelState = "test"         // a test-channel level, which this feed's channel does not show
)

// KernelLevel is one level of a kernel, with its state in a feed ("" when
// no feed is asked about). The level is a named field, not embedded: its
// own field Level (the number) would be hidden behind the struct.
type KernelLevel struct {
	Level store.Level
	State LevelState
}

// KernelLevels is a kernel the portal has levels for, with its levels,
// newest first.
type KernelLevels struct {
	store.Kernel
	Levels []KernelLevel
}

// Kernels lists every kernel with its levels, newest first, and each
// level's state in feed (nil: no states).
func (c *Core) Kernels(ctx context.Context, feed *store.Feed) ([]KernelLevels, error) {
	kernels, err := c.st.Kernels(ctx)
	if err != nil {
		return nil, err
	}
	states := map[string]store.FeedPatchset{}
	if feed != nil {
		fps, err := c.st.FeedPatchsets(ctx, feed.Name)
		if err != nil {
			return nil, err
		}
		for _, p := range fps {
			states[p.Patchset] = p
		}
	}
	out := make([]KernelLevels, len(kernels))
	for i, k := range kernels {
		levels, err := c.st.Levels(ctx, k.BuildID)
		if err != nil {
			return nil, err
		}
		out[i].Kernel = k
		for j := len(levels) - 1; j >= 0; j-- {
			row := KernelLevel{Level: levels[j]}
			if feed != nil {
				row.State = levelState(feed, row.Level.Channel, states[row.Level.Patchset])
			}
			out[i].Levels = append(out[i].Levels, row)
		}
	}
	return out, nil
}

// levelState is the state in feed of a level on channel ch whose
// patchset is p there.
func levelState(feed *store.Feed, ch apitype.Channel, p store.FeedPatchset) LevelState {
	switch {
	case !feed.Channel.Admits(ch):
		return LevelTest
	case !p.Deployed:
		return LevelNotDeployed
	case p.Enabled:
		return LevelEnabled
	}
	return LevelDisabled
}
