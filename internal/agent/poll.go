package agent

import (
	"context"
	"fmt"

	"github.com/kcare/kcare/internal/index"
	"github.com/kcare/kcare/internal/kernel"
)

// Poller is a portal an agent polls between its runs
// (portalclient.Client).
type Poller interface {
	Portal
	// IndexIfChanged asks for the index on condition that it is not the
	// one tagged tag: no body then.
	IndexIfChanged(ctx context.Context, r index.Request, tag string) (body, sig []byte, newTag string, err error)
}

// PollResult is what a poll found.
type PollResult struct {
	// Changed: the portal's answer was not the one the last poll had.
	Changed bool
	// Act says why an update should run now, before the next run of the
	// timer: an urgent level above the one in effect, or the portal's
	// order to go back from it. "" when there is no hurry.
	Act string
}

// Poll asks the portal, cheaply, whether this kernel's index changed
// since the last poll (a conditional request the portal answers from
// memory), and when it did, verifies it as an update would and says
// whether it asks for an update now. It changes nothing in the kernel and
// checks nothing in; another kcarectl under way makes it fail with
// ErrLocked at once.
func (a *Agent) Poll(ctx context.Context, p Poller, o UpdateOptions) (PollResult, error) {
	unlock, err := a.tryLock()
	if err != nil {
		return PollResult{}, err
	}
	defer unlock()
	id, err := kernel.Read(a.root())
	if err != nil {
		return PollResult{}, err
	}
	keys, err := a.keyring()
	if err != nil {
		return PollResult{}, err
	}
	last, err := a.readIndexState()
	if err != nil {
		return PollResult{}, err
	}
	body, sig, tag, err := p.IndexIfChanged(ctx, o.request(id.BuildID), last.ETag)
	if err != nil {
		return PollResult{}, fmt.Errorf("poll index: %w", err)
	}
	if body == nil {
		return PollResult{}, nil
	}
	idx, err := a.acceptIndex(body, sig, id, keys, o, p.Server(), tag)
	if err != nil {
		return PollResult{}, err
	}
	res := PollResult{Changed: true}
	info, err := a.Info()
	if err != nil {
		return res, err
	}
	cur := 0
	if info.State == "applied" {
		cur = info.Level
	}
	switch l := idx.Level; {
	case idx.Rollback != nil && idx.Rollback.From == cur:
		res.Act = fmt.Sprintf("the portal orders level %d back to level %d", cur, idx.Rollback.Level)
	case l != nil && l.Urgent && l.Level > cur:
		res.Act = fmt.Sprintf("urgent level %d is out", l.Level)
	}
	return res, nil
}
