package window

import (
	"errors"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"  Sat   02:00-05:00 ", "Sat 02:00-05:00"},
		{"Mon-Fri 22:00-02:00 Europe/Berlin; Sat,Sun 00:00-24:00 Europe/Berlin", "Mon-Fri 22:00-02:00 Europe/Berlin; Sat,Sun 00:00-24:00 Europe/Berlin"},
		{"* 03:00-04:00 America/New_York", "* 03:00-04:00 America/New_York"},
		{"fri-mon 23:30-00:30", "fri-mon 23:30-00:30"},
	} {
		s, err := Parse(tt.in)
		if err != nil || s.String() != tt.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tt.in, s, err, tt.want)
		}
	}
	for _, in := range []string{
		"Sat", "Sat 02:00", "Someday 02:00-03:00", "Sat 2:00-03:00", "Sat 02:00-03:60", "Sat 24:00-01:00",
		"Sat 02:00-02:00", "Sat 02:00-25:00", "Sat 02:00-03:00 Mars/Olympus", "Sat 02:00-03:00 Local",
		"Sat 02:00-03:00 UTC extra", "Sat 02:00-03:00;", "Mon-Xyz 01:00-02:00",
	} {
		if s, err := Parse(in); !errors.Is(err, ErrBadSpec) {
			t.Errorf("Parse(%q) = %q, %v; want ErrBadSpec", in, s, err)
		}
	}
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestNext: the window now is in, or the next; in the window's own time
// zone, across midnight, across a daylight saving change, and merged
// when windows adjoin.
func TestNext(t *testing.T) {
	tests := []struct {
		name, spec, now string
		start, end      string
	}{
		// 2026-11-27 is a Friday.
		{"inside", "Fri 09:00-11:00", "2026-11-27T10:00:00Z", "2026-11-27T09:00:00Z", "2026-11-27T11:00:00Z"},
		{"at_the_start", "Fri 10:00-11:00", "2026-11-27T10:00:00Z", "2026-11-27T10:00:00Z", "2026-11-27T11:00:00Z"},
		{"at_the_end_is_outside", "Fri 09:00-10:00", "2026-11-27T10:00:00Z", "2026-12-04T09:00:00Z", "2026-12-04T10:00:00Z"},
		{"before", "Sat,Sun 02:00-05:00", "2026-11-27T10:00:00Z", "2026-11-28T02:00:00Z", "2026-11-28T05:00:00Z"},
		{"weekend_days_adjoin", "Sat,Sun 00:00-24:00", "2026-11-27T10:00:00Z", "2026-11-28T00:00:00Z", "2026-11-30T00:00:00Z"},
		{"across_midnight_inside", "Thu 22:00-02:00", "2026-11-27T01:00:00Z", "2026-11-26T22:00:00Z", "2026-11-27T02:00:00Z"},
		{"time_zone", "Mon-Fri 22:00-02:00 Europe/Berlin", "2026-11-27T10:00:00Z", "2026-11-27T21:00:00Z", "2026-11-28T01:00:00Z"},
		{"week_wraps", "Sun-Mon 01:00-02:00", "2026-11-27T10:00:00Z", "2026-11-29T01:00:00Z", "2026-11-29T02:00:00Z"},
		// Europe/Berlin leaves summer time on 2026-10-25 at 03:00 CEST:
		// 01:00-04:00 local is 23:00Z to 03:00Z, four hours.
		{"daylight_saving_ends", "Sun 01:00-04:00 Europe/Berlin", "2026-10-24T12:00:00Z", "2026-10-24T23:00:00Z", "2026-10-25T03:00:00Z"},
		// New York starts summer time on 2026-03-08 at 02:00: 01:00-04:00
		// local is 06:00Z to 08:00Z, two hours.
		{"daylight_saving_starts", "Sun 01:00-04:00 America/New_York", "2026-03-07T12:00:00Z", "2026-03-08T06:00:00Z", "2026-03-08T08:00:00Z"},
		{"two_windows_the_sooner", "Sat 02:00-03:00; Fri 20:00-21:00", "2026-11-27T10:00:00Z", "2026-11-27T20:00:00Z", "2026-11-27T21:00:00Z"},
		{"overlapping_merge", "Fri 09:00-12:00; Fri 11:00-13:00", "2026-11-27T10:00:00Z", "2026-11-27T09:00:00Z", "2026-11-27T13:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			start, end := s.Next(utc(tt.now))
			if !start.Equal(utc(tt.start)) || !end.Equal(utc(tt.end)) {
				t.Errorf("Next(%s) = %s to %s, want %s to %s", tt.now, start.Format(time.RFC3339), end.Format(time.RFC3339), tt.start, tt.end)
			}
		})
	}
	var none Spec
	if start, end := none.Next(utc("2026-11-27T10:00:00Z")); !start.IsZero() || !end.IsZero() || !none.None() {
		t.Errorf("no window: Next = %v %v", start, end)
	}
}
