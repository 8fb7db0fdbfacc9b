// Package mirror brings patch levels from one portal to another: a
// mirror's sync from its upstream over HTTP, and export/import archives
// carried into air-gapped sites. Every bundle's publisher signature is
// checked before anything is stored; indexes are always signed by the
// receiving portal's own key.
package mirror

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// FromStore is a stored level as one portal hands it to another.
func FromStore(l store.Level) apitype.MirrorLevel {
	return apitype.MirrorLevel{
		BuildID: l.BuildID, KernelID: l.KernelID, Release: l.Release, Level: l.Level, Patchset: l.Patchset,
		Channel: l.Channel, Digest: l.Digest, Size: l.Size, Signature: string(l.Signature),
		EffectiveRelease: l.EffectiveRelease, CVEs: l.CVEs, Released: l.Released, Published: l.Published,
	}
}

// ErrRefused is a level whose bundle fails verification: it is never
// stored.
var ErrRefused = errors.New("level refused")

// Check verifies the bundle of a level l announced: size and digest as announced, the
// publisher's signature by a key in publishers, and the manifest naming
// the same kernel and level. It returns the level to store.
func Check(l apitype.MirrorLevel, data []byte, publishers *trust.Keyring, now time.Time) (*store.Level, error) {
	what := fmt.Sprintf("level %d of %s (%s)", l.Level, l.Release, l.BuildID)
	if int64(len(data)) != l.Size {
		return nil, fmt.Errorf("%w: %s: bundle is %d bytes, announced %d", ErrRefused, what, len(data), l.Size)
	}
	if d := bundle.Digest(data); d != l.Digest {
		return nil, fmt.Errorf("%w: %s: bundle sha256 %s, announced %s", ErrRefused, what, d, l.Digest)
	}
	b, err := bundle.Open(data, []byte(l.Signature), publishers)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRefused, what, err)
	}
	m := b.Manifest
	if m.Kernel.BuildID != l.BuildID || m.Level != l.Level || m.Kernel.Release != l.Release {
		return nil, fmt.Errorf("%w: %s: the bundle's manifest says level %d of %s (%s)", ErrRefused, what, m.Level, m.Kernel.Release, m.Kernel.BuildID)
	}
	mj, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	channel := l.Channel
	if channel == "" {
		channel = apitype.ChannelStable
	}
	return &store.Level{
		BuildID: l.BuildID, KernelID: m.Kernel.KernelID, Release: l.Release, Level: l.Level, Patchset: l.Patchset,
		Channel: channel, Digest: l.Digest, Size: l.Size, Signature: []byte(l.Signature), Manifest: mj,
		EffectiveRelease: m.EffectiveReleaseOr(), CVEs: l.CVEs, Released: l.Released, Published: now,
	}, nil
}
