// Package core owns the portal's operations and the rules behind them:
// activation keys, feeds and their patchsets, servers (registration,
// authentication, check-ins, their states), operators and their API
// tokens, IP licenses, resellers, publishing and mirroring, and the audit
// log. The agent API, the REST API, the web UI, the eportal command line,
// the Nagios API and the metrics are faces over it: each turns its
// requests into calls here and the answers into its own format, and none
// decides a rule of its own or imports another face.
//
// Every change is made by an Actor and recorded in the audit log by one
// function, audit, with the object as it was before and is after; a
// record that cannot be written is logged in full at error level, the
// one handling of that failure whatever the face.
package core

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/fleet"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// DefaultIndexTTL is how long a signed index stays valid.
const DefaultIndexTTL = 72 * time.Hour

// Config is what a Core needs.
type Config struct {
	Store store.Store
	// DataDir is the data directory: the SQLite database, the bundles,
	// the publishers' and the portal's keys, the installer's packages.
	// "" is Blobs.Dir's parent.
	DataDir string
	Blobs   blobs.Store
	// IndexKey is the portal's online key: it signs indexes. Only the
	// agent API needs it; the command line's Core has none.
	IndexKey *trust.Signer
	// Publishers are publisher keys trusted beside those in the database:
	// the publishers directory's (or --publisher-keys'). nil: none.
	Publishers *trust.Keyring
	// PublishersFrom names where Publishers were read from.
	PublishersFrom string
	IndexTTL       time.Duration // 0: DefaultIndexTTL
	// InactiveAge is how long a server may go without checking in before
	// it counts as inactive; 0 means fleet.DefaultInactiveAge.
	InactiveAge time.Duration
	Log         *slog.Logger
	Now         func() time.Time
}

// Core is the portal's operations over its store.
type Core struct {
	cfg      Config
	st       store.Store
	log      *slog.Logger
	indexes  indexCache   // the signed index answers servers share
	rollouts rolloutCache // what the answers need of the rollouts
}

// New returns a Core for cfg.
func New(cfg Config) *Core {
	if cfg.IndexTTL <= 0 {
		cfg.IndexTTL = DefaultIndexTTL
	}
	if cfg.InactiveAge <= 0 {
		cfg.InactiveAge = fleet.DefaultInactiveAge
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DataDir == "" && cfg.Blobs.Dir != "" {
		cfg.DataDir = filepath.Dir(cfg.Blobs.Dir)
	}
	if cfg.Blobs.Dir == "" && cfg.DataDir != "" {
		cfg.Blobs.Dir = filepath.Join(cfg.DataDir, "blobs")
	}
	if cfg.Blobs.Remote == nil && cfg.Store != nil && cfg.Store.Kind() == "postgres" {
		// Replicas on one database share no disk: bundles live in the
		// database, and the data directory caches them.
		cfg.Blobs.Remote = sharedBlobs{cfg.Store}
	}
	return &Core{cfg: cfg, st: cfg.Store, log: cfg.Log}
}

// Now is the portal's time: the one clock every face and rule reads.
func (c *Core) Now() time.Time { return c.cfg.Now().UTC() }

// DataDir is the portal's data directory.
func (c *Core) DataDir() string { return c.cfg.DataDir }

// InactiveAge is how long a server may go without checking in before it
// is inactive.
func (c *Core) InactiveAge() time.Duration { return c.cfg.InactiveAge }

// Actor is who makes a change, and from where, as the audit log records
// it.
type Actor struct {
	// Name is an operator's user name, "cli" for the command line,
	// "agent:ID" for a server, "mirror" for a sync.
	Name string
	// IP is the address the change came from; "cli" for the command line.
	IP string
}

// CLI is the command line's actor.
var CLI = Actor{Name: "cli", IP: "cli"}

// Operator is the actor of a signed-in user or API token from ip.
func Operator(u *store.User, ip string) Actor { return Actor{Name: u.Name, IP: ip} }

// Agent is the actor of a server's own request from ip.
func Agent(serverID, ip string) Actor { return Actor{Name: "agent:" + serverID, IP: ip} }

// audit records a change: the one place the audit log is written. before
// and after are the object as it was and is (nil for a creation's before
// and a deletion's after), as JSON; an activation key is masked wherever
// it appears. A record that cannot be written is logged in full at error
// level: the change is made, and nothing about it is lost.
func (c *Core) audit(ctx context.Context, a Actor, action, object, detail string, before, after any) {
	e := store.AuditEntry{At: c.Now(), Actor: a.Name, IP: a.IP, Action: action, Object: auditObject(action, object),
		Detail: detail, Before: auditJSON(before), After: auditJSON(after)}
	if err := c.st.Audit(ctx, e); err != nil {
		c.log.Error("audit log: record not written", "error", err, "actor", e.Actor, "ip", e.IP,
			"action", e.Action, "object", e.Object, "detail", e.Detail, "before", e.Before, "after", e.After)
	}
}

// auditObject is the object an audit entry names: an activation key, the
// object of every key.* action, masked.
func auditObject(action, object string) string {
	if strings.HasPrefix(action, "key.") {
		return store.MaskKey(object)
	}
	return object
}

// auditJSON is v as an audit entry's before or after: JSON, or "" for
// nil.
func auditJSON(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%q", err.Error())
	}
	return string(b)
}

// NewKey returns a new activation key: 16 random bytes as hex.
func NewKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Errors of the core's own; store errors (store.ErrNotFound, ErrExists,
// ErrInvalidInput, ErrInUse) pass through wrapped.
var (
	// ErrNoPublisherKeys refuses a publish while the portal trusts no
	// publisher key.
	ErrNoPublisherKeys = errors.New("no publisher key is trusted yet")
	// ErrSelf refuses an operator's deleting their own account.
	ErrSelf = errors.New("you cannot delete yourself")
)

// invalid is an ErrInvalidInput with a message.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", store.ErrInvalidInput, fmt.Sprintf(format, args...))
}

// AuditLog lists the audit entries f selects, newest first.
func (c *Core) AuditLog(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	return c.st.AuditQuery(ctx, f)
}

// sharedBlobs keeps bundles in the store, for blobs.Store.
type sharedBlobs struct{ st store.SharedStore }

func (b sharedBlobs) PutBlob(ctx context.Context, d string, data []byte) error {
	return b.st.PutBlob(ctx, d, data)
}

func (b sharedBlobs) ReadBlob(ctx context.Context, d string, w io.Writer) (int64, error) {
	n, err := b.st.ReadBlob(ctx, d, w)
	if errors.Is(err, store.ErrNotFound) {
		return n, fmt.Errorf("%w: %w", blobs.ErrNotFound, err)
	}
	return n, err
}
