package core

import (
	"context"
	"fmt"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/portal/store"
)

// checkSticky refuses a sticky date STICKY_PATCH would not take.
func checkSticky(sticky string) error {
	if sticky == "" {
		return nil
	}
	if _, err := config.ParseStickyDate(sticky); err != nil {
		return invalid("sticky date: %v", err)
	}
	return nil
}

// keyAudit is a key as an audit entry's before or after shows it: its
// settings, with the key masked. nil for nil.
func keyAudit(k *store.Key) any {
	if k == nil {
		return nil
	}
	ranges := k.IPRanges
	if ranges == nil {
		ranges = []string{}
	}
	return map[string]any{"key": store.MaskKey(k.Key), "note": k.Note, "limit": k.Limit, "feed": k.Feed, "sticky": k.Sticky, "ip_ranges": ranges}
}

// AddKey adds an activation key: a random one when k.Key is empty, in
// the main feed when k.Feed is.
func (c *Core) AddKey(ctx context.Context, a Actor, k *store.Key) error {
	if k.Key == "" {
		k.Key = NewKey()
	}
	if k.Feed == "" {
		k.Feed = apitype.MainFeed
	}
	if err := checkSticky(k.Sticky); err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	k.Created = c.Now()
	if err := c.st.AddKey(ctx, k); err != nil {
		return err
	}
	c.audit(ctx, a, "key.add", k.Key, fmt.Sprintf("feed=%s limit=%d", k.Feed, k.Limit), nil, keyAudit(k))
	return nil
}

// EditKey changes the key named key as edit says (its note, limit, feed,
// sticky date and IP ranges; the key itself and its creation stay) and
// returns it as saved.
func (c *Core) EditKey(ctx context.Context, a Actor, key string, edit func(k *store.Key)) (*store.Key, error) {
	before, err := c.st.Key(ctx, key)
	if err != nil {
		return nil, err
	}
	k := *before
	k.IPRanges = append([]string(nil), before.IPRanges...)
	edit(&k)
	k.Key, k.Created = before.Key, before.Created
	if k.Feed == "" {
		k.Feed = apitype.MainFeed
	}
	if err := checkSticky(k.Sticky); err != nil {
		return nil, fmt.Errorf("edit key: %w", err)
	}
	if err := c.st.UpdateKey(ctx, &k); err != nil {
		return nil, err
	}
	c.audit(ctx, a, "key.edit", key, fmt.Sprintf("feed=%s limit=%d sticky=%s", k.Feed, k.Limit, k.Sticky), keyAudit(before), keyAudit(&k))
	return &k, nil
}

// DeleteKey deletes a key and unregisters its servers.
func (c *Core) DeleteKey(ctx context.Context, a Actor, key string) error {
	before, err := c.st.Key(ctx, key)
	if err != nil {
		return err
	}
	if err := c.st.DeleteKey(ctx, key); err != nil {
		return err
	}
	c.audit(ctx, a, "key.delete", key, "", keyAudit(before), nil)
	return nil
}

// Key returns a key with its count of registered servers.
func (c *Core) Key(ctx context.Context, key string) (*store.Key, error) { return c.st.Key(ctx, key) }

// Keys lists the keys with their server counts, in order of creation.
func (c *Core) Keys(ctx context.Context) ([]store.Key, error) { return c.st.Keys(ctx) }

// KeyList lists the keys in order of creation, without counting their
// servers: for choosing a key.
func (c *Core) KeyList(ctx context.Context) ([]store.Key, error) { return c.st.KeyList(ctx) }

// KeyExists reports whether key is an activation key, without counting
// its servers.
func (c *Core) KeyExists(ctx context.Context, key string) (bool, error) {
	_, err := c.st.KeySettings(ctx, key)
	if err == nil {
		return true, nil
	}
	if isNotFound(err) {
		return false, nil
	}
	return false, err
}
