package monitoring_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
	"github.com/kcare/kcare/internal/trust"
)

// need finds a program of a Debian package, skipping without it (failing
// in CI).
func need(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (install %s)", prog, pkg)
		}
		t.Skipf("%s not found (install %s)", prog, pkg)
	}
	return p
}

type fleet struct {
	srv     *server.Server
	url     string
	st      store.Store
	signer  *trust.Signer
	checker string // built check_kcare
}

// newFleet starts a portal with level 1 published and two servers of key
// "mon" at level 1, and builds check_kcare.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	priv, pub, err := trust.GenerateKey("kcare monitoring test", "")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := trust.ReadSigner(priv)
	portalKey, _ := trust.ReadSigner(priv)
	keys, _ := trust.ReadKeyring(pub)
	st := storetest.Open(t, "sqlite")
	srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: portalKey, Publishers: keys})})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	f := &fleet{srv: srv, url: hs.URL, st: st, signer: signer, checker: filepath.Join(t.TempDir(), "check_kcare")}
	f.publish(t, 1)
	ctx := context.Background()
	if err := st.AddKey(ctx, &store.Key{Key: "mon", Feed: "main", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for i, host := range []string{"web1", "web2"} {
		s := &store.Server{ID: "srv-" + host, SecretHash: auth.HashSecret("x"), Hostname: host, IP: fmt.Sprintf("192.0.2.%d", 10+i), Registered: time.Now()}
		if err := st.Register(ctx, "mon", s); err != nil {
			t.Fatal(err)
		}
		if err := st.CheckIn(ctx, s.ID, store.Report{Hostname: host, IP: s.IP, Release: fakekernel.Release, BuildID: fakekernel.BuildID,
			KernelID: kernel.KernelID(fakekernel.Version), Level: 1, LastResult: "ok", At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("go", "build", "-o", f.checker, "../../cmd/check_kcare").CombinedOutput()
	if err != nil {
		t.Fatalf("build check_kcare: %v\n%s", err, out)
	}
	return f
}

// publish releases level n (an hour ago) for the fake kernel.
func (f *fleet) publish(t *testing.T, level int) {
	t.Helper()
	data, sig := bundletest.Bundle(t, f.signer, level, bundletest.Options{Released: time.Now().Add(-time.Hour)})
	if _, err := f.srv.Core().Publish(context.Background(), core.CLI, data, sig, core.PublishOptions{Patchset: fmt.Sprintf("K20261127_%02d", level)}); err != nil {
		t.Fatal(err)
	}
}

func (f *fleet) checkZ(t *testing.T) string {
	out, _ := exec.Command(f.checker, "-z", "-k", "mon", "-u", f.url, "-c", "o", "-w", "u,i").Output()
	return strings.TrimSpace(string(out))
}

// shipped returns the command definitions of deploy/nagios/kcare.cfg.
func shippedCommands(t *testing.T) string {
	b, err := os.ReadFile("../../deploy/nagios/kcare.cfg")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s)define command \{.*?\n\}`).FindAllString(string(b), -1)
	if len(blocks) == 0 {
		t.Fatal("deploy/nagios/kcare.cfg defines no command")
	}
	return strings.Join(blocks, "\n")
}

// TestNagios runs Debian's Nagios 4 with the shipped check_kcare command
// against the live portal, and reads Nagios's own status file: OK, then
// CRITICAL once the servers fall out of date.
func TestNagios(t *testing.T) {
	nagios := need(t, "nagios4", "nagios4-core")
	f := newFleet(t)
	dir, err := os.MkdirTemp("", "nagios")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "checkresults"), 0o755)
	p := func(n string) string { return filepath.Join(dir, n) }
	cfg := fmt.Sprintf(`log_file=%[1]s/nagios.log
cfg_file=%[1]s/objects.cfg
resource_file=%[1]s/resource.cfg
status_file=%[1]s/status.dat
status_update_interval=1
object_cache_file=%[1]s/objects.cache
precached_object_file=%[1]s/objects.precache
temp_file=%[1]s/nagios.tmp
temp_path=%[1]s
lock_file=%[1]s/nagios.lock
check_result_path=%[1]s/checkresults
state_retention_file=%[1]s/retention.dat
retain_state_information=0
command_file=%[1]s/nagios.cmd
query_socket=%[1]s/nagios.qh
check_external_commands=0
nagios_user=root
nagios_group=root
interval_length=1
enable_notifications=0
enable_flap_detection=0
check_result_reaper_frequency=1
max_service_check_spread=1
max_host_check_spread=1
service_inter_check_delay_method=n
host_inter_check_delay_method=n
service_check_timeout=20
use_syslog=0
`, dir)
	objects := fmt.Sprintf(`define timeperiod {
    timeperiod_name 24x7
    alias           always
    sunday 00:00-24:00
    monday 00:00-24:00
    tuesday 00:00-24:00
    wednesday 00:00-24:00
    thursday 00:00-24:00
    friday 00:00-24:00
    saturday 00:00-24:00
}
define command {
    command_name    noop
    command_line    /bin/true
}
define contact {
    contact_name                    nobody
    host_notifications_enabled      0
    service_notifications_enabled   0
    host_notification_period        24x7
    service_notification_period     24x7
    host_notification_options       n
    service_notification_options    n
    host_notification_commands      noop
    service_notification_commands   noop
}
define host {
    host_name           localhost
    address             127.0.0.1
    check_command       noop
    max_check_attempts  1
    check_period        24x7
    check_interval      5
    contacts            nobody
    notification_period 24x7
}
define service {
    host_name               localhost
    service_description     KernelCare patches
    check_command           check_kcare!mon!%s
    max_check_attempts      1
    check_interval          2
    retry_interval          2
    check_period            24x7
    contacts                nobody
    notification_period     24x7
}
%s
`, f.url, shippedCommands(t))
	os.WriteFile(p("nagios.cfg"), []byte(cfg), 0o644)
	os.WriteFile(p("objects.cfg"), []byte(objects), 0o644)
	os.WriteFile(p("resource.cfg"), []byte("$USER1$="+filepath.Dir(f.checker)+"\n"), 0o644)
	if out, err := exec.Command(nagios, "-v", p("nagios.cfg")).CombinedOutput(); err != nil {
		t.Fatalf("nagios4 -v: %v\n%s", err, out)
	}
	cmd := exec.Command(nagios, p("nagios.cfg"))
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			nl, _ := os.ReadFile(p("nagios.log"))
			t.Logf("nagios output:\n%s\nnagios.log:\n%s", log.String(), nl)
		}
	}()

	// waitState reads status.dat until the service has been checked with
	// want as its state, for up to 90s.
	waitState := func(want int, since time.Time) string {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(p("status.dat"))
			for _, blk := range regexp.MustCompile(`(?s)servicestatus \{.*?\n\s*\}`).FindAllString(string(b), -1) {
				if !strings.Contains(blk, "service_description=KernelCare patches") {
					continue
				}
				last = blk
				var state, checked int
				var lastCheck int64
				fmt.Sscanf(field(blk, "current_state"), "%d", &state)
				fmt.Sscanf(field(blk, "has_been_checked"), "%d", &checked)
				fmt.Sscanf(field(blk, "last_check"), "%d", &lastCheck)
				if checked == 1 && state == want && lastCheck >= since.Unix() {
					return field(blk, "plugin_output") + " | " + field(blk, "performance_data")
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("waited 90s for Nagios to see state %d; last status:\n%s", want, last)
		return ""
	}
	out := waitState(0, time.Time{})
	if want := "KERNELCARE OK - All 2 servers are up to date | uptodate=2;outofdate=0;unsupported=0;inactive=0"; out != want {
		t.Errorf("Nagios status: %q, want %q", out, want)
	}
	f.publish(t, 2) // both servers fall out of date
	changed := time.Now()
	out = waitState(2, changed)
	if want := "KERNELCARE CRITICAL - 2 machines are OUTOFDATE! | uptodate=0;outofdate=2;unsupported=0;inactive=0"; out != want {
		t.Errorf("Nagios status: %q, want %q", out, want)
	}
}

func field(blk, name string) string {
	m := regexp.MustCompile(`(?m)^\s*` + name + `=(.*)$`).FindStringSubmatch(blk)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestZabbix asks Debian's Zabbix agent, with the shipped UserParameter,
// for the item, and compares it with check_kcare -z.
func TestZabbix(t *testing.T) {
	agentd := need(t, "zabbix_agentd", "zabbix-agent")
	f := newFleet(t)
	dir := t.TempDir()
	up, err := os.ReadFile("../../deploy/zabbix/userparameter_kcare.conf")
	if err != nil {
		t.Fatal(err)
	}
	up = bytes.ReplaceAll(up, []byte("/usr/lib/nagios/plugins/check_kcare"), []byte(f.checker))
	os.WriteFile(filepath.Join(dir, "kcare.conf"), up, 0o644)
	conf := fmt.Sprintf("LogType=console\nPidFile=%s/agentd.pid\nServer=127.0.0.1\nInclude=%s/kcare.conf\n", dir, dir)
	os.WriteFile(filepath.Join(dir, "agentd.conf"), []byte(conf), 0o644)
	item := fmt.Sprintf("kcare.status[mon,%s]", f.url)
	ask := func() string {
		out, err := exec.Command(agentd, "-c", filepath.Join(dir, "agentd.conf"), "-t", item).CombinedOutput()
		if err != nil {
			t.Fatalf("zabbix_agentd -t: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`\[t\|(\d+)\]`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("zabbix_agentd -t answered %q", out)
		}
		return m[1]
	}
	if got, want := ask(), f.checkZ(t); got != want || got != "0" {
		t.Errorf("zabbix item = %s, check_kcare -z = %s; want both 0", got, want)
	}
	f.publish(t, 2)
	if got, want := ask(), f.checkZ(t); got != want || got != "2" {
		t.Errorf("after the servers fall out of date: zabbix item = %s, check_kcare -z = %s; want both 2", got, want)
	}
}
