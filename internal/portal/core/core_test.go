package core_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/mirror"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
)

var testNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// brokenAudit is a store whose audit log cannot be written.
type brokenAudit struct{ store.Store }

func (brokenAudit) Audit(context.Context, store.AuditEntry) error { return errors.New("disk full") }

// TestAuditFailureLogged: a change whose audit record cannot be written
// is made, and the record goes to the log in full, its key masked.
func TestAuditFailureLogged(t *testing.T) {
	var logBuf bytes.Buffer
	st := storetest.Open(t, "sqlite")
	c := core.New(core.Config{Store: brokenAudit{st}, Log: slog.New(slog.NewTextHandler(&logBuf, nil)), Now: func() time.Time { return testNow }})
	ctx := context.Background()
	k := &store.Key{Key: "acme-secret-key", Note: "web"}
	if err := c.AddKey(ctx, core.CLI, k); err != nil {
		t.Fatalf("AddKey with a broken audit log: %v, want the key added", err)
	}
	if _, err := st.Key(ctx, "acme-secret-key"); err != nil {
		t.Errorf("the key is not stored: %v", err)
	}
	got := logBuf.String()
	for _, want := range []string{"level=ERROR", `msg="audit log: record not written"`, "error=\"disk full\"", "action=key.add", "object=acm…", "actor=cli"} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "acme-secret-key") {
		t.Errorf("the log names the key:\n%s", got)
	}
}

// TestAuditEveryChange: each change through the core leaves one entry
// with its actor, address, object and before/after.
func TestAuditEveryChange(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	c := core.New(core.Config{Store: st, Now: func() time.Time { return testNow }})
	ctx := context.Background()
	alice := core.Actor{Name: "alice", IP: "192.0.2.7"}
	if err := c.AddFeed(ctx, alice, &store.Feed{Name: "slow"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EditFeed(ctx, alice, "slow", func(f *store.Feed) { f.Auto = true }); err != nil {
		t.Fatal(err)
	}
	if err := c.AddIPLicense(ctx, alice, &store.IPLicense{CIDR: "198.51.100.9/24", Feed: "slow"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteIPLicense(ctx, alice, "198.51.100.77/24"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteFeed(ctx, alice, "slow"); err != nil {
		t.Fatal(err)
	}
	list, err := c.AuditLog(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(list) - 1; i >= 0; i-- {
		e := list[i]
		got = append(got, e.Actor+" "+e.IP+" "+e.Action+" "+e.Object+" before="+e.Before+" after="+e.After)
	}
	want := []string{
		`alice 192.0.2.7 feed.add slow before= after={"auto":false,"channel":"stable","deploy_after_hours":0,"name":"slow"}`,
		`alice 192.0.2.7 feed.edit slow before={"auto":false,"channel":"stable","deploy_after_hours":0,"name":"slow"} after={"auto":true,"channel":"stable","deploy_after_hours":0,"name":"slow"}`,
		`alice 192.0.2.7 ip.add 198.51.100.0/24 before= after={"cidr":"198.51.100.0/24","feed":"slow","note":""}`,
		`alice 192.0.2.7 ip.delete 198.51.100.0/24 before={"cidr":"198.51.100.0/24","feed":"slow","note":""} after=`,
		`alice 192.0.2.7 feed.delete slow before={"auto":true,"channel":"stable","deploy_after_hours":0,"name":"slow"} after=`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSyncOneReplicaAtATime: of two replicas on one PostgreSQL database,
// one syncs from the upstream at a time; the other is told so, and syncs
// once the first is done.
func TestSyncOneReplicaAtATime(t *testing.T) {
	dsn := storetest.FreshPostgres(t)
	ctx := context.Background()
	open := func() store.Store { return storetest.Replica(t, dsn) }
	other, st := open(), open()
	c := core.New(core.Config{Store: st, DataDir: t.TempDir(), Now: func() time.Time { return testNow }})
	unlock, ok, err := other.TryLock(ctx, "sync")
	if err != nil || !ok {
		t.Fatalf("the other replica takes the sync lock: %v, %v", ok, err)
	}
	upstream := mirror.Syncer{Upstream: "http://127.0.0.1:1", Token: "t", DataDir: t.TempDir()}
	if _, err := c.Sync(ctx, core.CLI, upstream); !errors.Is(err, core.ErrSyncing) {
		t.Errorf("Sync while the other replica syncs: %v, want ErrSyncing", err)
	}
	unlock()
	if _, err := c.Sync(ctx, core.CLI, upstream); errors.Is(err, core.ErrSyncing) {
		t.Errorf("Sync once the other replica is done: %v", err)
	}
}
