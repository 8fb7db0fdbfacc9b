package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/rollout"
	"github.com/kcare/kcare/internal/portal/window"
)

func rolloutCmd(e *env) *cmdline.Command {
	g := group("rollout", "safe rollout: a feed's waves and health gate, its rollouts, and the operator's actions on them",
		rolloutPolicy(e), rolloutList(e), rolloutShow(e))
	for _, a := range []struct {
		act     rollout.Action
		summary string
	}{
		{rollout.Pause, "stop a rollout advancing (it still halts when unhealthy)"},
		{rollout.Resume, "start a paused, halted or rolled back rollout again; its wave soaks from now"},
		{rollout.Promote, "move a rollout to its next wave now, or finish it from the last"},
		{rollout.Halt, "stop a rollout: no server gets its patchset anew"},
		{rollout.Rollback, "roll a rollout back: every server that has its patchset is ordered back"},
	} {
		g.Sub = append(g.Sub, rolloutAction(e, a.act, a.summary))
	}
	return g
}

// policyFlags are the flags of rollout policy, each a field of the
// policy; a flag not given keeps the field.
type policyFlags struct {
	waves, window                                       string
	soak, silentAfter                                   time.Duration
	autoRollback, urgentSkipsWindow                     bool
	failures, warnings, oopses, taints, reboots, silent int
	minCheckedIn                                        int
	fs                                                  *flag.FlagSet
}

func newPolicyFlags(fs *flag.FlagSet) *policyFlags {
	d := rollout.DefaultPolicy()
	p := &policyFlags{fs: fs}
	fs.StringVar(&p.waves, "waves", "", `the waves, percentages of the feed's servers, "1,10,50,100"; "" releases every patchset at once`)
	fs.DurationVar(&p.soak, "soak", time.Duration(d.Soak), "how long each wave runs before the next")
	fs.BoolVar(&p.autoRollback, "auto-rollback", d.AutoRollback, "a rollout that halts as unhealthy also orders its servers back")
	fs.IntVar(&p.failures, "max-failures", d.MaxFailures, "failed applies of the level a rollout tolerates")
	fs.IntVar(&p.warnings, "max-warnings", d.MaxWarnings, "new kernel warnings a rollout tolerates, summed")
	fs.IntVar(&p.oopses, "max-oopses", d.MaxOopses, "new kernel oopses a rollout tolerates, summed")
	fs.IntVar(&p.taints, "max-taints", d.MaxTaints, "servers with a new taint flag (but K, O, E) a rollout tolerates")
	fs.IntVar(&p.reboots, "max-reboots", d.MaxReboots, "servers rebooted with the level a rollout tolerates")
	fs.IntVar(&p.silent, "max-silent", d.MaxSilent, "servers with the level that stopped checking in a rollout tolerates")
	fs.DurationVar(&p.silentAfter, "silent-after", time.Duration(d.SilentAfter), "how long without a check-in makes a server silent")
	fs.IntVar(&p.minCheckedIn, "min-checked-in", d.MinCheckedIn, "`PERCENT` of the waves' servers that must have checked in with the level before the next wave")
	fs.StringVar(&p.window, "window", "", `the feed's maintenance window, "Mon-Fri 22:00-02:00 Europe/Berlin"; "" none`)
	fs.BoolVar(&p.urgentSkipsWindow, "urgent-skips-window", d.UrgentSkipsWindow, "urgent patchsets are applied outside the window")
	return p
}

// apply sets the fields of p whose flags were given.
func (f *policyFlags) apply(p *rollout.Policy) error {
	given := set(f.fs)
	if given["waves"] {
		w, err := rollout.ParseWaves(f.waves)
		if err != nil {
			return usageErr("--waves: %v", err)
		}
		p.Waves = w
	}
	if given["window"] {
		if _, err := window.Parse(f.window); err != nil {
			return usageErr("--window: %v", err)
		}
		p.Window = f.window
	}
	for _, f := range []struct {
		name     string
		dst, src *int
	}{
		{"max-failures", &p.MaxFailures, &f.failures}, {"max-warnings", &p.MaxWarnings, &f.warnings},
		{"max-oopses", &p.MaxOopses, &f.oopses}, {"max-taints", &p.MaxTaints, &f.taints},
		{"max-reboots", &p.MaxReboots, &f.reboots}, {"max-silent", &p.MaxSilent, &f.silent},
		{"min-checked-in", &p.MinCheckedIn, &f.minCheckedIn},
	} {
		if given[f.name] {
			*f.dst = *f.src
		}
	}
	if given["soak"] {
		p.Soak = rollout.Duration(f.soak)
	}
	if given["silent-after"] {
		p.SilentAfter = rollout.Duration(f.silentAfter)
	}
	if given["auto-rollback"] {
		p.AutoRollback = f.autoRollback
	}
	if given["urgent-skips-window"] {
		p.UrgentSkipsWindow = f.urgentSkipsWindow
	}
	return nil
}

func rolloutPolicy(e *env) *cmdline.Command {
	fs := flags("rollout policy")
	db := withDB(fs)
	pf := newPolicyFlags(fs)
	return &cmdline.Command{Name: "policy", Args: "FEED", MinArgs: 1, MaxArgs: 1, Flags: fs,
		Summary: "show a feed's rollout policy, or change the fields given",
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			p, err := c.RolloutPolicy(ctx, args[0])
			if err != nil {
				return err
			}
			if changes(fs) {
				if err := pf.apply(&p); err != nil {
					return err
				}
				if err := c.SetRolloutPolicy(ctx, core.CLI, args[0], p); err != nil {
					return err
				}
				if p, err = c.RolloutPolicy(ctx, args[0]); err != nil {
					return err
				}
			}
			return printPolicy(e.stdout, args[0], p)
		})}
}

// changes reports whether the command line gave a flag of fs beside
// those that say where the data is.
func changes(fs *flag.FlagSet) bool {
	n := 0
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "data" && f.Name != "db" {
			n++
		}
	})
	return n > 0
}

// printPolicy writes a feed's policy, one field a line.
func printPolicy(w io.Writer, feed string, p rollout.Policy) error {
	waves := p.Waves.String()
	if waves == "" {
		waves = "none (every patchset at once)"
	}
	window := p.Window
	if window == "" {
		window = "none"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, l := range [][2]string{
		{"feed", feed}, {"waves", waves}, {"soak", p.Soak.String()}, {"auto-rollback", strconv.FormatBool(p.AutoRollback)},
		{"max-failures", strconv.Itoa(p.MaxFailures)}, {"max-warnings", strconv.Itoa(p.MaxWarnings)},
		{"max-oopses", strconv.Itoa(p.MaxOopses)}, {"max-taints", strconv.Itoa(p.MaxTaints)},
		{"max-reboots", strconv.Itoa(p.MaxReboots)}, {"max-silent", strconv.Itoa(p.MaxSilent)},
		{"silent-after", p.SilentAfter.String()}, {"min-checked-in", strconv.Itoa(p.MinCheckedIn) + "%"},
		{"window", window}, {"urgent-skips-window", strconv.FormatBool(p.UrgentSkipsWindow)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", l[0], l[1])
	}
	return tw.Flush()
}

func rolloutList(e *env) *cmdline.Command {
	fs := flags("rollout list")
	db := withDB(fs)
	feed := fs.String("feed", "", "only the rollouts of `FEED`")
	return &cmdline.Command{Name: "list", Summary: "list the rollouts, newest first", Flags: fs,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			rs, err := c.Rollouts(ctx, *feed)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFEED\tPATCHSET\tSTATE\tWAVE\tWAVES\tURGENT\tREASON")
			for _, r := range rs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%v\t%s\n", r.ID, r.Feed, r.Patchset, r.State, r.Wave+1, r.Waves, r.Urgent, dash(r.Reason))
			}
			return tw.Flush()
		})}
}

func rolloutShow(e *env) *cmdline.Command {
	fs := flags("rollout show")
	db := withDB(fs)
	brief := fs.Bool("brief", false, "the waves only, not each server")
	return &cmdline.Command{Name: "show", Args: "ID", MinArgs: 1, MaxArgs: 1, Flags: fs,
		Summary: "show a rollout: each wave, its servers and their health now",
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			id, err := rolloutID(args[0])
			if err != nil {
				return err
			}
			st, err := c.Rollout(ctx, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rollout %d: %s in feed %s, %s at wave %d of %s", st.ID, st.Patchset, st.Feed, st.State, st.Wave+1, st.Waves)
			if st.Urgent {
				fmt.Fprint(e.stdout, ", urgent")
			}
			fmt.Fprintln(e.stdout)
			if st.Decision.Verdict != rollout.Idle {
				fmt.Fprintf(e.stdout, "now: %s: %s\n", st.Decision.Verdict, st.Decision.Reason)
			}
			if st.Reason != "" {
				fmt.Fprintf(e.stdout, "last change: %s\n", st.Reason)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WAVE\tSHARE\tSERVERS\tAPPLIED\tFAILED\tWARNINGS\tOOPSES\tTAINTED\tREBOOTED\tSILENT")
			waves, _ := rollout.ParseWaves(st.Waves)
			for i, w := range st.Decision.Waves {
				fmt.Fprintf(tw, "%d\t%s%%\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", i+1, rollout.Percent(waves[i]), w.Servers, w.Applied,
					w.Failures, w.Warnings, w.Oopses, w.Taints, w.Reboots, w.Silent)
			}
			if err := tw.Flush(); err != nil || len(st.Servers) == 0 || *brief {
				return err
			}
			fmt.Fprintln(e.stdout)
			fmt.Fprintln(tw, "SERVER\tWAVE\tLEVEL\tTARGET\tHEALTH")
			for _, srv := range st.Servers {
				health := srv.Signals.Problems()
				if health == "" {
					health = "ok"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", srv.ID, srv.Wave+1, srv.Level, srv.Target, health)
			}
			return tw.Flush()
		})}
}

func rolloutID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErr("rollout id %q: a number, as eportal rollout list shows", s)
	}
	return id, nil
}

func rolloutAction(e *env, act rollout.Action, summary string) *cmdline.Command {
	fs := flags("rollout " + string(act))
	db := withDB(fs)
	return &cmdline.Command{Name: string(act), Args: "ID", MinArgs: 1, MaxArgs: 1, Flags: fs, Summary: summary,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			id, err := rolloutID(args[0])
			if err != nil {
				return err
			}
			r, err := c.RolloutAction(ctx, core.CLI, id, act)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "rollout %d (%s in feed %s): %s at wave %d\n", r.ID, r.Patchset, r.Feed, r.State, r.Wave+1)
			return err
		})}
}

// keyWindow is `eportal key window`.
func keyWindow(e *env) *cmdline.Command {
	fs := flags("key window")
	db := withDB(fs)
	return &cmdline.Command{Name: "window", Args: "KEY [SPEC]", MinArgs: 1, MaxArgs: 2, Flags: fs,
		Summary: `set a key's own maintenance window, "Sat,Sun 02:00-05:00 Europe/Berlin" (in place of its feed's); without SPEC, remove it`,
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			spec := ""
			if len(args) == 2 {
				spec = args[1]
			}
			if err := c.SetKeyWindow(ctx, core.CLI, args[0], spec); err != nil {
				return err
			}
			if spec == "" {
				_, err := fmt.Fprintln(e.stdout, "maintenance window removed; the feed's applies")
				return err
			}
			_, err := fmt.Fprintf(e.stdout, "maintenance window: %s\n", strings.Join(strings.Fields(spec), " "))
			return err
		})}
}

// patchsetUrgent is `eportal patchset urgent`.
func patchsetUrgent(e *env) *cmdline.Command {
	fs := flags("patchset urgent")
	db := withDB(fs)
	off := fs.Bool("off", false, "no longer urgent")
	return &cmdline.Command{Name: "urgent", Args: "PATCHSET", MinArgs: 1, MaxArgs: 1, Flags: fs,
		Summary: "mark a patchset urgent: its rollouts skip their soak times (not the health gate), and agents that poll fetch it at once",
		Run: withCore(e, db, func(ctx context.Context, c *core.Core, args []string) error {
			if err := c.SetPatchsetUrgent(ctx, core.CLI, args[0], !*off); err != nil {
				return err
			}
			state := "urgent"
			if *off {
				state = "not urgent"
			}
			_, err := fmt.Fprintf(e.stdout, "%s: %s\n", args[0], state)
			return err
		})}
}
