package fleet

import (
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/store"
)

func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	recent := now.Add(-time.Hour)
	tests := []struct {
		name    string
		s       store.Server
		known   bool
		allowed int
		want    State
	}{
		{"up_to_date", store.Server{Level: 3, LastCheckin: recent}, true, 3, UpToDate},
		{"ahead_of_allowed", store.Server{Level: 4, LastCheckin: recent}, true, 3, UpToDate},
		{"out_of_date", store.Server{Level: 2, LastCheckin: recent}, true, 3, OutOfDate},
		{"never_patched", store.Server{Level: 0, LastCheckin: recent}, true, 1, OutOfDate},
		{"unsupported", store.Server{Level: 0, LastCheckin: recent}, false, 0, Unsupported},
		{"inactive", store.Server{Level: 3, LastCheckin: now.Add(-49 * time.Hour)}, true, 3, Inactive},
		{"never_checked_in", store.Server{}, true, 3, Inactive},
		{"just_inside_age", store.Server{Level: 1, LastCheckin: now.Add(-48 * time.Hour)}, true, 1, UpToDate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(&tt.s, now, DefaultInactiveAge, tt.known, tt.allowed); got != tt.want {
				t.Errorf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}
