package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestReplicasBehindHAProxy runs three replicas of eportal serve on one
// PostgreSQL database behind Debian's haproxy, loadgen's agents going
// through haproxy, and kills a replica with SIGKILL every three seconds
// (each in turn), starting it again each time: the agents' runs go on
// through the other replicas, the few requests a kill cuts off are
// retried (a registration the portal may have taken is not: it is
// reported), every index any replica signs verifies against the one
// index key, every bundle any replica serves matches its digest, and
// every registration and check-in the portal acknowledged is in the
// database after the last kill, none twice.
func TestReplicasBehindHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			requireHost(t, errors.New("haproxy is not installed (scripts/setup-debian.sh installs it)"))
		}
		haproxy = "/usr/sbin/haproxy"
	}
	t.Logf("haproxy: %s", haproxy)
	loadgen, eportal := hostBinary(t, "loadgen"), hostBinary(t, "eportal")
	const workers = 8
	args := []string{"-db", "postgres", "-dsn", startPostgres(t).DSN(), "-replicas", "3", "-eportal", eportal,
		"-seed", "10000", "-agents", "64", "-concurrency", "8", "-duration", "15s", "-kill-every", "3s", "-json"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, loadgen, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var r struct {
		crashReport
		Replicas int `json:"replicas"`
	}
	if jerr := json.Unmarshal(stdout.Bytes(), &r); jerr != nil {
		t.Fatalf("loadgen: %v, %v\n%s%s", err, jerr, stdout.String(), stderr.String())
	}
	if err != nil {
		t.Errorf("loadgen: %v\n%s", err, tail(stderr.String(), 20))
	}
	if r.Replicas != 3 || r.Kills < 4 || !r.StoreOpened || r.Registrations <= 64 || r.Checkins == 0 {
		t.Errorf("%d replicas, %d kills, store opened %v, %d registrations and %d check-ins acknowledged; want 3, at least 4, the store opened, some of each",
			r.Replicas, r.Kills, r.StoreOpened, r.Registrations, r.Checkins)
	}
	if r.LostRegistrations != 0 || r.LostCheckins != 0 || r.Duplicates != 0 {
		t.Errorf("lost %d registrations and %d check-ins, %d registrations stored twice; want none: %q",
			r.LostRegistrations, r.LostCheckins, r.Duplicates, r.Samples)
	}
	// A kill cuts off at most the requests under way then, one a worker;
	// the last kill comes after the run.
	if bound := (r.Kills - 1) * workers; r.Failed > bound {
		t.Errorf("%d requests failed across %d kills, more than the %d under way at them: %q", r.Failed, r.Kills-1, bound, r.Samples)
	}
	for _, s := range r.Samples {
		if strings.Contains(s, "verify index") || strings.Contains(s, "bundle ") {
			t.Errorf("a replica answered what an agent refused: %s", s)
		}
	}
	t.Logf("FIGURE replicas behind haproxy: 3 replicas, %d kills (one replica each); restart to /healthz p50 %.0f ms, max %.0f ms; "+
		"%d registrations and %d check-ins acknowledged, none lost; %d requests failed across the kills; "+
		"%d registrations stored without their answer reaching the agent",
		r.Kills, r.Restart.P50, r.Restart.Max, r.Registrations, r.Checkins, r.Failed, r.Unacknowledged)
}
