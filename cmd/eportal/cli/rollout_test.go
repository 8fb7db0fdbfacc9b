package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portal/store"
)

// TestRolloutCommands: a feed's policy shown with its defaults, changed
// field by field, refused when out of bounds; a key's window; a patchset
// marked urgent; and the rollouts listed and acted on, each change in the
// audit log.
func TestRolloutCommands(t *testing.T) {
	d := []string{"--data", t.TempDir()}
	eportal := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, "", append(args, d...)...)
	}
	stdout, stderr, code := eportal("rollout", "policy", "main")
	want := `feed:                 main
waves:                none (every patchset at once)
soak:                 4h0m0s
auto-rollback:        true
max-failures:         0
max-warnings:         0
max-oopses:           0
max-taints:           0
max-reboots:          0
max-silent:           0
silent-after:         12h0m0s
min-checked-in:       90%
window:               none
urgent-skips-window:  false
`
	if code != 0 || stdout != want {
		t.Fatalf("rollout policy main: exit %d\n%s%s\nwant\n%s", code, stdout, stderr, want)
	}
	stdout, stderr, code = eportal("rollout", "policy", "main", "--waves", "1,10,50,100", "--soak", "2h", "--max-warnings", "2",
		"--window", "Sat,Sun  02:00-05:00 Europe/Berlin", "--urgent-skips-window")
	for _, line := range []string{"waves:                1,10,50,100\n", "soak:                 2h0m0s\n", "max-warnings:         2\n",
		"window:               Sat,Sun 02:00-05:00 Europe/Berlin\n", "urgent-skips-window:  true\n", "auto-rollback:        true\n"} {
		if code != 0 || !strings.Contains(stdout, line) {
			t.Errorf("rollout policy main with flags: exit %d, stdout lacks %q\n%s%s", code, line, stdout, stderr)
		}
	}
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"rollout", "policy", "main", "--waves", "50,10,100"}, 2, "--waves: bad waves \"50,10,100\": each wave must be larger than the one before"},
		{[]string{"rollout", "policy", "main", "--window", "Someday 01:00-02:00"}, 2, "--window: bad maintenance window"},
		{[]string{"rollout", "policy", "main", "--min-checked-in", "101"}, 1, "min checked in 101%: 0 to 100"},
		{[]string{"rollout", "policy", "nosuch"}, 1, "not found"},
		{[]string{"rollout", "pause", "x"}, 2, `rollout id "x"`},
		{[]string{"rollout", "pause", "7"}, 1, "not found"},
		{[]string{"key", "window", "nosuch", "Sat 01:00-02:00"}, 1, "not found"},
		{[]string{"patchset", "urgent", "K20261127_01"}, 1, "not found"},
	} {
		if _, stderr, code := eportal(tt.args...); code != tt.code || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("eportal %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), code, stderr, tt.code, tt.stderr)
		}
	}
	if stdout, stderr, code := eportal("key", "add", "--key", "k-web"); code != 0 {
		t.Fatalf("key add: %s%s", stdout, stderr)
	}
	if stdout, _, code := eportal("key", "window", "k-web", "Mon-Fri 22:00-02:00"); code != 0 || stdout != "maintenance window: Mon-Fri 22:00-02:00\n" {
		t.Errorf("key window: exit %d, %q", code, stdout)
	}
	if stdout, _, code := eportal("key", "window", "k-web"); code != 0 || stdout != "maintenance window removed; the feed's applies\n" {
		t.Errorf("key window without spec: exit %d, %q", code, stdout)
	}
	if stdout, _, code := eportal("rollout", "list"); code != 0 || stdout != "ID  FEED  PATCHSET  STATE  WAVE  WAVES  URGENT  REASON\n" {
		t.Errorf("rollout list with none: exit %d, %q", code, stdout)
	}

	// A patchset published into main now rolls out in its waves.
	st, err := store.Open(context.Background(), d[1], "")
	if err != nil {
		t.Fatal(err)
	}
	err = st.AddLevel(context.Background(), &store.Level{BuildID: "eb4fbcd037e7253717950bf2b93bd5566f47c56f", KernelID: "9a5c3e1f0b7d2468ace13579bdf02468ace13579",
		Release: "6.1.0-56-amd64", Level: 1, Patchset: "K20261127_01", Digest: strings.Repeat("ab", 32), Size: 1, EffectiveRelease: "6.1.0-56-amd64"})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	want = "ID  FEED  PATCHSET      STATE    WAVE  WAVES        URGENT  REASON\n1   main  K20261127_01  running  1     1,10,50,100  false   -\n"
	if stdout, _, code := eportal("rollout", "list"); code != 0 || stdout != want {
		t.Errorf("rollout list: exit %d\n%s\nwant\n%s", code, stdout, want)
	}
	for _, tt := range []struct {
		args        []string
		code        int
		stdout, err string
	}{
		{[]string{"patchset", "urgent", "K20261127_01"}, 0, "K20261127_01: urgent\n", ""},
		{[]string{"rollout", "pause", "1"}, 0, "rollout 1 (K20261127_01 in feed main): paused at wave 1\n", ""},
		{[]string{"rollout", "pause", "1"}, 1, "", "pause a rollout that is paused: not allowed in this state"},
		{[]string{"rollout", "promote", "1"}, 0, "rollout 1 (K20261127_01 in feed main): paused at wave 2\n", ""},
		{[]string{"rollout", "rollback", "1"}, 0, "rollout 1 (K20261127_01 in feed main): rolled-back at wave 2\n", ""},
	} {
		stdout, stderr, code := eportal(tt.args...)
		if code != tt.code || stdout != tt.stdout || !strings.Contains(stderr, tt.err) {
			t.Errorf("eportal %s: exit %d, stdout %q, stderr %q; want exit %d, %q, %q", strings.Join(tt.args, " "), code, stdout, stderr, tt.code, tt.stdout, tt.err)
		}
	}
	stdout, _, _ = eportal("rollout", "show", "1")
	if want := "rollout 1: K20261127_01 in feed main, rolled-back at wave 2 of 1,10,50,100, urgent\nlast change: rollback by cli\nWAVE"; !strings.HasPrefix(stdout, want) {
		t.Errorf("rollout show:\n%s\nwant it to start\n%s", stdout, want)
	}
}
