package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/index"
)

// TestUpdateWindow: an update that runs by itself applies a new level
// only inside the maintenance window the index names, on the agent's
// clock; one by hand applies it at once.
func TestUpdateWindow(t *testing.T) {
	now := testNow()
	tests := []struct {
		name       string
		window     *index.Window
		scheduled  bool
		applied    bool
		wantReason string
	}{
		{"scheduled_before_the_window", &index.Window{Start: now.Add(time.Hour), End: now.Add(3 * time.Hour)}, true, false,
			"level 1 waits for the maintenance window, 2026-11-27T11:00:00Z to 2026-11-27T13:00:00Z (kcarectl --update applies it now): nothing to do"},
		{"scheduled_at_its_end", &index.Window{Start: now.Add(-2 * time.Hour), End: now}, true, false,
			"level 1 waits for the maintenance window, 2026-11-27T08:00:00Z to 2026-11-27T10:00:00Z (kcarectl --update applies it now): nothing to do"},
		{"scheduled_inside", &index.Window{Start: now, End: now.Add(time.Hour)}, true, true, ""},
		{"scheduled_no_window", nil, true, true, ""},
		{"by_hand_before_the_window", &index.Window{Start: now.Add(time.Hour), End: now.Add(3 * time.Hour)}, false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, t.TempDir(), true)
			e.a.Keys = keyring(t, publisher, portalKey)
			p := &fakePortal{}
			data, sig := pack(t, publisher, manifest(1))
			p.serve(t, portalKey, func(i *index.Index) { i.Window = tt.window }, data, sig)
			_, err := e.a.Update(context.Background(), p, UpdateOptions{Scheduled: tt.scheduled})
			if tt.applied {
				if err != nil || e.info(t).Level != 1 {
					t.Errorf("Update = %v, level %d; want level 1 applied", err, e.info(t).Level)
				}
				return
			}
			if !errors.Is(err, ErrNothingToDo) || err.Error() != tt.wantReason {
				t.Errorf("Update = %v, want %q", err, tt.wantReason)
			}
			if e.k.Loads() != 0 || p.downloads != 0 {
				t.Errorf("%d loads, %d downloads outside the window; want none", e.k.Loads(), p.downloads)
			}
		})
	}
}
