package store

import "context"

// EnabledPatchsets is the audit log's view of a feed: the names of the
// patchsets enabled in it.
func EnabledPatchsets(ctx context.Context, st Store, feed string) (map[string]any, error) {
	list, err := st.FeedPatchsets(ctx, feed)
	if err != nil {
		return nil, err
	}
	on := []string{}
	for _, p := range list {
		if p.Enabled {
			on = append(on, p.Patchset)
		}
	}
	return map[string]any{"feed": feed, "enabled": on}, nil
}
