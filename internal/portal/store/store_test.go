package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kcare/kcare/internal/apitype"
)

const (
	buildDebian = "eb4fbcd037e7253717950bf2b93bd5566f47c56f" // 6.1.0-56-amd64
	relDebian   = "6.1.0-56-amd64"
	kidDebian   = "9a5c3e1f0b7d2468ace13579bdf02468ace13579"
	buildUbuntu = "0f9e8d7c6b5a49382716059483726150fedcba98" // 5.15.0-76-generic
	relUbuntu   = "5.15.0-76-generic"
	kidUbuntu   = "1234567890abcdef1234567890abcdef12345678"
)

// t0 is a fixed point in time the tests count from.
var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// TestStore runs every behaviour against SQLite and PostgreSQL.
func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" {
				postgresDSN(t)
			}
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) { c.run(t, b) })
			}
		})
	}
}

var suite = []struct {
	name string
	run  func(t *testing.T, b backend)
}{
	{"migrations", testMigrations},
	{"concurrent-open", testConcurrentOpen},
	{"levels", testLevels},
	{"visible-levels", testVisibleLevels},
	{"set-patchsets", testSetPatchsets},
	{"feeds", testFeeds},
	{"feed-order", testFeedOrder},
	{"delete-feed", testDeleteFeed},
	{"keys", testKeys},
	{"register", testRegister},
	{"register-concurrent", testRegisterConcurrent},
	{"ip-licenses", testIPLicenses},
	{"check-in", testCheckIn},
	{"servers-filter", testServersFilter},
	{"servers-filter-sticky-delay", testServersFilterStickyDelay},
	{"clean-servers", testCleanServers},
	{"clean-servers-batches", testCleanServersBatches},
	{"users-tokens", testUsersTokens},
	{"audit", testAudit},
	{"version", testVersion},
	{"seed", testSeed},
	{"check-in-history", testCheckinHistory},
	{"check-in-history-changes", testCheckinHistoryChanges},
	{"check-in-concurrent", testCheckInConcurrent},
	{"agent-server", testAgentServer},
	{"shared", testShared},
	{"servers-keyset", testServersKeyset},
	{"servers-state", testServersState},
	{"audit-query", testAuditQuery},
	{"sessions", testSessions},
	{"server-health", testServerHealth},
	{"rollouts", testRollouts},
	{"rollout-members", testRolloutMembers},
	{"windows-urgent-coverage", testWindowsUrgentCoverage},
}

func digest(build string, level int) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s/%d", build, level))
	return hex.EncodeToString(h[:])
}

// level makes a level of the Debian or Ubuntu test kernel.
func level(build string, n int, patchset string, channel apitype.Channel, released time.Time) *Level {
	rel, kid := relDebian, kidDebian
	if build == buildUbuntu {
		rel, kid = relUbuntu, kidUbuntu
	}
	return &Level{
		BuildID: build, KernelID: kid, Release: rel, Level: n,
		Patchset: patchset, Channel: channel, Digest: digest(build, n), Size: 40960 + int64(n),
		Signature:        []byte("-----BEGIN PGP SIGNATURE-----\n...\n-----END PGP SIGNATURE-----\n"),
		Manifest:         fmt.Appendf(nil, `{"level":%d}`, n),
		EffectiveRelease: rel,
		CVEs: []CVE{{ID: fmt.Sprintf("CVE-2026-%05d", 1000+n), Description: "use-after-free in nf_tables",
			URL: "https://security-tracker.debian.org/tracker/CVE-2026-01000"}},
		Released:  released,
		Published: released.Add(time.Hour),
	}
}

func addLevels(t *testing.T, s Store, ls ...*Level) {
	t.Helper()
	for _, l := range ls {
		if err := s.AddLevel(t.Context(), l); err != nil {
			t.Fatalf("AddLevel(%s/%d): %v", l.BuildID, l.Level, err)
		}
	}
}

func check(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

func levelNums(ls []Level) []int {
	n := []int{}
	for _, l := range ls {
		n = append(n, l.Level)
	}
	return n
}

func serverIDs(vs []Server) []string {
	ids := []string{}
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	return ids
}

func version(t *testing.T, s Store) int64 {
	t.Helper()
	v, err := s.Version(t.Context())
	check(t, "Version", err)
	return v
}

func testMigrations(t *testing.T, b backend) {
	dir, dsn := b.fresh(t)
	s1 := openAt(t, dir, dsn)
	ctx := t.Context()
	check(t, "AddKey", s1.AddKey(ctx, &Key{Key: "kc-7f3a9e", Limit: 5}))
	v1 := version(t, s1)
	check(t, "Close", s1.Close())

	s2 := openAt(t, dir, dsn)
	if v := version(t, s2); v != v1 {
		t.Errorf("Version after reopening = %d, want %d", v, v1)
	}
	if _, err := s2.Key(ctx, "kc-7f3a9e"); err != nil {
		t.Errorf("Key after reopening: %v", err)
	}
	feeds, err := s2.Feeds(ctx)
	check(t, "Feeds", err)
	if len(feeds) != 1 || feeds[0].Name != "main" || feeds[0].Channel != "stable" || !feeds[0].Auto {
		t.Errorf("Feeds = %+v, want main alone (stable, auto)", feeds)
	}
	assertSchemaVersion(t, s2)
}

// assertSchemaVersion checks every migration is recorded exactly once.
func assertSchemaVersion(t *testing.T, s Store) {
	t.Helper()
	db := s.(*sqlStore).r
	var n, v int
	err := db.QueryRowContext(t.Context(), `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &v)
	check(t, "read schema_migrations", err)
	if n != len(migrations) || v != len(migrations) {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d", n, v, len(migrations))
	}
}

func testConcurrentOpen(t *testing.T, b backend) {
	dir, dsn := b.fresh(t)
	var wg sync.WaitGroup
	stores := make([]Store, 2)
	errs := make([]error, 2)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), dir, dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	assertSchemaVersion(t, stores[0])
	feeds, err := stores[1].Feeds(t.Context())
	check(t, "Feeds", err)
	if len(feeds) != 1 {
		t.Errorf("got %d feeds, want main alone", len(feeds))
	}
}

func testLevels(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	l1 := level(buildDebian, 1, "K20261120_01", "stable", t0.Add(-7*24*time.Hour))
	l2 := level(buildDebian, 2, "K20261127_01", "stable", t0)
	u1 := level(buildUbuntu, 1, "K20261127_01", "stable", t0.Add(2*time.Hour))
	addLevels(t, s, l2, u1, l1)
	if l1.ID == 0 || l2.ID == l1.ID {
		t.Errorf("AddLevel IDs %d, %d: want distinct and non-zero", l1.ID, l2.ID)
	}

	dup := level(buildDebian, 2, "K20261127_02", "stable", t0)
	wantErr(t, "AddLevel duplicate", s.AddLevel(ctx, dup), ErrExists)
	for _, bad := range []*Level{
		{BuildID: buildDebian, Level: 3, Patchset: "K20261127_01"},                                                  // no digest
		{BuildID: buildDebian, Level: 3, Patchset: "K20261127_01", Digest: digest(buildDebian, 3), Channel: "beta"}, // channel
		{Level: 3, Patchset: "K20261127_01", Digest: digest(buildDebian, 3)},                                        // no build-id
	} {
		wantErr(t, "AddLevel invalid", s.AddLevel(ctx, bad), ErrInvalidInput)
	}

	got, err := s.Levels(ctx, buildDebian)
	check(t, "Levels", err)
	if diff := cmp.Diff([]Level{*l1, *l2}, got); diff != "" {
		t.Errorf("Levels(%s) mismatch (-want +got):\n%s", buildDebian, diff)
	}
	got, err = s.LevelsByKernelID(ctx, kidUbuntu)
	check(t, "LevelsByKernelID", err)
	if diff := cmp.Diff([]Level{*u1}, got); diff != "" {
		t.Errorf("LevelsByKernelID mismatch (-want +got):\n%s", diff)
	}
	l, err := s.LevelByDigest(ctx, l2.Digest)
	check(t, "LevelByDigest", err)
	if diff := cmp.Diff(l2, l); diff != "" {
		t.Errorf("LevelByDigest mismatch (-want +got):\n%s", diff)
	}
	_, err = s.LevelByDigest(ctx, digest(buildDebian, 9))
	wantErr(t, "LevelByDigest unknown", err, ErrNotFound)
	if got, err := s.Levels(ctx, "0000000000000000000000000000000000000000"); err != nil || len(got) != 0 {
		t.Errorf("Levels(unknown) = %v, %v; want none", got, err)
	}

	ps, err := s.Patchsets(ctx)
	check(t, "Patchsets", err)
	want := []Patchset{
		{Name: "K20261120_01", Released: l1.Released, Levels: 1},
		{Name: "K20261127_01", Released: u1.Released, Levels: 2}, // the newer of its two levels
	}
	if diff := cmp.Diff(want, ps); diff != "" {
		t.Errorf("Patchsets mismatch (-want +got):\n%s", diff)
	}
}

func testVisibleLevels(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed test", s.AddFeed(ctx, &Feed{Name: "test", Channel: "test", Auto: true}))
	check(t, "AddFeed pinned", s.AddFeed(ctx, &Feed{Name: "pinned"}))
	addLevels(t, s,
		level(buildDebian, 1, "K20261120_01", "stable", t0.Add(-7*24*time.Hour)),
		level(buildDebian, 2, "K20261127_01", "stable", t0),
		level(buildDebian, 3, "K20261204_01", "test", t0.Add(7*24*time.Hour)),
		level(buildUbuntu, 1, "K20261127_01", "stable", t0),
	)
	check(t, "enable in pinned", s.SetPatchsets(ctx, "pinned", []string{"K20261120_01"}, true))
	check(t, "AddFeed late", s.AddFeed(ctx, &Feed{Name: "late", Auto: true}))

	tests := []struct {
		name, feed, build string
		want              []int
	}{
		{"main-sees-stable", "main", buildDebian, []int{1, 2}},
		{"test-sees-test-channel", "test", buildDebian, []int{1, 2, 3}},
		{"pinned-sees-enabled-only", "pinned", buildDebian, []int{1}},
		{"feed-added-later-sees-none", "late", buildDebian, []int{}},
		{"other-kernel", "main", buildUbuntu, []int{1}},
		{"unknown-kernel", "main", "ffffffffffffffffffffffffffffffffffffffff", []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.VisibleLevels(ctx, tt.feed, tt.build)
			check(t, "VisibleLevels", err)
			if diff := cmp.Diff(tt.want, levelNums(got)); diff != "" {
				t.Errorf("VisibleLevels(%s, %s) mismatch (-want +got):\n%s", tt.feed, tt.build, diff)
			}
		})
	}

	check(t, "disable in main", s.SetPatchsets(ctx, "main", []string{"K20261127_01"}, false))
	check(t, "enable test channel in main", s.SetPatchsets(ctx, "main", []string{"K20261204_01"}, true))
	got, err := s.VisibleLevels(ctx, "main", buildDebian)
	check(t, "VisibleLevels", err)
	if diff := cmp.Diff([]int{1}, levelNums(got)); diff != "" {
		t.Errorf("main after disabling K20261127_01 (-want +got):\n%s", diff)
	}
	got, err = s.VisibleLevels(ctx, "test", buildDebian)
	check(t, "VisibleLevels", err)
	if diff := cmp.Diff([]int{1, 2, 3}, levelNums(got)); diff != "" {
		t.Errorf("test after disabling in main (-want +got):\n%s", diff)
	}
	_, err = s.VisibleLevels(ctx, "nosuchfeed", buildDebian)
	wantErr(t, "VisibleLevels of unknown feed", err, ErrNotFound)

	// A patchset published after a level is disabled stays disabled when
	// another kernel's level joins it.
	addLevels(t, s, level(buildUbuntu, 2, "K20261127_01", "stable", t0.Add(time.Hour)))
	got, err = s.VisibleLevels(ctx, "main", buildUbuntu)
	check(t, "VisibleLevels", err)
	if diff := cmp.Diff([]int{}, levelNums(got)); diff != "" {
		t.Errorf("main, Ubuntu, after K20261127_01 was disabled (-want +got):\n%s", diff)
	}
}

func testSetPatchsets(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "custom"}))
	addLevels(t, s,
		level(buildDebian, 1, "K20261120_01", "stable", t0.Add(-time.Hour)),
		level(buildDebian, 2, "K20261127_01", "stable", t0),
	)
	wantErr(t, "unknown feed", s.SetPatchsets(ctx, "nosuchfeed", []string{"K20261120_01"}, true), ErrNotFound)
	wantErr(t, "unknown patchset", s.SetPatchsets(ctx, "custom", []string{"K20261120_01", "K19990101_01"}, true), ErrNotFound)
	_, err := s.FeedPatchsets(ctx, "nosuchfeed")
	wantErr(t, "FeedPatchsets of unknown feed", err, ErrNotFound)

	got, err := s.FeedPatchsets(ctx, "custom")
	check(t, "FeedPatchsets", err)
	want := []FeedPatchset{
		{Feed: "custom", Patchset: "K20261120_01", Enabled: false, Released: t0.Add(-time.Hour)},
		{Feed: "custom", Patchset: "K20261127_01", Enabled: false, Released: t0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FeedPatchsets after a failed SetPatchsets (-want +got):\n%s", diff)
	}
	check(t, "SetPatchsets", s.SetPatchsets(ctx, "custom", []string{"K20261127_01"}, true))
	got, err = s.FeedPatchsets(ctx, "custom")
	check(t, "FeedPatchsets", err)
	want[1].Enabled, want[1].Deployed = true, true
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FeedPatchsets (-want +got):\n%s", diff)
	}
	got, err = s.FeedPatchsets(ctx, "main")
	check(t, "FeedPatchsets main", err)
	if len(got) != 2 || !got[0].Enabled || !got[1].Enabled {
		t.Errorf("FeedPatchsets(main) = %+v, want both enabled", got)
	}
}

func testFeeds(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	f := &Feed{Name: "delayed-24h", DeployAfter: 24 * time.Hour, Auto: true, Created: t0}
	check(t, "AddFeed", s.AddFeed(ctx, f))
	if f.Channel != "stable" {
		t.Errorf("AddFeed channel = %q, want stable by default", f.Channel)
	}
	wantErr(t, "AddFeed duplicate", s.AddFeed(ctx, &Feed{Name: "delayed-24h"}), ErrExists)
	for _, bad := range []Feed{{Name: ""}, {Name: "a b"}, {Name: "x", Channel: "beta"}, {Name: "y", DeployAfter: -time.Hour}} {
		wantErr(t, fmt.Sprintf("AddFeed(%+v)", bad), s.AddFeed(ctx, &bad), ErrInvalidInput)
	}
	got, err := s.Feed(ctx, "delayed-24h")
	check(t, "Feed", err)
	if diff := cmp.Diff(f, got); diff != "" {
		t.Errorf("Feed mismatch (-want +got):\n%s", diff)
	}
	_, err = s.Feed(ctx, "nosuchfeed")
	wantErr(t, "Feed unknown", err, ErrNotFound)

	f.Channel, f.DeployAfter, f.Auto = "test", 48*time.Hour, false
	check(t, "UpdateFeed", s.UpdateFeed(ctx, f))
	got, err = s.Feed(ctx, "delayed-24h")
	check(t, "Feed", err)
	if diff := cmp.Diff(f, got); diff != "" {
		t.Errorf("Feed after UpdateFeed (-want +got):\n%s", diff)
	}
	wantErr(t, "UpdateFeed unknown", s.UpdateFeed(ctx, &Feed{Name: "nosuchfeed"}), ErrNotFound)

	feeds, err := s.Feeds(ctx)
	check(t, "Feeds", err)
	var names []string
	for _, f := range feeds {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{"main", "delayed-24h"}, names); diff != "" {
		t.Errorf("Feeds (-want +got):\n%s", diff)
	}
	wantErr(t, "DeleteFeed main", s.DeleteFeed(ctx, "main"), ErrInUse)
	wantErr(t, "DeleteFeed unknown", s.DeleteFeed(ctx, "nosuchfeed"), ErrNotFound)
}

// testFeedOrder checks the one order of every list of feeds: main first,
// then the others by name, whatever their creation times are — before and
// after the main feed's, which a migration stamps with the day the store was
// made.
func testFeedOrder(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	for _, f := range []Feed{
		{Name: "zeta", Created: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Name: "delayed-48h", DeployAfter: 48 * time.Hour, Created: time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Name: "alpha", Created: t0},
		{Name: "Beta", Created: t0.Add(-time.Hour)},
	} {
		check(t, "AddFeed", s.AddFeed(ctx, &f))
	}
	feeds, err := s.Feeds(ctx)
	check(t, "Feeds", err)
	var names []string
	for _, f := range feeds {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{"main", "Beta", "alpha", "delayed-48h", "zeta"}, names); diff != "" {
		t.Errorf("Feeds (-want +got):\n%s", diff)
	}
}

func testDeleteFeed(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "test", Channel: "test", Auto: true}))
	addLevels(t, s, level(buildDebian, 1, "K20261127_01", "stable", t0))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-test-feed", Feed: "test"}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-main-feed"}))
	check(t, "AddIPLicense", s.AddIPLicense(ctx, &IPLicense{CIDR: "198.51.100.0/24", Feed: "test"}))
	v := version(t, s)

	check(t, "DeleteFeed", s.DeleteFeed(ctx, "test"))
	if got := version(t, s); got <= v {
		t.Errorf("Version after DeleteFeed = %d, want > %d", got, v)
	}
	_, err := s.Feed(ctx, "test")
	wantErr(t, "Feed after delete", err, ErrNotFound)
	k, err := s.Key(ctx, "kc-test-feed")
	check(t, "Key", err)
	if k.Feed != "main" {
		t.Errorf("key feed after DeleteFeed = %q, want main", k.Feed)
	}
	ls, err := s.IPLicenses(ctx)
	check(t, "IPLicenses", err)
	if len(ls) != 1 || ls[0].Feed != "main" {
		t.Errorf("IPLicenses after DeleteFeed = %+v, want one in main", ls)
	}
	var n int
	err = s.(*sqlStore).r.QueryRowContext(ctx, `SELECT COUNT(*) FROM feed_patchsets WHERE feed = 'test'`).Scan(&n)
	check(t, "count feed_patchsets", err)
	if n != 0 {
		t.Errorf("%d feed_patchsets rows left for the deleted feed", n)
	}
	// A feed of the same name starts afresh.
	check(t, "AddFeed again", s.AddFeed(ctx, &Feed{Name: "test", Channel: "test"}))
	got, err := s.VisibleLevels(ctx, "test", buildDebian)
	check(t, "VisibleLevels", err)
	if len(got) != 0 {
		t.Errorf("re-created feed sees levels %v, want none", levelNums(got))
	}
}

func testKeys(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "test", Channel: "test"}))
	k := &Key{Key: "kc-1b9d6bcd", Note: "web farm", Limit: 3, Sticky: "27112026",
		IPRanges: []string{"192.0.2.17/24", "2001:db8::/32", "203.0.113.9"}, Created: t0}
	check(t, "AddKey", s.AddKey(ctx, k))
	if diff := cmp.Diff([]string{"192.0.2.0/24", "2001:db8::/32", "203.0.113.9/32"}, k.IPRanges); diff != "" {
		t.Errorf("AddKey canonical ranges (-want +got):\n%s", diff)
	}
	if k.Feed != "main" {
		t.Errorf("AddKey feed = %q, want main by default", k.Feed)
	}
	wantErr(t, "AddKey duplicate", s.AddKey(ctx, &Key{Key: "kc-1b9d6bcd"}), ErrExists)
	tests := []struct {
		name string
		k    Key
		want error
	}{
		{"bad-cidr", Key{Key: "kc-a", IPRanges: []string{"192.0.2.0/33"}}, ErrInvalidInput},
		{"not-an-address", Key{Key: "kc-b", IPRanges: []string{"example.net"}}, ErrInvalidInput},
		{"negative-limit", Key{Key: "kc-c", Limit: -1}, ErrInvalidInput},
		{"empty-key", Key{Key: ""}, ErrInvalidInput},
		{"space-in-key", Key{Key: "kc d"}, ErrInvalidInput},
		{"unknown-feed", Key{Key: "kc-e", Feed: "nosuchfeed"}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, "AddKey", s.AddKey(ctx, &tt.k), tt.want)
		})
	}
	for i := range 2 {
		v := &Server{ID: fmt.Sprintf("srv-%d", i), Hostname: "web", IP: "192.0.2.10"}
		check(t, "Register", s.Register(ctx, k.Key, v))
	}
	k.Servers = 2
	got, err := s.Key(ctx, k.Key)
	check(t, "Key", err)
	if diff := cmp.Diff(k, got); diff != "" {
		t.Errorf("Key mismatch (-want +got):\n%s", diff)
	}
	_, err = s.Key(ctx, "kc-none")
	wantErr(t, "Key unknown", err, ErrNotFound)

	k.Note, k.Limit, k.Feed, k.Sticky, k.IPRanges = "web farm, phase 2", 0, "test", "", nil
	check(t, "UpdateKey", s.UpdateKey(ctx, k))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-2", Created: t0.Add(time.Hour)}))
	keys, err := s.Keys(ctx)
	check(t, "Keys", err)
	want := []Key{*k, {Key: "kc-2", Feed: "main", Created: t0.Add(time.Hour)}}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("Keys after UpdateKey (-want +got):\n%s", diff)
	}
	wantErr(t, "UpdateKey unknown", s.UpdateKey(ctx, &Key{Key: "kc-none"}), ErrNotFound)
	wantErr(t, "UpdateKey bad range", s.UpdateKey(ctx, &Key{Key: "kc-2", IPRanges: []string{"10.0.0.0/40"}}), ErrInvalidInput)

	check(t, "DeleteKey", s.DeleteKey(ctx, k.Key))
	_, err = s.Server(ctx, "srv-0")
	wantErr(t, "Server of deleted key", err, ErrNotFound)
	wantErr(t, "DeleteKey again", s.DeleteKey(ctx, k.Key), ErrNotFound)
	if n, err := s.CountServers(ctx); err != nil || n != 0 {
		t.Errorf("CountServers = %d, %v; want 0", n, err)
	}
}

func testRegister(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-ranged", Limit: 2, IPRanges: []string{"192.0.2.0/24", "2001:db8::/32"}}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-unlimited"}))
	tests := []struct {
		name, key, id, ip string
		want              error
	}{
		{"unknown-key", "kc-nosuchkey", "s1", "192.0.2.10", ErrInvalidKey},
		{"outside-ranges", "kc-ranged", "s2", "198.51.100.7", ErrIPNotAllowed},
		{"unparsable-ip", "kc-ranged", "s3", "not-an-ip", ErrIPNotAllowed},
		{"inside-v4", "kc-ranged", "s4", "192.0.2.10", nil},
		{"inside-v6", "kc-ranged", "s5", "2001:db8::1", nil},
		{"limit-reached", "kc-ranged", "s6", "192.0.2.11", ErrLimitReached},
		{"duplicate-id", "kc-unlimited", "s4", "192.0.2.10", ErrExists},
		{"empty-id", "kc-unlimited", "", "192.0.2.10", ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Server{ID: tt.id, Hostname: "web-01.example.net", IP: tt.ip, Release: relDebian, BuildID: buildDebian}
			err := s.Register(ctx, tt.key, v)
			if tt.want == nil {
				check(t, "Register", err)
				return
			}
			wantErr(t, "Register", err, tt.want)
		})
	}

	// Limit 0 is unlimited.
	for i := range 25 {
		v := &Server{ID: fmt.Sprintf("u-%02d", i), Hostname: "web", IP: "203.0.113.5"}
		check(t, "Register unlimited", s.Register(ctx, "kc-unlimited", v))
	}
	k, err := s.Key(ctx, "kc-unlimited")
	check(t, "Key", err)
	if k.Servers != 25 {
		t.Errorf("unlimited key has %d servers, want 25", k.Servers)
	}

	v := &Server{ID: "full", SecretHash: []byte{1, 2, 3}, Hostname: "db-01.example.net", IP: "192.0.2.20",
		Release: relDebian, BuildID: buildDebian, KernelID: kidDebian, EffectiveRelease: relDebian,
		AgentVersion: "1.0.0", Tags: "env:prod", Registered: t0}
	check(t, "Register", s.Register(ctx, "kc-unlimited", v))
	got, err := s.Server(ctx, "full")
	check(t, "Server", err)
	want := *v
	want.Key = "kc-unlimited"
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("Server after Register (-want +got):\n%s", diff)
	}
}

// testRegisterConcurrent registers 200 servers at once under a key with
// a limit of 10, through two stores on one database as two portal
// processes would.
func testRegisterConcurrent(t *testing.T, b backend) {
	dir, dsn := b.fresh(t)
	s, s2 := openAt(t, dir, dsn), openAt(t, dir, dsn)
	ctx := t.Context()
	const limit, tries = 10, 200
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-race", Limit: limit}))
	var wg sync.WaitGroup
	errs := make([]error, tries)
	start := time.Now()
	for i := range tries {
		wg.Go(func() {
			v := &Server{ID: fmt.Sprintf("race-%03d", i), Hostname: "web", IP: "192.0.2.1"}
			errs[i] = []Store{s, s2}[i%2].Register(ctx, "kc-race", v)
		})
	}
	wg.Wait()
	t.Logf("%d concurrent registrations on %s took %v", tries, b.name, time.Since(start))
	ok, full := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrLimitReached):
			full++
		default:
			t.Errorf("Register: %v", err)
		}
	}
	if ok != limit || full != tries-limit {
		t.Errorf("got %d registered and %d refused, want %d and %d", ok, full, limit, tries-limit)
	}
	if n, err := s.CountServers(ctx); err != nil || n != limit {
		t.Errorf("CountServers = %d, %v; want %d", n, err, limit)
	}
}

func testIPLicenses(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "test", Channel: "test"}))
	l := &IPLicense{CIDR: "198.51.100.77/24", Note: "office", Created: t0}
	check(t, "AddIPLicense", s.AddIPLicense(ctx, l))
	if l.CIDR != "198.51.100.0/24" || l.Feed != "main" {
		t.Errorf("AddIPLicense made %s in %s, want 198.51.100.0/24 in main", l.CIDR, l.Feed)
	}
	check(t, "AddIPLicense narrower", s.AddIPLicense(ctx, &IPLicense{CIDR: "198.51.100.128/25", Feed: "test", Created: t0.Add(time.Minute)}))
	wantErr(t, "AddIPLicense duplicate", s.AddIPLicense(ctx, &IPLicense{CIDR: "198.51.100.0/24"}), ErrExists)
	wantErr(t, "AddIPLicense invalid", s.AddIPLicense(ctx, &IPLicense{CIDR: "198.51.100.0/99"}), ErrInvalidInput)
	wantErr(t, "AddIPLicense unknown feed", s.AddIPLicense(ctx, &IPLicense{CIDR: "203.0.113.0/24", Feed: "x"}), ErrNotFound)
	ls, err := s.IPLicenses(ctx)
	check(t, "IPLicenses", err)
	if len(ls) != 2 || ls[0].CIDR != "198.51.100.0/24" || ls[1].Feed != "test" {
		t.Errorf("IPLicenses = %+v", ls)
	}

	v := &Server{ID: "ip-1", Hostname: "build-01.example.net", IP: "198.51.100.200", Release: relDebian,
		BuildID: buildDebian, Level: 1, Registered: t0, LastCheckin: t0}
	check(t, "UpsertIPServer", s.UpsertIPServer(ctx, v, "main"))
	v.Level, v.LastCheckin, v.Registered = 2, t0.Add(time.Hour), t0.Add(time.Hour)
	check(t, "UpsertIPServer again", s.UpsertIPServer(ctx, v, "test"))
	got, err := s.Server(ctx, "ip-1")
	check(t, "Server", err)
	if got.Key != "" || got.Level != 2 || !got.LastCheckin.Equal(t0.Add(time.Hour)) || !got.Registered.Equal(t0) {
		t.Errorf("IP server = %+v, want key \"\", level 2, checked in at %v, registered at %v", got, t0.Add(time.Hour), t0)
	}
	// The feed the caller gives is kept, the last one given.
	vs, err := s.Servers(ctx, ServerFilter{Feed: "test"})
	check(t, "Servers", err)
	if diff := cmp.Diff([]string{"ip-1"}, serverIDs(vs)); diff != "" {
		t.Errorf("Servers in feed test (-want +got):\n%s", diff)
	}
	err = s.UpsertIPServer(ctx, &Server{ID: "ip-2", IP: "203.0.113.1"}, "")
	wantErr(t, "UpsertIPServer without a feed", err, ErrInvalidInput)

	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: "keyed", IP: "198.51.100.3"}))
	err = s.UpsertIPServer(ctx, &Server{ID: "keyed", IP: "198.51.100.3"}, "main")
	wantErr(t, "UpsertIPServer over a registered server", err, ErrExists)

	check(t, "DeleteIPLicense", s.DeleteIPLicense(ctx, "198.51.100.77/24"))
	wantErr(t, "DeleteIPLicense again", s.DeleteIPLicense(ctx, "198.51.100.0/24"), ErrNotFound)
}

func testCheckIn(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	v := &Server{ID: "srv-1", Hostname: "web-01", IP: "192.0.2.1", Release: relDebian, BuildID: buildDebian,
		Tags: "env:prod", Registered: t0}
	check(t, "Register", s.Register(ctx, "kc-1", v))
	wantErr(t, "CheckIn unknown", s.CheckIn(ctx, "nosuchserver", Report{At: t0}), ErrNotFound)

	c := Report{Hostname: "web-01.example.net", IP: "192.0.2.2", Release: relDebian, BuildID: buildDebian,
		KernelID: kidDebian, Level: 2, EffectiveRelease: "6.1.0-57-amd64", LastResult: "ok",
		AgentVersion: "1.0.1", At: t0.Add(time.Hour)}
	check(t, "CheckIn", s.CheckIn(ctx, "srv-1", c))
	got, err := s.Server(ctx, "srv-1")
	check(t, "Server", err)
	want := Server{ID: "srv-1", Key: "kc-1", Hostname: c.Hostname, IP: c.IP, Release: c.Release,
		BuildID: c.BuildID, KernelID: c.KernelID, Level: 2, EffectiveRelease: c.EffectiveRelease,
		LastResult: "ok", AgentVersion: "1.0.1", Tags: "env:prod", Registered: t0, LastCheckin: c.At, Updated: c.At}
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("Server after CheckIn (-want +got):\n%s", diff)
	}
	tags := "env:staging;rack:r07"
	c.Tags, c.At = &tags, t0.Add(2*time.Hour)
	check(t, "CheckIn with tags", s.CheckIn(ctx, "srv-1", c))
	got, err = s.Server(ctx, "srv-1")
	check(t, "Server", err)
	if got.Tags != tags || !got.LastCheckin.Equal(c.At) {
		t.Errorf("after CheckIn with tags: tags %q at %v, want %q at %v", got.Tags, got.LastCheckin, tags, c.At)
	}
	check(t, "SetServerTags", s.SetServerTags(ctx, "srv-1", "env:dev"))
	got, err = s.Server(ctx, "srv-1")
	check(t, "Server", err)
	if got.Tags != "env:dev" {
		t.Errorf("tags after SetServerTags = %q, want env:dev", got.Tags)
	}
	wantErr(t, "SetServerTags unknown", s.SetServerTags(ctx, "nosuchserver", ""), ErrNotFound)
	check(t, "DeleteServer", s.DeleteServer(ctx, "srv-1"))
	wantErr(t, "DeleteServer again", s.DeleteServer(ctx, "srv-1"), ErrNotFound)
}

func testServersFilter(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "test", Channel: "test", Auto: true}))
	addLevels(t, s,
		level(buildDebian, 1, "K20261120_01", "stable", t0.Add(-7*24*time.Hour)),
		level(buildDebian, 2, "K20261127_01", "stable", t0),
		level(buildDebian, 3, "K20261127_02", "test", t0.Add(30*time.Minute)),
		// Released after now: no server is allowed it yet.
		level(buildDebian, 4, "K20261204_01", "test", t0.Add(7*24*time.Hour)),
	)
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-main"}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-test", Feed: "test"}))
	now := t0.Add(time.Hour)
	servers := []struct {
		key, id, host, ip, build string
		level                    int
		tags                     string
		checkin                  time.Time // zero: never
	}{
		{"kc-main", "a-web1", "web-01.example.net", "192.0.2.1", buildDebian, 2, "env:prod;role:web", now},
		{"kc-main", "b-web2", "WEB-02.Example.net", "192.0.2.2", buildDebian, 1, "env:prod;role:web", now.Add(-3 * 24 * time.Hour)},
		{"kc-test", "c-db1", "db-01.example.net", "192.0.2.3", buildDebian, 2, "env:staging;role:db", time.Time{}},
		{"kc-test", "d-db2", "db-02.example.net", "192.0.2.4", buildDebian, 3, "env:staging;role:db", now},
		{"kc-main", "e-ubu", "build_01.example.net", "2001:db8::5", buildUbuntu, 0, "", now.Add(-2 * time.Hour)},
		{"kc-main", "f-pct", "100%.example.net", "192.0.2.6", buildDebian, 2, "rack:r07", now},
	}
	for i, v := range servers {
		srv := &Server{ID: v.id, Hostname: v.host, IP: v.ip, BuildID: v.build, Level: v.level, Tags: v.tags,
			Registered: t0.Add(time.Duration(len(servers)-i) * time.Minute)} // registered in reverse order
		check(t, "Register", s.Register(ctx, v.key, srv))
		if !v.checkin.IsZero() {
			c := Report{Hostname: v.host, IP: v.ip, BuildID: v.build, Level: v.level, At: v.checkin}
			check(t, "CheckIn", s.CheckIn(ctx, v.id, c))
		}
	}
	yes, no := true, false
	tests := []struct {
		name string
		f    ServerFilter
		want []string
	}{
		{"all-by-registration", ServerFilter{}, []string{"f-pct", "e-ubu", "d-db2", "c-db1", "b-web2", "a-web1"}},
		{"hostname-substring-any-case", ServerFilter{Hostname: "web-0"}, []string{"b-web2", "a-web1"}},
		{"hostname-underscore-literal", ServerFilter{Hostname: "d_0"}, []string{"e-ubu"}},
		{"hostname-percent-literal", ServerFilter{Hostname: "0%"}, []string{"f-pct"}},
		{"ip", ServerFilter{IP: "192.0.2.3"}, []string{"c-db1"}},
		{"ipv6", ServerFilter{IP: "2001:db8::5"}, []string{"e-ubu"}},
		{"key", ServerFilter{Key: "kc-test"}, []string{"d-db2", "c-db1"}},
		{"feed", ServerFilter{Feed: "test"}, []string{"d-db2", "c-db1"}},
		{"feed-main", ServerFilter{Feed: "main"}, []string{"f-pct", "e-ubu", "b-web2", "a-web1"}},
		{"checkin-older-than-1d-or-never", ServerFilter{CheckinAge: 24 * time.Hour}, []string{"c-db1", "b-web2"}},
		{"checkin-older-than-1h-or-never", ServerFilter{CheckinAge: time.Hour}, []string{"e-ubu", "c-db1", "b-web2"}},
		// main allows 1 and 2, test 1, 2 and 3 (4 is released after now);
		// no levels for Ubuntu counts as updated.
		{"updated", ServerFilter{IsUpdated: &yes}, []string{"f-pct", "e-ubu", "d-db2", "a-web1"}},
		{"not-updated", ServerFilter{IsUpdated: &no}, []string{"c-db1", "b-web2"}},
		{"not-updated-in-test", ServerFilter{IsUpdated: &no, Feed: "test"}, []string{"c-db1"}},
		{"tag", ServerFilter{Tag: "role:web"}, []string{"b-web2", "a-web1"}},
		{"tag-and-checkin", ServerFilter{Tag: "env:staging", CheckinAge: time.Hour}, []string{"c-db1"}},
		{"limit", ServerFilter{Limit: 2}, []string{"f-pct", "e-ubu"}},
		{"limit-offset", ServerFilter{Limit: 2, Offset: 2}, []string{"d-db2", "c-db1"}},
		{"offset-only", ServerFilter{Offset: 4}, []string{"b-web2", "a-web1"}},
		{"no-match", ServerFilter{Hostname: "mail"}, []string{}},
		{"search-hostname", ServerFilter{Search: "WEB-0"}, []string{"b-web2", "a-web1"}},
		{"search-ip", ServerFilter{Search: "0.2.4"}, []string{"d-db2"}},
		{"search-ipv6", ServerFilter{Search: "db8::"}, []string{"e-ubu"}},
		{"search-two-characters", ServerFilter{Search: "d_"}, []string{"e-ubu"}},
		{"search-quote", ServerFilter{Search: `web"`}, []string{}},
		{"search-and-tag", ServerFilter{Search: "example", Tag: "role:db"}, []string{"d-db2", "c-db1"}},
		{"unsupported", ServerFilter{Unsupported: &yes}, []string{"e-ubu"}},
		{"supported", ServerFilter{Unsupported: &no}, []string{"f-pct", "d-db2", "c-db1", "b-web2", "a-web1"}},
		{"unsupported-in-test", ServerFilter{Unsupported: &yes, Feed: "test"}, []string{}},
		// ePortal's filters: the whole value, % for any string.
		{"hostname-like-whole", ServerFilter{HostnameLike: "web-0"}, []string{}},
		{"hostname-like-exact-any-case", ServerFilter{HostnameLike: "web-02.example.NET"}, []string{"b-web2"}},
		{"hostname-like-percent", ServerFilter{HostnameLike: "web-%"}, []string{"b-web2", "a-web1"}},
		{"hostname-like-underscore-literal", ServerFilter{HostnameLike: "build_01%"}, []string{"e-ubu"}},
		{"ip-like-percent", ServerFilter{IPLike: "192.0.2.%"}, []string{"f-pct", "d-db2", "c-db1", "b-web2", "a-web1"}},
		{"registered-older", ServerFilter{RegisteredAge: 57 * time.Minute}, []string{"f-pct", "e-ubu"}},
		{"registered-within", ServerFilter{RegisteredWithin: 57 * time.Minute}, []string{"d-db2", "c-db1", "b-web2", "a-web1"}},
		{"active-within-1h", ServerFilter{ActiveWithin: time.Hour}, []string{"f-pct", "d-db2", "a-web1"}},
	}
	// Each filter three times: as the store reads few servers (through
	// the trigram index, the feed's keys, the unsupported kernels), as it
	// reads many (in the page's order, filtering), and as it reads a
	// window of the first rows in the page's order and then, finding too
	// few there, every server the trigram index names.
	defer func(n, w int) { fewServers, windowRows = n, w }(fewServers, windowRows)
	for _, mode := range []struct {
		name        string
		few, window int
	}{{"few", fewServers, windowRows}, {"many", 0, windowRows}, {"window", 0, 2}} {
		fewServers, windowRows = mode.few, mode.window
		for _, tt := range tests {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				tt.f.Now = now
				if tt.f.Limit == 0 && tt.f.Offset == 0 {
					n, err := s.CountFiltered(ctx, tt.f)
					if err != nil || n != len(tt.want) {
						t.Errorf("CountFiltered = %d, %v; want %d", n, err, len(tt.want))
					}
					if mode.name == "window" {
						tt.f.Limit = 50 // a page, as the web UI asks
					}
				}
				got, err := s.Servers(ctx, tt.f)
				check(t, "Servers", err)
				if diff := cmp.Diff(tt.want, serverIDs(got)); diff != "" {
					t.Errorf("Servers(%+v) (-want +got):\n%s", tt.f, diff)
				}
			})
		}
	}
	if n, err := s.CountFiltered(ctx, ServerFilter{Limit: 2, Offset: 1, Feed: "main"}); err != nil || n != 4 {
		t.Errorf("CountFiltered with a limit = %d, %v; want 4 (the limit ignored)", n, err)
	}
	// A check-in at the same level keeps the time of the last change; a
	// new level moves it.
	updated := func(id string) time.Time {
		t.Helper()
		v, err := s.Server(ctx, id)
		check(t, "Server", err)
		return v.Updated
	}
	check(t, "CheckIn", s.CheckIn(ctx, "a-web1", Report{Hostname: "web-01.example.net", IP: "192.0.2.1", BuildID: buildDebian, Level: 2, At: now.Add(time.Hour)}))
	if got := updated("a-web1"); !got.IsZero() {
		t.Errorf("updated after check-ins at the level it registered with = %v, want none", got)
	}
	check(t, "CheckIn", s.CheckIn(ctx, "a-web1", Report{Hostname: "web-01.example.net", IP: "192.0.2.1", BuildID: buildDebian, Level: 3, At: now.Add(2 * time.Hour)}))
	if got := updated("a-web1"); !got.Equal(now.Add(2 * time.Hour)) {
		t.Errorf("updated after a new level = %v, want %v", got, now.Add(2*time.Hour))
	}
	if got := updated("e-ubu"); !got.IsZero() {
		t.Errorf("updated of a server at level 0 = %v, want none", got)
	}
	for _, tt := range []struct {
		f    ServerFilter
		want []string
	}{
		{ServerFilter{UpdatedWithin: time.Hour, Now: now.Add(2 * time.Hour)}, []string{"a-web1"}},
		{ServerFilter{UpdatedAge: time.Hour, Now: now.Add(2 * time.Hour)}, []string{}},
		{ServerFilter{UpdatedAge: time.Hour, Now: now.Add(4 * time.Hour)}, []string{"a-web1"}},
	} {
		got, err := s.Servers(ctx, tt.f)
		check(t, "Servers", err)
		if diff := cmp.Diff(tt.want, serverIDs(got)); diff != "" {
			t.Errorf("Servers(updated %v/%v at %v) (-want +got):\n%s", tt.f.UpdatedAge, tt.f.UpdatedWithin, tt.f.Now, diff)
		}
	}

	// Disabling level 2's patchset in main leaves b-web2 (level 1) updated.
	check(t, "SetPatchsets", s.SetPatchsets(ctx, "main", []string{"K20261127_01"}, false))
	got, err := s.Servers(ctx, ServerFilter{IsUpdated: &no, Now: now})
	check(t, "Servers", err)
	if diff := cmp.Diff([]string{"c-db1"}, serverIDs(got)); diff != "" {
		t.Errorf("not updated after disabling K20261127_01 in main (-want +got):\n%s", diff)
	}
	if n, err := s.CountServers(ctx); err != nil || n != len(servers) {
		t.Errorf("CountServers = %d, %v; want %d", n, err, len(servers))
	}
}

// testServersFilterStickyDelay: a key's sticky date and its feed's delay
// hold back the level its servers are allowed, in the update filter as in
// the resolver; so do the overview's counts.
func testServersFilterStickyDelay(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	now := t0
	check(t, "AddFeed", s.AddFeed(ctx, &Feed{Name: "slow", DeployAfter: 24 * time.Hour, Auto: true}))
	addLevels(t, s,
		level(buildDebian, 1, "K20261124_01", "stable", now.Add(-72*time.Hour)),
		level(buildDebian, 2, "K20261126_01", "stable", now.Add(-30*time.Hour)),
		level(buildDebian, 3, "K20261127_01", "stable", now.Add(-2*time.Hour)),
	)
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-plain"}))
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-sticky", Sticky: "2026-11-24"})) // allows level 1
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-slow", Feed: "slow"}))           // allows level 2
	for _, key := range []string{"kc-plain", "kc-sticky", "kc-slow"} {
		for lv := 1; lv <= 3; lv++ {
			id := fmt.Sprintf("%s-%d", key, lv)
			check(t, "Register", s.Register(ctx, key, &Server{ID: id, Registered: now}))
			check(t, "CheckIn", s.CheckIn(ctx, id, Report{BuildID: buildDebian, Level: lv, At: now}))
		}
	}
	no := false
	got, err := s.Servers(ctx, ServerFilter{IsUpdated: &no, Now: now})
	check(t, "Servers", err)
	want := []string{"kc-plain-1", "kc-plain-2", "kc-slow-1"}
	if diff := cmp.Diff(want, sortedIDs(got)); diff != "" {
		t.Errorf("not updated (-want +got):\n%s", diff)
	}
	st, err := s.Stats(ctx, now, 48*time.Hour)
	check(t, "Stats", err)
	if st.OutOfDate != 3 || st.UpToDate != 6 {
		t.Errorf("Stats = %+v, want 3 out of date, 6 up to date", st)
	}
	// Moving the sticky date on lets the key's servers have level 3.
	check(t, "UpdateKey", s.UpdateKey(ctx, &Key{Key: "kc-sticky", Sticky: "2026-11-27"}))
	got, err = s.Servers(ctx, ServerFilter{IsUpdated: &no, Now: now})
	check(t, "Servers", err)
	want = []string{"kc-plain-1", "kc-plain-2", "kc-slow-1", "kc-sticky-1", "kc-sticky-2"}
	if diff := cmp.Diff(want, sortedIDs(got)); diff != "" {
		t.Errorf("not updated after the sticky date moved (-want +got):\n%s", diff)
	}
}

func sortedIDs(vs []Server) []string {
	ids := serverIDs(vs)
	slices.Sort(ids)
	return ids
}

func testCleanServers(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	for _, v := range []struct {
		id                  string
		registered, checkin time.Time
	}{
		{"stale", t0.Add(-60 * 24 * time.Hour), t0.Add(-40 * 24 * time.Hour)},
		{"fresh", t0.Add(-60 * 24 * time.Hour), t0.Add(-time.Hour)},
		{"never-old", t0.Add(-40 * 24 * time.Hour), time.Time{}},
		{"never-new", t0.Add(-time.Hour), time.Time{}},
	} {
		check(t, "Register", s.Register(ctx, "kc-1", &Server{ID: v.id, IP: "192.0.2.1", Registered: v.registered}))
		if !v.checkin.IsZero() {
			check(t, "CheckIn", s.CheckIn(ctx, v.id, Report{IP: "192.0.2.1", At: v.checkin}))
		}
	}
	n, err := s.CleanServers(ctx, t0.Add(-30*24*time.Hour))
	check(t, "CleanServers", err)
	if n != 2 {
		t.Errorf("CleanServers removed %d, want 2", n)
	}
	got, err := s.Servers(ctx, ServerFilter{})
	check(t, "Servers", err)
	if diff := cmp.Diff([]string{"fresh", "never-new"}, serverIDs(got)); diff != "" {
		t.Errorf("servers left (-want +got):\n%s", diff)
	}
}

// testCleanServersBatches: a clean of more servers than one batch
// deletes every one that is due, across batches, and no other.
func testCleanServersBatches(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-1"}))
	n := 2*cleanBatch + 500
	check(t, "SeedServers", SeedServers(ctx, s, "kc-1", n))
	all, err := s.Servers(ctx, ServerFilter{})
	check(t, "Servers", err)
	before := now().Add(-24 * time.Hour)
	due := map[string]bool{}
	for _, v := range all {
		if v.LastCheckin.IsZero() && v.Registered.Before(before) || !v.LastCheckin.IsZero() && v.LastCheckin.Before(before) {
			due[v.ID] = true
		}
	}
	if len(due) <= cleanBatch {
		t.Fatalf("only %d of %d seeded servers are due; the test wants more than one batch (%d)", len(due), n, cleanBatch)
	}
	removed, err := s.CleanServers(ctx, before)
	check(t, "CleanServers", err)
	if removed != len(due) {
		t.Errorf("CleanServers removed %d, want %d", removed, len(due))
	}
	left, err := s.Servers(ctx, ServerFilter{})
	check(t, "Servers", err)
	for _, v := range left {
		if due[v.ID] {
			t.Fatalf("server %s is due and was left", v.ID)
		}
	}
	if len(left) != n-len(due) {
		t.Errorf("%d servers left, want %d", len(left), n-len(due))
	}
}

func testUsersTokens(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	u := &User{Name: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", Role: "admin", Created: t0}
	check(t, "AddUser", s.AddUser(ctx, u))
	check(t, "AddUser", s.AddUser(ctx, &User{Name: "bob", PasswordHash: "x", Role: "readonly", Created: t0}))
	wantErr(t, "AddUser duplicate", s.AddUser(ctx, &User{Name: "alice", Role: "admin"}), ErrExists)
	wantErr(t, "AddUser bad role", s.AddUser(ctx, &User{Name: "carol", Role: "root"}), ErrInvalidInput)
	got, err := s.User(ctx, "alice")
	check(t, "User", err)
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("User (-want +got):\n%s", diff)
	}
	_, err = s.User(ctx, "mallory")
	wantErr(t, "User unknown", err, ErrNotFound)
	users, err := s.Users(ctx)
	check(t, "Users", err)
	if len(users) != 2 || users[0].Name != "alice" || users[1].Name != "bob" {
		t.Errorf("Users = %+v, want alice, bob", users)
	}

	h := sha256.Sum256([]byte("kct_3q2+7w9b"))
	tok := &Token{Hash: h[:], User: "alice", Note: "nagios", Created: t0}
	check(t, "AddToken", s.AddToken(ctx, tok))
	if tok.ID == 0 {
		t.Errorf("AddToken left ID 0")
	}
	wantErr(t, "AddToken duplicate", s.AddToken(ctx, &Token{Hash: h[:], User: "bob"}), ErrExists)
	wantErr(t, "AddToken unknown user", s.AddToken(ctx, &Token{Hash: []byte{1}, User: "mallory"}), ErrNotFound)
	wantErr(t, "AddToken no hash", s.AddToken(ctx, &Token{User: "alice"}), ErrInvalidInput)
	gotTok, err := s.TokenByHash(ctx, h[:])
	check(t, "TokenByHash", err)
	if diff := cmp.Diff(tok, gotTok); diff != "" {
		t.Errorf("TokenByHash (-want +got):\n%s", diff)
	}
	_, err = s.TokenByHash(ctx, []byte("nope"))
	wantErr(t, "TokenByHash unknown", err, ErrNotFound)
	check(t, "DeleteToken", s.DeleteToken(ctx, tok.ID))
	wantErr(t, "DeleteToken again", s.DeleteToken(ctx, tok.ID), ErrNotFound)

	check(t, "AddToken", s.AddToken(ctx, &Token{Hash: []byte("bob's"), User: "bob"}))
	check(t, "DeleteUser", s.DeleteUser(ctx, "bob"))
	_, err = s.TokenByHash(ctx, []byte("bob's"))
	wantErr(t, "token of deleted user", err, ErrNotFound)
	wantErr(t, "DeleteUser again", s.DeleteUser(ctx, "bob"), ErrNotFound)
}

func testAudit(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	entries := []AuditEntry{
		{At: t0, Actor: "alice", Action: "key.add", Object: "kc-1b9d6bcd", Detail: "limit 10"},
		{At: t0.Add(time.Second), Actor: "cli", Action: "patchset.enable", Object: "K20261127_01", Detail: "feed main"},
		{Actor: "publisher", Action: "level.add", Object: buildDebian + "/2"},
	}
	for _, e := range entries {
		check(t, "Audit", s.Audit(ctx, e))
	}
	got, err := s.AuditLog(ctx, 2)
	check(t, "AuditLog", err)
	var actions []string
	for _, e := range got {
		actions = append(actions, e.Action)
	}
	if diff := cmp.Diff([]string{"level.add", "patchset.enable"}, actions); diff != "" {
		t.Errorf("AuditLog(2) newest first (-want +got):\n%s", diff)
	}
	if got[0].At.IsZero() || got[0].ID <= got[1].ID {
		t.Errorf("AuditLog entries %+v: want a time set and descending IDs", got)
	}
	all, err := s.AuditLog(ctx, 0)
	check(t, "AuditLog", err)
	if len(all) != 3 || !all[2].At.Equal(t0) || all[2].Detail != "limit 10" {
		t.Errorf("AuditLog(0) = %+v, want all three", all)
	}
}

func testVersion(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	tests := []struct {
		name string
		do   func() error
		bump bool
	}{
		{"add-level", func() error { return s.AddLevel(ctx, level(buildDebian, 1, "K20261127_01", "stable", t0)) }, true},
		{"add-level-duplicate", func() error {
			if err := s.AddLevel(ctx, level(buildDebian, 1, "K20261127_01", "stable", t0)); !errors.Is(err, ErrExists) {
				return fmt.Errorf("got %v, want ErrExists", err)
			}
			return nil
		}, false},
		{"add-feed", func() error { return s.AddFeed(ctx, &Feed{Name: "test", Channel: "test"}) }, true},
		{"set-patchsets", func() error { return s.SetPatchsets(ctx, "test", []string{"K20261127_01"}, true) }, true},
		{"update-feed", func() error { return s.UpdateFeed(ctx, &Feed{Name: "test", Channel: "stable"}) }, true},
		{"add-key", func() error { return s.AddKey(ctx, &Key{Key: "kc-1", Feed: "test"}) }, true},
		{"update-key", func() error { return s.UpdateKey(ctx, &Key{Key: "kc-1", Limit: 4, Feed: "test"}) }, true},
		{"add-ip-license", func() error { return s.AddIPLicense(ctx, &IPLicense{CIDR: "192.0.2.0/24"}) }, true},
		{"register", func() error { return s.Register(ctx, "kc-1", &Server{ID: "s1", IP: "192.0.2.1"}) }, false},
		{"check-in", func() error { return s.CheckIn(ctx, "s1", Report{IP: "192.0.2.1", Level: 1}) }, false},
		{"add-user", func() error { return s.AddUser(ctx, &User{Name: "alice", Role: "admin"}) }, false},
		{"audit", func() error { return s.Audit(ctx, AuditEntry{Actor: "alice", Action: "key.add"}) }, false},
		{"delete-ip-license", func() error { return s.DeleteIPLicense(ctx, "192.0.2.0/24") }, true},
		{"delete-feed", func() error { return s.DeleteFeed(ctx, "test") }, true},
		{"delete-key", func() error { return s.DeleteKey(ctx, "kc-1") }, true},
	}
	v := version(t, s)
	for _, tt := range tests {
		check(t, tt.name, tt.do())
		got := version(t, s)
		switch {
		case tt.bump && got <= v:
			t.Errorf("%s: Version %d, want > %d", tt.name, got, v)
		case !tt.bump && got != v:
			t.Errorf("%s: Version %d, want %d unchanged", tt.name, got, v)
		}
		v = got
	}
}

// serversSchema describes the servers table's indexes and foreign keys.
func serversSchema(t *testing.T, s Store) string {
	t.Helper()
	q := `SELECT sql FROM sqlite_master WHERE tbl_name = 'servers' AND sql IS NOT NULL ORDER BY name`
	if s.Kind() == "postgres" {
		q = `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'servers'
UNION ALL SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'servers'::regclass
ORDER BY 1`
	}
	rows, err := s.(*sqlStore).r.QueryContext(t.Context(), q)
	check(t, "read schema", err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var def string
		check(t, "read schema", rows.Scan(&def))
		out = append(out, def)
	}
	check(t, "read schema", rows.Err())
	return strings.Join(out, "\n")
}

func testSeed(t *testing.T, b backend) {
	s := b.open(t)
	ctx := t.Context()
	check(t, "AddKey", s.AddKey(ctx, &Key{Key: "kc-load", Limit: 5}))
	schema := serversSchema(t, s)
	defer func(n int) { bulkRows = n }(bulkRows)
	bulkRows = 1000 // the first seed drops and makes again the indexes
	const n = 1234  // more than two SQLite batches
	check(t, "SeedServers", SeedServers(ctx, s, "kc-load", n))
	check(t, "SeedServers again", SeedServers(ctx, s, "kc-load", 10))
	if diff := cmp.Diff(schema, serversSchema(t, s)); diff != "" {
		t.Errorf("servers indexes and constraints after seeding (-want +got):\n%s", diff)
	}
	k, err := s.Key(ctx, "kc-load")
	check(t, "Key", err)
	if k.Servers != n+10 {
		t.Errorf("key has %d servers after seeding, want %d", k.Servers, n+10)
	}
	got, err := s.Servers(ctx, ServerFilter{Hostname: "node-0001233.example.net"})
	check(t, "Servers", err)
	if len(got) != 1 || got[0].IP != "10.0.4.209" || got[0].Release == "" || got[0].LastCheckin.IsZero() {
		t.Errorf("seeded server = %+v", got)
	}
	// The search index holds the bulk-loaded servers too.
	got, err = s.Servers(ctx, ServerFilter{Search: "node-000123"})
	check(t, "Servers", err)
	if len(got) != 4 {
		t.Errorf("search node-000123 after seeding: %d servers, want 4 (node-0001230 to 3)", len(got))
	}
	wantErr(t, "SeedServers unknown key", SeedServers(ctx, s, "kc-none", 1), ErrInvalidKey)
	check(t, "DeleteKey", s.DeleteKey(ctx, "kc-load"))
	if n, err := s.CountServers(ctx); err != nil || n != 0 {
		t.Errorf("CountServers after deleting the seeded key = %d, %v; want 0", n, err)
	}
}

// TestOpenDataDir checks Open makes the data directory and its database.
func TestOpenDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "eportal")
	s, err := Open(t.Context(), dir, "")
	check(t, "Open", err)
	defer s.Close()
	if s.Kind() != "sqlite" {
		t.Errorf("Kind = %q, want sqlite", s.Kind())
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); err != nil {
		t.Errorf("database file: %v", err)
	}
	_, err = OpenSQLite(t.Context(), filepath.Join(dir, "a?b.db"))
	wantErr(t, "OpenSQLite with ? in the path", err, ErrInvalidInput)
}
