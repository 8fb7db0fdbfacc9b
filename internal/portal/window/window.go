// Package window reads maintenance windows and finds, for a moment, the
// window it is in or the next one. The portal evaluates windows, in their
// own time zones, and hands agents the instants (UTC) a window starts and
// ends, so that an agent needs no time zone data.
package window

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// The time zones, in the binary, so that windows are evaluated the
	// same whatever the host's zone files.
	_ "time/tzdata"
)

// ErrBadSpec is a window an operator wrote that the portal cannot read.
var ErrBadSpec = errors.New("bad maintenance window")

// Spec is one or more windows: each on some days of the week, from a
// time of day to another, in a time zone. It is written as
//
//	DAYS HH:MM-HH:MM [ZONE][; DAYS HH:MM-HH:MM [ZONE]]...
//
// where DAYS is "*" (every day), a day ("Sat"), a range ("Mon-Fri") or a
// list of them ("Mon-Wed,Fri"), the times are 00:00 to 24:00 (an end at
// or before the start is on the next day: "Sat 22:00-02:00" ends on
// Sunday), and ZONE is an IANA time zone ("Europe/Berlin"; UTC when
// omitted).
type Spec struct {
	text  string
	items []item
}

type item struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes of the day; end may be 1440
	loc        *time.Location
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Parse reads a Spec. "" is no window: always open.
func Parse(s string) (Spec, error) {
	sp := Spec{text: strings.Join(strings.Fields(s), " ")}
	if sp.text == "" {
		return Spec{}, nil
	}
	if len(s) > 500 {
		return Spec{}, fmt.Errorf("%w: longer than 500 characters", ErrBadSpec)
	}
	for _, part := range strings.Split(s, ";") {
		it, err := parseItem(strings.Fields(part))
		if err != nil {
			return Spec{}, fmt.Errorf("%w %q: %v", ErrBadSpec, strings.TrimSpace(part), err)
		}
		sp.items = append(sp.items, it)
	}
	return sp, nil
}

func parseItem(f []string) (item, error) {
	var it item
	if len(f) != 2 && len(f) != 3 {
		return it, errors.New(`want DAYS HH:MM-HH:MM [ZONE], as "Mon-Fri 22:00-02:00 Europe/Berlin"`)
	}
	if err := it.parseDays(f[0]); err != nil {
		return it, err
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return it, fmt.Errorf("%q: want HH:MM-HH:MM", f[1])
	}
	var err error
	if it.start, err = minutes(from); err != nil || it.start == 24*60 {
		return it, fmt.Errorf("start %q: want 00:00 to 23:59", from)
	}
	if it.end, err = minutes(to); err != nil {
		return it, fmt.Errorf("end %q: want 00:00 to 24:00", to)
	}
	if it.end == it.start {
		return it, fmt.Errorf("%q is empty: it starts when it ends", f[1])
	}
	it.loc = time.UTC
	if len(f) == 3 {
		if it.loc, err = time.LoadLocation(f[2]); err != nil || f[2] == "Local" || f[2] == "" {
			return it, fmt.Errorf("time zone %q: unknown", f[2])
		}
	}
	return it, nil
}

func (it *item) parseDays(s string) error {
	if s == "*" {
		for i := range it.days {
			it.days[i] = true
		}
		return nil
	}
	for _, r := range strings.Split(strings.ToLower(s), ",") {
		a, b, isRange := strings.Cut(r, "-")
		from, to := slices.Index(dayNames, a), slices.Index(dayNames, b)
		if !isRange {
			to = from
		}
		if from < 0 || to < 0 {
			return fmt.Errorf("days %q: want *, Mon, Mon-Fri or Sat,Sun", s)
		}
		for d := from; ; d = (d + 1) % 7 {
			it.days[d] = true
			if d == to {
				break
			}
		}
	}
	return nil
}

// minutes reads HH:MM as minutes of the day, 24:00 included.
func minutes(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, errors.New("want HH:MM")
	}
	return hh*60 + mm, nil
}

// String is the spec as Parse read it, its spaces tidied: "" for none.
func (s Spec) String() string { return s.text }

// None reports whether s has no window: updates may come at any time.
func (s Spec) None() bool { return len(s.items) == 0 }

// span is one window's instants.
type span struct{ start, end time.Time }

// Next returns the window now is in, or else the next one to start: its
// start and end instants, in UTC. Overlapping and adjoining windows are
// one. With no window (None) it returns zero times.
func (s Spec) Next(now time.Time) (start, end time.Time) {
	if s.None() {
		return time.Time{}, time.Time{}
	}
	// Every window starting from 8 days before now to 8 days after, so
	// that one spanning now, or the next, is among them.
	var spans []span
	for _, it := range s.items {
		local := now.In(it.loc)
		day := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, it.loc)
		for i := -8; i <= 8; i++ {
			d := day.AddDate(0, 0, i)
			if !it.days[d.Weekday()] {
				continue
			}
			st := at(d, it.start, it.loc)
			en := at(d, it.end, it.loc)
			if it.end <= it.start {
				en = at(d.AddDate(0, 0, 1), it.end, it.loc)
			}
			if en.After(st) {
				spans = append(spans, span{st, en})
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	var merged []span
	for _, sp := range spans {
		if n := len(merged); n > 0 && !sp.start.After(merged[n-1].end) {
			if sp.end.After(merged[n-1].end) {
				merged[n-1].end = sp.end
			}
			continue
		}
		merged = append(merged, sp)
	}
	for _, sp := range merged {
		if sp.end.After(now) {
			return sp.start.UTC(), sp.end.UTC()
		}
	}
	return time.Time{}, time.Time{} // days with windows exist, so this is not reached
}

// at is minute m of day d in loc.
func at(d time.Time, m int, loc *time.Location) time.Time {
	return time.Date(d.Year(), d.Month(), d.Day(), 0, m, 0, 0, loc)
}
