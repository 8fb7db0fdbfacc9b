package fleet

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/textline"
)

// Perfdata is the Nagios performance data of a set of servers.
func Perfdata(counts map[State]int) string {
	return fmt.Sprintf("uptodate=%d;outofdate=%d;unsupported=%d;inactive=%d",
		counts[UpToDate], counts[OutOfDate], counts[Unsupported], counts[Inactive])
}

// Summary is the line before the perfdata: "All N servers are up to date",
// or a count of each state that is not, e.g. "3 machines are OUTOFDATE!".
func Summary(counts map[State]int) string {
	total := 0
	for _, n := range counts {
		total += n
	}
	var bad []string
	for _, st := range States[1:] {
		if n := counts[st]; n > 0 {
			bad = append(bad, fmt.Sprintf("%d machines are %s!", n, strings.ToUpper(string(st))))
		}
	}
	if len(bad) == 0 {
		return fmt.Sprintf("All %d servers are up to date", total)
	}
	return strings.Join(bad, " ")
}

// NagiosReport is the body of KernelCare's Nagios API: the summary, "|",
// the perfdata, then one line per server that is not up to date, as
// "<hostname> (<ip>) is OUTOFDATE", sorted by state then hostname. What
// servers reported is escaped (textline.Escape): a hostname cannot add a line
// or perfdata.
func NagiosReport(cs []Classified) string {
	counts := Counts(cs)
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s\n", Summary(counts), Perfdata(counts))
	bad := make([]Classified, 0, len(cs))
	for _, c := range cs {
		if c.State != UpToDate {
			bad = append(bad, c)
		}
	}
	order := map[State]int{OutOfDate: 0, Unsupported: 1, Inactive: 2}
	sort.SliceStable(bad, func(i, j int) bool {
		if bad[i].State != bad[j].State {
			return order[bad[i].State] < order[bad[j].State]
		}
		if bad[i].Hostname != bad[j].Hostname {
			return bad[i].Hostname < bad[j].Hostname
		}
		return bad[i].IP < bad[j].IP
	})
	for _, c := range bad {
		host := c.Hostname
		if host == "" {
			host = c.ID
		}
		fmt.Fprintf(&b, "%s (%s) is %s\n", textline.Escape(host), textline.Escape(c.IP), strings.ToUpper(string(c.State)))
	}
	return b.String()
}

// NagiosRollouts is the body of the rollouts' Nagios check: a summary
// ("OK: no rollout halted", "CRITICAL: 1 rollout halted or rolled back"),
// "|", the count of rollouts in each state, then a line per rollout that
// halted or rolled back: its patchset, feed, state, wave and why.
func NagiosRollouts(rs []store.Rollout) string {
	counts := map[string]int{}
	var bad []store.Rollout
	for _, r := range rs {
		counts[r.State]++
		if r.State == "halted" || r.State == "rolled-back" {
			bad = append(bad, r)
		}
	}
	var b strings.Builder
	switch len(bad) {
	case 0:
		b.WriteString("OK: no rollout halted")
	case 1:
		b.WriteString("CRITICAL: 1 rollout halted or rolled back")
	default:
		fmt.Fprintf(&b, "CRITICAL: %d rollouts halted or rolled back", len(bad))
	}
	fmt.Fprintf(&b, "|running=%d;paused=%d;halted=%d;rolled_back=%d;done=%d\n",
		counts["running"], counts["paused"], counts["halted"], counts["rolled-back"], counts["done"])
	for _, r := range bad {
		fmt.Fprintf(&b, "%s in feed %s is %s at wave %d: %s\n", r.Patchset, r.Feed, r.State, r.Wave+1, textline.Escape(r.Reason))
	}
	return b.String()
}
