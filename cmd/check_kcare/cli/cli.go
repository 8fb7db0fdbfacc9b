// Package cli is check_kcare's command line, after the Nagios plugin
// conventions: one status line with perfdata, then details; exit 0 OK,
// 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/config"
	"github.com/kcare/kcare/internal/failure"
	"github.com/kcare/kcare/internal/textline"
)

// Nagios plugin exit codes.
const (
	OK       = 0
	Warning  = 1
	Critical = 2
	Unknown  = 3
)

var stateNames = []string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

// confPath is where the default portal URL is read from (PATCH_SERVER).
var confPath = config.DefaultPath

// unknownError is a failure reported as UNKNOWN: the check could not be
// made.
type unknownError struct{ msg string }

func (e *unknownError) Error() string { return e.msg }

func unknownf(format string, a ...any) error { return &unknownError{fmt.Sprintf(format, a...)} }

// Program is check_kcare's command line writing to stdout and stderr.
// Every failure, a usage error too, is UNKNOWN (3), reported on stdout as
// the status line, as Nagios reads it.
func Program(stdout, stderr io.Writer) *cmdline.Program {
	fs := flag.NewFlagSet("check_kcare", flag.ContinueOnError)
	key := fs.String("k", "", "activation `KEY` whose servers to check")
	login := fs.String("l", "", "reseller `LOGIN` (with --api-token)")
	token := fs.String("api-token", "", "reseller API `TOKEN`")
	base := fs.String("u", "", "portal base `URL` (default PATCH_SERVER from kcare.conf)")
	crit := fs.String("c", "o", "states counted as CRITICAL: `o,u,i` (out of date, unsupported, inactive)")
	warn := fs.String("w", "u,i", "states counted as WARNING: `o,u,i`")
	zabbix := fs.Bool("z", false, "Zabbix output: print only the status number")
	timeout := fs.Int("t", 30, "timeout in `SECONDS`")
	root := &cmdline.Command{Flags: fs, Synopsis: "check_kcare (-k KEY | -l LOGIN --api-token TOKEN) [-u URL] [-c o,u,i] [-w o,u,i] [-z] [-t SECONDS]",
		Help: "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
		Run: func(ctx context.Context, args []string) error {
			status, err := check(ctx, stdout, *key, *login, *token, *base, *crit, *warn, *zabbix, *timeout)
			if err != nil {
				return err
			}
			return cmdline.Status(status)
		}}
	return &cmdline.Program{Name: "check_kcare", Root: root, Stdout: stdout, Stderr: stderr, UsageCode: Unknown, ErrorCode: Unknown,
		Fail: func(path string, err error) {
			if *zabbix {
				fmt.Fprintln(stdout, Unknown)
				return
			}
			msg := err.Error()
			if errors.Is(err, failure.Usage) {
				msg = "bad arguments: " + msg
			}
			fmt.Fprintf(stdout, "KERNELCARE UNKNOWN - %s\n", msg)
		}}
}

// Run runs check_kcare and returns its exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return Program(stdout, stderr).Run(ctx, args)
}

// check asks the portal and prints the status line; it returns the
// Nagios status.
func check(ctx context.Context, stdout io.Writer, key, login, token, base, crit, warn string, zabbix bool, timeout int) (int, error) {
	critSet, err := parseStates(crit)
	if err != nil {
		return 0, unknownf("-c: %v", err)
	}
	warnSet, err := parseStates(warn)
	if err != nil {
		return 0, unknownf("-w: %v", err)
	}
	var path string
	switch {
	case key != "" && login == "":
		path = "/api/kcare/nagios/" + url.PathEscape(key)
	case login != "" && token != "" && key == "":
		path = "/api/kcare/nagios-res/" + url.PathEscape(login) + "/" + url.PathEscape(token)
	default:
		return 0, unknownf("give -k KEY, or -l LOGIN with --api-token TOKEN")
	}
	if base == "" {
		if f, err := config.Load(confPath); err == nil {
			base, _ = f.Get("PATCH_SERVER")
		}
	}
	if base == "" {
		return 0, unknownf("no portal URL: give -u URL or set PATCH_SERVER in %s", filepath.Base(confPath))
	}
	if timeout <= 0 {
		return 0, unknownf("-t must be a positive number of seconds")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
	defer cancel()
	rep, err := fetch(ctx, strings.TrimRight(base, "/")+path)
	if err != nil {
		return 0, err
	}
	status := OK
	for st, n := range rep.counts {
		if n == 0 {
			continue
		}
		if critSet[st] {
			status = Critical
		} else if warnSet[st] && status < Warning {
			status = Warning
		}
	}
	if zabbix {
		fmt.Fprintln(stdout, status)
		return status, nil
	}
	// The portal's text is escaped again (textline.Escape is idempotent): a
	// portal from before it escaped hostnames must not add perfdata here.
	fmt.Fprintf(stdout, "KERNELCARE %s - %s | %s\n", stateNames[status], textline.Escape(rep.summary), rep.perfdata)
	for _, l := range rep.details {
		fmt.Fprintln(stdout, textline.Escape(l))
	}
	return status, nil
}

// parseStates reads "o,u,i".
func parseStates(v string) (map[string]bool, error) {
	set := map[string]bool{}
	if v == "" {
		return set, nil
	}
	names := map[string]string{"o": "outofdate", "u": "unsupported", "i": "inactive"}
	for _, p := range strings.Split(v, ",") {
		n, ok := names[strings.TrimSpace(p)]
		if !ok {
			return nil, fmt.Errorf("%q: use o, u and i", p)
		}
		set[n] = true
	}
	return set, nil
}

type report struct {
	summary, perfdata string
	counts            map[string]int
	details           []string
}

func fetch(ctx context.Context, u string) (*report, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}).Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errors.New("timed out waiting for the portal")
		}
		return nil, fmt.Errorf("portal unreachable: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %v", err)
	}
	text := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			text = text[:i]
		}
		if len(text) > 200 || text == "" {
			text = resp.Status
		}
		return nil, errors.New(text)
	}
	return parseReport(text)
}

// parseReport reads "SUMMARY|uptodate=N;outofdate=N;unsupported=N;inactive=N"
// and the detail lines after it.
func parseReport(text string) (*report, error) {
	lines := strings.Split(text, "\n")
	summary, perf, ok := strings.Cut(lines[0], "|")
	if !ok {
		return nil, errors.New("bad answer from the portal: no perfdata")
	}
	r := &report{summary: strings.TrimSpace(summary), perfdata: strings.TrimSpace(perf), counts: map[string]int{}, details: lines[1:]}
	for _, kv := range strings.Split(r.perfdata, ";") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("bad answer from the portal: perfdata %q", r.perfdata)
		}
		r.counts[k] = n
	}
	for _, k := range []string{"uptodate", "outofdate", "unsupported", "inactive"} {
		if _, ok := r.counts[k]; !ok {
			return nil, fmt.Errorf("bad answer from the portal: perfdata lacks %s", k)
		}
	}
	return r, nil
}
