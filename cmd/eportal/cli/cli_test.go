package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kcare/kcare/internal/portal/store"
)

func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var o, e bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

func TestAdminCommands(t *testing.T) {
	data := t.TempDir()
	d := []string{"--data", data}
	steps := []struct {
		stdin  string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"", []string{"key", "add", "--key", "k-web", "--note", "web servers", "--limit", "10"}, 0, "k-web\n", ""},
		{"", []string{"key", "add", "--key", "k-web"}, 1, "", "exists"},
		{"", []string{"key", "add", "--sticky", "321326"}, 2, "", "--sticky"},
		{"", []string{"key", "add", "--ip-range", "not-a-cidr"}, 1, "", "ip"},
		{"", []string{"feed", "add", "slow", "--deploy-after", "48"}, 0, "", ""},
		{"", []string{"feed", "add", "odd", "--channel", "beta"}, 2, "", "--channel"},
		{"", []string{"key", "edit", "k-web", "--feed", "slow", "--sticky", "2026-11-20"}, 0, "", ""},
		{"", []string{"key", "list"}, 0, "k-web  slow  10     0        2026-11-20", ""},
		{"", []string{"feed", "list"}, 0, "slow  stable   48h", ""},
		{"", []string{"feed", "delete", "slow"}, 0, "", ""},
		{"", []string{"key", "list"}, 0, "k-web  main  10", ""},
		{"", []string{"feed", "delete", "main"}, 1, "", "main"},
		{"", []string{"patchset", "list", "--feed", "main"}, 0, "PATCHSET", ""},
		{"", []string{"patchset", "enable", "K20261127_01"}, 1, "", "not found"},
		{"correct horse battery\n", []string{"user", "add", "alice", "--role", "admin"}, 0, "", ""},
		{"short\n", []string{"user", "add", "bob"}, 1, "", "too short"},
		{"", []string{"user", "list"}, 0, "alice  admin", ""},
		{"", []string{"token", "add", "--user", "nobody"}, 1, "", "nobody"},
		{"", []string{"ip", "add", "192.0.2.0/24", "--note", "lab"}, 0, "", ""},
		{"", []string{"ip", "list"}, 0, "192.0.2.0/24  main  lab", ""},
		{"", []string{"server", "clean"}, 2, "", "--inactive"},
		{"", []string{"server", "clean", "--inactive", "30"}, 0, "0 servers deleted", ""},
		{"", []string{"key", "delete", "k-web"}, 0, "", ""},
		{"", []string{"key", "delete", "k-web"}, 1, "", "not found"},
		{"", []string{"frob"}, 2, "", "unknown command"},
		{"", []string{"key"}, 2, "", "unknown command \"--data\""},
	}
	for _, s := range steps {
		args := append(append([]string{}, s.args...), d...)
		stdout, stderr, code := run(t, s.stdin, args...)
		if code != s.code || !strings.Contains(stdout, s.stdout) || !strings.Contains(stderr, s.stderr) {
			t.Errorf("eportal %s: exit %d\nstdout %q\nstderr %q\nwant exit %d, stdout containing %q, stderr containing %q",
				strings.Join(s.args, " "), code, stdout, stderr, s.code, s.stdout, s.stderr)
		}
	}
	tok, _, code := run(t, "", "token", "add", "--user", "alice", "--data", data)
	if code != 0 || len(strings.TrimSpace(tok)) != 40 {
		t.Errorf("token add: exit %d, %q; want a 40-character token", code, tok)
	}
}

// TestServerListEscapes: a hostname with a newline and a tab, stored
// before check-ins were validated, stays in its row and column.
func TestServerListEscapes(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddKey(ctx, &store.Key{Key: "k-web", Feed: "main"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Register(ctx, "k-web", &store.Server{ID: "srv-1", Hostname: "evil\nsrv-2\tfake", IP: "192.0.2.20"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	stdout, stderr, code := run(t, "", "server", "list", "--data", data)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[1], `srv-1  evil\x0asrv-2\x09fake  192.0.2.20  k-web`) {
		t.Errorf("server list: exit %d\n%s%s\nwant a header and one row for srv-1", code, stdout, stderr)
	}
}

// TestAuditMasksKeys: a key added, edited and deleted with the CLI, and a
// server of it deleted, leave audit entries that show the key masked,
// never whole.
func TestAuditMasksKeys(t *testing.T) {
	const key = "k-cli-audit-8d2f4a6c0e"
	data := t.TempDir()
	ctx := context.Background()
	for _, args := range [][]string{
		{"key", "add", "--key", key, "--note", "cli audit"},
		{"key", "edit", key, "--limit", "3"},
	} {
		if _, stderr, code := run(t, "", append(args, "--data", data)...); code != 0 {
			t.Fatalf("eportal %s: exit %d %s", strings.Join(args, " "), code, stderr)
		}
	}
	st, err := store.Open(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Register(ctx, key, &store.Server{ID: "srv-1", Hostname: "web1", IP: "192.0.2.20"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, args := range [][]string{{"server", "delete", "srv-1"}, {"key", "delete", key}} {
		if _, stderr, code := run(t, "", append(args, "--data", data)...); code != 0 {
			t.Fatalf("eportal %s: exit %d %s", strings.Join(args, " "), code, stderr)
		}
	}
	st, err = store.Open(ctx, data, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	entries, err := st.AuditLog(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Errorf("%d audit entries, want 4 (key.add, key.edit, server.delete, key.delete)", len(entries))
	}
	for _, e := range entries {
		for name, v := range map[string]string{"object": e.Object, "detail": e.Detail, "before": e.Before, "after": e.After} {
			for _, piece := range []string{key, key[4:], key[len(key)-8:]} {
				if strings.Contains(v, piece) {
					t.Errorf("audit %s: %s holds %q of the key: %s", e.Action, name, piece, v)
				}
			}
		}
		if strings.HasPrefix(e.Action, "key.") && e.Object != "k-cl…" {
			t.Errorf("audit %s: object %q, want k-cl…", e.Action, e.Object)
		}
	}
}
