// Command loadgen simulates a fleet of kcare agents against an eportal and
// reports agent cycles per second and latency percentiles.
//
//	go run ./test/loadgen -db sqlite -seed 100000 -agents 1000 -concurrency 32 -duration 30s
//	go run ./test/loadgen -db postgres -dsn postgres://... -seed 1000000 -agents 1000 -concurrency 32 -duration 30s
//	go run ./test/loadgen -nginx -concurrency 32 -duration 30s
//
// It sets up a fresh portal: it builds eportal, makes a temporary data
// directory (and, with -db postgres, a new schema in the database of -dsn
// or $KCARE_TEST_POSTGRES, on 127.0.0.1 only), puts a publisher key in
// DATA/publishers, adds an admin and an API token with the eportal
// command, seeds -seed made-up servers straight into the store, starts
// `eportal serve` on a free port of 127.0.0.1 and publishes one signed
// patch level of about 256 KiB for the fake kernel.
//
// It then registers -agents simulated agents (under a key of their own, or
// with -shared-key under the seeded servers' key) and runs, from -concurrency
// workers for -duration, agent cycles as kcarectl makes them: check in
// and fetch the signed index in one request (POST /api/v1/run; with -api
// v1 the index first and a check-in after it, as older agents do), verify
// it against the portal's key, download the bundle it names and check its
// sha256 when the level is not the one the agent has (each agent's first
// cycle; with -download-every-cycle every cycle, the worst case), and
// check in again when the level changed. It reports cycles per second and the
// 50th, 90th and 99th percentile and maximum latency of each step and of
// the whole cycle, and where the CPU went meanwhile (loadgen, the server,
// PostgreSQL, everything else), in cores and in CPU milliseconds per
// cycle, read from /proc: the load generator shares the machine with what
// it measures. -server-cpus and -loadgen-cpus keep the server (eportal
// or nginx, under taskset -c) and loadgen on CPUs of their own, so that
// each one's cost per cycle is measured apart from the other's.
//
// With -kill-every it kills eportal serve with SIGKILL at that interval
// during the cycles, and starts it again on the same address and store;
// every fifth cycle of each worker registers a new server, and each
// check-in carries a sequence number. At the end it kills eportal once
// more, opens the store (for SQLite also PRAGMA integrity_check) and looks
// up every registration and check-in the portal acknowledged: the report
// counts those lost and any registration stored twice, and the run fails
// if there is one (test/faults runs it on SQLite and PostgreSQL).
//
// With -nginx it instead compares downloads of the bundle from eportal's
// /blobs/sha256/{digest} with nginx serving the same file, with the same
// client: -concurrency GETs at a time for -duration against each. nginx
// is installed with `apt-get install -y nginx` when missing and loadgen
// runs as root.
//
// The report goes to standard output, as JSON with -json; progress goes to
// standard error. Everything loadgen starts or makes is stopped and
// removed when it ends, also on an interrupt: eportal and nginx, the
// temporary directories, the PostgreSQL schema.
//
// Exit codes: 0 the run completed and no request failed; 1 the setup
// failed, or a request failed or had to be retried (the report says which);
// 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags ask for.
type config struct {
	db          string // "sqlite" or "postgres"
	dsn         string
	seed        int
	agents      int
	concurrency int
	duration    time.Duration
	bundleSize  int
	json        bool
	nginx       bool
	sharedKey   bool   // register the agents under the seeded servers' key
	eportal     string // a built eportal; "" builds one

	downloadEveryCycle bool   // the worst case: every cycle downloads the bundle
	api                string // "run" or "v1"
	serverCPUs         string // taskset -c list for eportal and nginx; "" none
	loadgenCPUs        string // CPUs loadgen keeps to; "" any

	rollout   *rolloutConfig // -rollout: time a level's way to the agents
	serveArgs []string       // more arguments of eportal serve
	killEvery time.Duration
	replicas  int // eportal serve processes on the store; more than one: PostgreSQL, behind haproxy
}

// errUsage is a bad command line.
var errUsage = errors.New("usage")

// errFailures is a run in which requests failed; the report says which.
var errFailures = errors.New("requests failed during the run")

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.db, "db", "sqlite", "the portal's store: sqlite or postgres")
	fs.StringVar(&c.dsn, "dsn", os.Getenv("KCARE_TEST_POSTGRES"), "PostgreSQL `DSN` on 127.0.0.1, for -db postgres (default $KCARE_TEST_POSTGRES)")
	fs.IntVar(&c.seed, "seed", 10000, "made-up servers to seed the store with, `N`")
	fs.IntVar(&c.agents, "agents", 100, "simulated agents to register, `N` (at least -concurrency)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "requests under way at once, `N`")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run agent cycles (or each server's downloads)")
	fs.IntVar(&c.bundleSize, "bundle-size", 256<<10, "size of the published bundle in `BYTES`, about")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.BoolVar(&c.nginx, "nginx", false, "compare bundle downloads from eportal and nginx instead")
	fs.BoolVar(&c.sharedKey, "shared-key", false, "register the agents under the seeded servers' activation key instead of a key of their own")
	fs.StringVar(&c.eportal, "eportal", "", "use this eportal `BINARY` instead of building one")
	fs.BoolVar(&c.downloadEveryCycle, "download-every-cycle", false, "download the bundle in every cycle (the worst case), not only when the level changes")
	fs.StringVar(&c.api, "api", "run", "how agents talk to the portal: run (check-in and index in one request, as kcarectl) or v1 (index, then check-in, as older agents)")
	fs.StringVar(&c.serverCPUs, "server-cpus", "", "run eportal (and nginx) on these `CPUS` only (taskset -c list, e.g. 0)")
	fs.StringVar(&c.loadgenCPUs, "loadgen-cpus", "", "run loadgen on these `CPUS` only (e.g. 1)")
	fs.IntVar(&c.replicas, "replicas", 1, "run `N` replicas of eportal serve on one PostgreSQL database, behind haproxy; -kill-every kills one at a time, in turn")
	fs.DurationVar(&c.killEvery, "kill-every", 0, "kill eportal serve with SIGKILL every `INTERVAL` and start it again; then check that the store holds every registration and check-in it acknowledged")
	rolloutOn := fs.Bool("rollout", false, "time a level from its publish to the agents, who run by their timers (the flags below)")
	rc := &rolloutConfig{}
	fs.BoolVar(&rc.urgent, "urgent", false, "with -rollout: mark the level urgent")
	fs.StringVar(&rc.waves, "waves", "", `with -rollout: the main feed's waves, "1,10,50,100" (default none)`)
	fs.Float64Var(&rc.scale, "time-scale", 1, "with -rollout: divide every timer by `N` for the run, and multiply the times measured back")
	fs.DurationVar(&rc.runEvery, "run-every", defaultRunEvery, "with -rollout: the update timer's period")
	fs.DurationVar(&rc.runJitter, "run-jitter", defaultRunJitter, "with -rollout: the update timer's random delay")
	fs.DurationVar(&rc.pollEvery, "poll-every", defaultPollEvery, "with -rollout: the poll timer's period (0: no polls)")
	fs.DurationVar(&rc.pollJitter, "poll-jitter", defaultPollJitter, "with -rollout: the poll timer's random delay")
	fs.DurationVar(&rc.timeout, "rollout-timeout", 0, "with -rollout: give up after this long in the agents' time (default three full run periods)")
	fs.Float64Var(&rc.target, "target", 0.99, "with -rollout: end the run when this share of the agents has the level")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	bad := func(format string, args ...any) (*config, error) {
		return nil, fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
	}
	switch {
	case fs.NArg() != 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case c.db != "sqlite" && c.db != "postgres":
		return bad("-db: sqlite or postgres, not %q", c.db)
	case c.db == "postgres" && c.dsn == "":
		return bad("-db postgres needs -dsn or $KCARE_TEST_POSTGRES (scripts/postgres-test.sh prints it)")
	case c.seed < 0 || c.seed > 10_000_000:
		return bad("-seed: 0 to 10000000")
	case c.concurrency < 1 || c.concurrency > 1024:
		return bad("-concurrency: 1 to 1024")
	case !c.nginx && (c.agents < c.concurrency || c.agents > 1_000_000):
		return bad("-agents: -concurrency (%d) to 1000000, so that every worker has agents of its own", c.concurrency)
	case c.duration < time.Second || c.duration > time.Hour:
		return bad("-duration: 1s to 1h")
	case c.bundleSize < 4096 || c.bundleSize > 32<<20:
		return bad("-bundle-size: 4096 to 33554432")
	case c.api != "run" && c.api != "v1":
		return bad("-api: run or v1, not %q", c.api)
	case c.killEvery != 0 && (c.killEvery < 500*time.Millisecond || c.killEvery > c.duration):
		return bad("-kill-every: 500ms to -duration")
	case c.killEvery != 0 && c.nginx:
		return bad("-kill-every and -nginx do not go together")
	case c.replicas < 1 || c.replicas > 8:
		return bad("-replicas: 1 to 8")
	case c.replicas > 1 && (c.db != "postgres" || c.nginx):
		return bad("-replicas: more than one share a PostgreSQL database (-db postgres), and not with -nginx")
	}
	if *rolloutOn {
		switch {
		case c.nginx || c.killEvery != 0:
			return bad("-rollout goes with neither -nginx nor -kill-every")
		case rc.scale < 1 || rc.scale > 1000:
			return bad("-time-scale: 1 to 1000")
		case rc.target <= 0 || rc.target > 1:
			return bad("-target: above 0, at most 1")
		case rc.runEvery <= 0 || rc.pollEvery < 0:
			return bad("-run-every above 0, -poll-every 0 or more")
		}
		c.rollout = rc
		// The rollout loop every minute of the agents' time.
		c.serveArgs = []string{"--rollout-interval", rc.scaled(time.Minute).String()}
	}
	for _, l := range []struct{ flag, v string }{{"-server-cpus", c.serverCPUs}, {"-loadgen-cpus", c.loadgenCPUs}} {
		if l.v == "" {
			continue
		}
		if _, err := parseCPUList(l.v); err != nil {
			return bad("%s: %v", l.flag, err)
		}
	}
	if c.db == "sqlite" {
		c.dsn = ""
	} else if err := checkLocalDSN(c.dsn); err != nil {
		return bad("%v", err)
	}
	return c, nil
}

// run runs loadgen and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		if err != errUsage {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
		}
		return exitUsage
	}
	if cfg.loadgenCPUs != "" {
		cpus, _ := parseCPUList(cfg.loadgenCPUs) // checked by parseFlags
		if err := pinSelf(cpus); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return exitError
		}
	}
	if err := loadgen(ctx, cfg, stdout, stderr); err != nil {
		if ctx.Err() != nil {
			err = errors.New("interrupted; stopped and removed everything")
		}
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return exitError
	}
	return exitOK
}

// loadgen sets up the portal, runs what cfg asks for and writes the
// report.
func loadgen(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "loadgen: "+format+"\n", args...)
	}
	p, err := setupPortal(ctx, cfg, logf)
	if err != nil {
		return err
	}
	defer p.close()

	var (
		report interface{ writeText(io.Writer) error }
		ok     bool
	)
	switch {
	case cfg.nginx:
		r, err := runNginx(ctx, cfg, p, logf)
		if err != nil {
			return err
		}
		report, ok = r, r.Servers[0].Failures.None() && r.Servers[1].Failures.None()
	case cfg.rollout != nil:
		r, err := runRollout(ctx, cfg, cfg.rollout, p, logf)
		if err != nil {
			return err
		}
		report, ok = r, r.Failures.None() && !r.TimedOut
	case cfg.killEvery > 0:
		r, err := runCrash(ctx, cfg, p, logf)
		if err != nil {
			return err
		}
		report, ok = r, r.ok()
	default:
		r, err := runFleet(ctx, cfg, p, logf)
		if err != nil {
			return err
		}
		report, ok = r, r.Failures.None()
	}
	if cfg.json {
		err = writeJSON(stdout, report)
	} else {
		err = report.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if !ok {
		fmt.Fprintf(stderr, "loadgen: the last lines eportal logged:\n%s\n", p.serve.tail(20))
		return errFailures
	}
	return nil
}
