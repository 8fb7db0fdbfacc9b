// Package store is the portal's data: patch levels, patchsets, feeds,
// activation keys, IP licenses, servers, users, API tokens and the audit
// log, in SQLite (the embedded default) or PostgreSQL (several portal
// replicas on one database). Both implement Store; migrations run at Open.
//
// Times are kept in UTC to the microsecond; a zero time given to a method
// that records one means now, and the stored value is written back into
// the caller's struct (Created, Registered, ...).
package store

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
)

// Errors a caller tells apart with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalidKey   = errors.New("no such activation key")
	ErrLimitReached = errors.New("the key's server limit is reached")
	ErrIPNotAllowed = errors.New("address outside the key's IP ranges")
	ErrInUse        = errors.New("in use")
	ErrInvalidInput = errors.New("invalid input")
)

// Level is one published patch level for one kernel build.
type Level struct {
	ID               int64
	BuildID          string // GNU build-id of the target vmlinux
	KernelID         string // sha1 of its /proc/version text
	Release          string // its uname -r
	Level            int
	Patchset         string // the release it belongs to, e.g. K20261127_01
	Channel          apitype.Channel
	Digest           string // sha256 hex of the .kcp; the blob's name
	Size             int64
	Signature        []byte // the publisher's detached signature, armored
	Manifest         []byte // manifest.json as published
	EffectiveRelease string
	CVEs             []CVE
	Released         time.Time
	Published        time.Time
}

// CVE is one fix in a level, kept as the wire has it.
type CVE = apitype.CVE

// Patchset groups the levels released together, across kernels.
type Patchset struct {
	Name     string
	Released time.Time // the newest release time of its levels
	Levels   int       // how many levels it holds
	Urgent   bool      // its rollouts skip their soak times
}

// Feed is a view of the patchsets: main (always there), test, delayed or
// custom. A patchset is visible in a feed when enabled there, released on
// its channel, and at least DeployAfter old.
type Feed struct {
	Name        string
	Channel     apitype.Channel // stable (default) or test: test also sees test-channel levels
	DeployAfter time.Duration   // hold levels back this long after release
	Auto        bool            // new patchsets are enabled here when published
	Created     time.Time
}

// SortFeeds puts feeds in the one order every list of them shows, in the
// UI, the REST API, the CLI and the metrics: the main feed first, then the
// others by name (byte order, so SQLite and PostgreSQL agree whatever the
// database's collation). Creation times play no part: the main feed is
// stamped with the day its data dir was made.
func SortFeeds(feeds []Feed) {
	slices.SortStableFunc(feeds, func(a, b Feed) int {
		if (a.Name == apitype.MainFeed) != (b.Name == apitype.MainFeed) {
			if a.Name == apitype.MainFeed {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// FeedPatchset is a patchset's state in one feed.
type FeedPatchset struct {
	Feed     string
	Patchset string
	Enabled  bool
	Deployed bool // ever enabled or disabled in the feed; false: not deployed there
	Released time.Time
	Urgent   bool
}

// Key is an activation key.
type Key struct {
	Key      string
	Note     string
	Limit    int // servers; 0 is unlimited
	Feed     string
	Sticky   string   // sticky patchset date, as STICKY_PATCH accepts it, or ""
	IPRanges []string // CIDRs a registering server must be in; empty allows any
	Created  time.Time
	Servers  int // registered servers, filled by reads
}

// IPLicense lets servers from a CIDR update without registering.
type IPLicense struct {
	CIDR    string
	Feed    string
	Note    string
	Created time.Time
}

// Server is a registered (or IP-licensed) server.
type Server struct {
	ID         string
	SecretHash []byte // sha256 of the per-server secret
	Key        string // activation key; "" for an IP-licensed server
	// LicenseFeed is an IP-licensed server's feed as its last check-in
	// recorded it (UpsertIPServer); "" for a server under a key.
	LicenseFeed      string
	Hostname         string
	IP               string
	Release          string
	BuildID          string
	KernelID         string
	Level            int
	EffectiveRelease string
	LastResult       string
	AgentVersion     string
	Tags             string // "k:v;k2:v2" as kcarectl --tag sets them
	Registered       time.Time
	LastCheckin      time.Time // zero before the first check-in
	// Updated is when it last loaded patches: reported a level (above 0)
	// other than before, or on another kernel; zero until then.
	Updated time.Time
}

// Report is what an agent reports after every run, as the store keeps it
// (the wire's apitype.CheckIn, with the address it came from and when).
type Report struct {
	Hostname, IP, Release, BuildID, KernelID string
	Level                                    int
	EffectiveRelease, LastResult             string
	AgentVersion                             string
	Tags                                     *string // nil keeps the tags
	At                                       time.Time
	// Health is the kernel's health the check-in reports, with its
	// Level; nil when it reports none.
	Health *Health
}

// ServerFilter selects servers for Servers; zero fields match all. The
// result is ordered by registration time, then ID.
type ServerFilter struct {
	Hostname string // substring, case-insensitive
	IP       string
	// HostnameLike and IPLike are ePortal's hostname and ip filters: the
	// whole value, case-insensitive, where % stands for any string (and
	// _ is itself).
	HostnameLike, IPLike string
	// RegisteredAge selects servers registered before Now less this;
	// RegisteredWithin those registered at or after Now less this.
	RegisteredAge, RegisteredWithin time.Duration
	// UpdatedAge selects servers that last changed level before Now less
	// this; UpdatedWithin those that did at or after it. A server that
	// never reported a level is in neither.
	UpdatedAge, UpdatedWithin time.Duration
	Key                       string
	Feed                      string        // the key's feed, or the IP license's
	CheckinAge                time.Duration // last check-in older than this (or never)
	// Now is the instant CheckinAge and ActiveWithin count back from: the
	// caller's clock, so that a face and its tests agree on "now". A filter
	// with either age and no Now is refused (ErrInvalidInput).
	Now time.Time
	// IsUpdated selects servers whose level is (true) or is not (false)
	// at least the newest of VisibleLevels(their feed, their build-id);
	// a server with no visible level counts as updated.
	IsUpdated *bool
	Tag       string // substring of Tags, case-insensitive
	// ActiveWithin selects servers that checked in within this long.
	ActiveWithin time.Duration
	// Unsupported selects servers whose build-id has (false) or has not
	// (true) any level at all.
	Unsupported *bool
	// Search is a substring of the hostname or IP, case-insensitive.
	Search string
	Limit  int // 0: no limit
	Offset int // for the REST API; the web UI pages by After
	// Sort orders the result by one of SortColumns ("" is "registered"),
	// then by ID; Desc reverses both.
	Sort string
	Desc bool
	// After, when set, starts the result after this cursor (keyset
	// pagination: no rows are skipped by counting).
	After *Cursor
	// Before, when set instead, gives the rows just before this cursor:
	// the Limit nearest it, still in the order Sort says (the page before
	// one that starts at the cursor).
	Before *Cursor
}

// SortColumns are the orders ServerFilter.Sort accepts.
var SortColumns = []string{"registered", "hostname", "ip"}

// Cursor is a position in a sorted server list: the sort column's value
// (a time as RFC 3339 with nanoseconds) and the server ID.
type Cursor struct {
	Value string
	ID    string
}

// CursorOf is the cursor just after v in a list sorted by sort.
func CursorOf(v Server, sort string) Cursor {
	switch sort {
	case "hostname":
		return Cursor{Value: v.Hostname, ID: v.ID}
	case "ip":
		return Cursor{Value: v.IP, ID: v.ID}
	}
	return Cursor{Value: v.Registered.UTC().Format(time.RFC3339Nano), ID: v.ID}
}

// Checkin is one entry of a server's check-in history.
type Checkin struct {
	ServerID         string
	At               time.Time
	Level            int
	EffectiveRelease string
	Result           string
}

// CheckinHistoryKeep is how many check-ins per server PruneCheckins keeps.
const CheckinHistoryKeep = 100

// Session is a signed-in web UI user; only the hash of its cookie's id
// is stored.
type Session struct {
	IDHash   []byte
	User     string
	Created  time.Time
	LastSeen time.Time
	CSRF     string // the token every form of the session carries
	IP       string
}

// FleetStats counts servers for the overview, by the SQL rules of
// ServerFilter: inactive (no check-in within the age), unsupported (no
// level for the kernel), out of date (below the newest visible level).
type FleetStats struct {
	Total, Active, Inactive, Unsupported, OutOfDate, UpToDate int
}

// Count is a value and how many servers have it.
type Count struct {
	Value string
	N     int
}

// Kernel is a kernel build the portal has levels for.
type Kernel struct {
	BuildID  string
	Release  string
	KernelID string
	Levels   int
	Newest   int
}

// AuditFilter selects audit entries; zero fields match all.
type AuditFilter struct {
	Actor    string
	Object   string // substring
	Action   string // prefix, e.g. "key."
	From, To time.Time
	BeforeID int64 // entries older than this id (keyset paging)
	Limit    int
}

// User is an admin or read-only operator.
type User struct {
	Name         string
	PasswordHash string // as made by package portal/auth
	Role         apitype.Role
	Created      time.Time
}

// Token is an API key for the REST API; only its hash is stored.
type Token struct {
	ID      int64
	Hash    []byte
	User    string
	Note    string
	Created time.Time
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID     int64
	At     time.Time
	Actor  string // user, "cli", "agent:<server id>", "publisher"
	Action string // e.g. "key.add", "patchset.enable"
	Object string
	Detail string
	IP     string // where the change came from; "cli" for the admin CLI
	Before string // JSON of the object before the change; "" for a creation
	After  string // JSON of the object after it; "" for a deletion
}

// Store is the portal's data. Every method is safe for concurrent use by
// several goroutines and by several processes on the same database.
// Methods that name a missing object return ErrNotFound, invalid fields
// ErrInvalidInput, a duplicate ErrExists. The store records nothing in
// the audit log by itself: the caller calls Audit.
//
// Store is the sum of the narrow interfaces below, one per kind of
// object; a consumer that needs only some takes those (the fleet's
// evaluator, a mirror), and only the portal's core takes the whole.
type Store interface {
	Close() error
	// Kind is "sqlite" or "postgres".
	Kind() string
	// Version is a counter bumped, in the same transaction, by every
	// change that can change an index (levels, patchsets enabled or
	// disabled, feeds, keys, IP licenses); indexes carry it.
	// Registrations and check-ins leave it alone.
	Version(ctx context.Context) (int64, error)

	LevelStore
	FeedStore
	KeyStore
	IPLicenseStore
	ServerStore
	UserStore
	SessionStore
	AuditStore
	ResellerStore
	PublisherKeyStore
	RolloutStore
	SharedStore
}

// SignInFailure is what the web UI counts of failed sign-ins under one
// key (a hash naming a user and a source, or a source).
type SignInFailure struct {
	Key   []byte
	N     int
	Until time.Time // no sign-in before this; zero: none held back
	Last  time.Time // the last failure
}

// SharedStore is what the replicas of a portal on one database share
// through it beside the portal's data.
type SharedStore interface {
	// PutBlob stores a bundle under its sha256 digest d (the caller
	// checked it), in chunks; storing a digest again changes nothing.
	PutBlob(ctx context.Context, d string, data []byte) error
	// ReadBlob writes the bundle d to w, a chunk at a time, and returns
	// its size; ErrNotFound when there is none.
	ReadBlob(ctx context.Context, d string, w io.Writer) (int64, error)
	// HasBlob reports whether the bundle d is stored.
	HasBlob(ctx context.Context, d string) (bool, error)

	// Secret is a secret every replica must share (the index signing
	// key, the metrics salt); ErrNotFound when there is none yet.
	Secret(ctx context.Context, name string) ([]byte, error)
	// AddSecret stores value as the secret name unless there is one,
	// and returns the one stored: of replicas starting at once, each
	// gets the first one's.
	AddSecret(ctx context.Context, name string, value []byte) ([]byte, error)

	// SignInFailures are the failures counted under keys, for those
	// that have any.
	SignInFailures(ctx context.Context, keys ...[]byte) ([]SignInFailure, error)
	// CountSignInFailure counts a failure under each of keys: count
	// turns each key's record (zero but for Key when there is none) into
	// the new one, in one transaction.
	CountSignInFailure(ctx context.Context, count func(f *SignInFailure), keys ...[]byte) error
	// ForgetSignInFailures forgets the failures under key, and every
	// record last counted before before.
	ForgetSignInFailures(ctx context.Context, key []byte, before time.Time) error

	// TryLock takes the lock name, held by one replica at a time, if it
	// is free: it reports whether it did, and unlock lets it go.
	TryLock(ctx context.Context, name string) (unlock func(), ok bool, err error)
}

// PublisherKey is a publisher's public key the portal trusts: a bundle
// must be signed by one of them (or by one in the publishers directory).
type PublisherKey struct {
	Fingerprint string // upper-case hex, as gpg prints it
	Name        string // the key's primary user id
	Armored     string // the public key, ASCII-armored
	Added       time.Time
}

// PublisherKeyStore keeps the publisher keys.
type PublisherKeyStore interface {
	// AddPublisherKey adds a key; one with the same fingerprint is
	// ErrExists. A zero Added is now.
	AddPublisherKey(ctx context.Context, k *PublisherKey) error
	PublisherKeys(ctx context.Context) ([]PublisherKey, error) // in order of addition
	DeletePublisherKey(ctx context.Context, fingerprint string) error
}

// LevelStore keeps the published levels.
type LevelStore interface {
	// AddLevel records a published level and sets l.ID; a level with the
	// same build-id and number is ErrExists. Channel "" is "stable". Its
	// patchset is created if new, and then enabled in every Auto feed;
	// the patchset's release time is the newest of its levels'. A zero
	// Published is now, a zero Released is Published.
	AddLevel(ctx context.Context, l *Level) error
	Levels(ctx context.Context, buildID string) ([]Level, error)            // ascending level
	LevelsByKernelID(ctx context.Context, kernelID string) ([]Level, error) // by build-id, ascending level
	LevelByDigest(ctx context.Context, digest string) (*Level, error)
	// AllLevels returns the levels published at or after since, oldest
	// first: what a mirror fetches from its upstream and an export packs.
	AllLevels(ctx context.Context, since time.Time) ([]Level, error)
	// Kernels lists the kernel builds with levels, by release.
	Kernels(ctx context.Context) ([]Kernel, error)
}

// FeedStore keeps the feeds and the patchsets' state in each.
type FeedStore interface {
	// VisibleLevels returns the levels of buildID visible in feed: their
	// patchset enabled there, and the feed's channel admitting theirs.
	// (a "stable" feed admits stable levels, a "test" feed both). Time
	// cut-offs (delay, prefix, sticky) are the caller's. Ascending level.
	VisibleLevels(ctx context.Context, feed, buildID string) ([]Level, error)

	Patchsets(ctx context.Context) ([]Patchset, error) // ascending release
	// FeedPatchsets lists every patchset with its state in feed,
	// ascending release.
	FeedPatchsets(ctx context.Context, feed string) ([]FeedPatchset, error)
	// SetPatchsets enables or disables the named patchsets in feed, all
	// or none: an unknown feed or patchset is ErrNotFound.
	SetPatchsets(ctx context.Context, feed string, patchsets []string, enabled bool) error

	// AddFeed adds a feed with no patchsets enabled; Auto feeds get
	// those published from then on. Channel "" is "stable".
	AddFeed(ctx context.Context, f *Feed) error
	Feed(ctx context.Context, name string) (*Feed, error)
	Feeds(ctx context.Context) ([]Feed, error) // main first, then the others by name
	// UpdateFeed sets the channel, delay and Auto of the feed f names.
	UpdateFeed(ctx context.Context, f *Feed) error
	// DeleteFeed moves the feed's keys and IP licenses to main; main
	// cannot be deleted (ErrInUse).
	DeleteFeed(ctx context.Context, name string) error
}

// KeyStore keeps the activation keys.
type KeyStore interface {
	// AddKey adds an activation key. Feed "" is main; an unknown feed is
	// ErrNotFound. IPRanges are CIDRs (a bare address is its /32 or
	// /128), stored in canonical form; a bad one is ErrInvalidInput.
	AddKey(ctx context.Context, k *Key) error
	Key(ctx context.Context, key string) (*Key, error)
	// KeySettings is Key without the server count: what authenticating
	// an agent and resolving its feed need, on every agent request.
	KeySettings(ctx context.Context, key string) (*Key, error)
	Keys(ctx context.Context) ([]Key, error) // in order of creation
	// KeyList is Keys without the server counts, which cost a count of
	// each key's servers: what a list to choose a key from needs.
	KeyList(ctx context.Context) ([]Key, error)
	// UpdateKey sets the note, limit, feed, sticky date and IP ranges of
	// the key k names; servers already registered stay.
	UpdateKey(ctx context.Context, k *Key) error
	// DeleteKey removes the key and unregisters its servers.
	DeleteKey(ctx context.Context, key string) error
}

// IPLicenseStore keeps the IP licenses.
type IPLicenseStore interface {
	// AddIPLicense adds a license for l.CIDR (stored in canonical form);
	// Feed "" is main.
	AddIPLicense(ctx context.Context, l *IPLicense) error
	IPLicenses(ctx context.Context) ([]IPLicense, error) // in order of creation
	DeleteIPLicense(ctx context.Context, cidr string) error
}

// ServerStore keeps the servers, their check-ins and the counts of them.
type ServerStore interface {
	// Register adds s under key atomically: ErrInvalidKey for a missing
	// key, ErrIPNotAllowed outside the key's IP ranges, ErrLimitReached
	// when the key already has Limit servers — exact under concurrent
	// registrations, from one process or several. s.ID must be set (a
	// taken one is ErrExists); Register sets s.Key, and s.Registered when
	// zero.
	Register(ctx context.Context, key string, s *Server) error
	// UpsertIPServer records a server known only by its IP license, in
	// feed (the license's, as resolve.IPLicense picks it): it adds s, or
	// updates the server with its ID (keeping Registered). An ID
	// registered under a key is ErrExists. A zero LastCheckin is now.
	UpsertIPServer(ctx context.Context, s *Server, feed string) error
	Server(ctx context.Context, id string) (*Server, error)
	// AgentServer reads, in one query, what authenticating an agent's
	// request needs: the server with id (ErrNotFound when there is none),
	// its key's settings without the server count (nil when it has no
	// key, or its key was just deleted), and the store's Version.
	AgentServer(ctx context.Context, id string) (*Server, *Key, int64, error)
	Servers(ctx context.Context, f ServerFilter) ([]Server, error)
	CountServers(ctx context.Context) (int, error)
	// CountFiltered counts the servers f selects, ignoring its Limit,
	// Offset and cursors.
	CountFiltered(ctx context.Context, f ServerFilter) (int, error)
	// CheckIn records an agent's report: every field of c, Tags only
	// when not nil, and the check-in time (c.At, or now when zero). An
	// unknown id is ErrNotFound.
	CheckIn(ctx context.Context, id string, c Report) error
	SetServerTags(ctx context.Context, id, tags string) error
	DeleteServer(ctx context.Context, id string) error
	// CleanServers deletes servers that have not checked in since before
	// (those that never did: registered before it) and returns how many.
	CleanServers(ctx context.Context, before time.Time) (int, error)

	// RecordHealth records the health a check-in of a server known by
	// its IP license reports (registered servers' check-ins carry it in
	// their Report), at at (zero: now). An unknown id is ErrNotFound.
	RecordHealth(ctx context.Context, id string, h *Health, at time.Time) error
	// ServerHealth returns the health a server last reported;
	// ErrNotFound when it never has.
	ServerHealth(ctx context.Context, id string) (*Health, error)

	// CheckinHistory returns a server's newest check-ins, newest first.
	CheckinHistory(ctx context.Context, serverID string, limit int) ([]Checkin, error)
	// PruneCheckins keeps the newest CheckinHistoryKeep check-ins of
	// each server and none older than before; it returns how many went.
	PruneCheckins(ctx context.Context, before time.Time) (int, error)

	// Stats counts the servers by state at now; inactive is no check-in
	// within age.
	Stats(ctx context.Context, now time.Time, age time.Duration) (FleetStats, error)
	// TopKernels returns the most common kernel releases and effective
	// releases, limit of each, most common first.
	TopKernels(ctx context.Context, limit int) (kernels, effective []Count, err error)
}

// UserStore keeps the operators and their API tokens.
type UserStore interface {
	// AddUser adds a user; Role must be "admin" or "readonly".
	AddUser(ctx context.Context, u *User) error
	User(ctx context.Context, name string) (*User, error)
	Users(ctx context.Context) ([]User, error) // by name
	// DeleteUser deletes a user and its tokens.
	DeleteUser(ctx context.Context, name string) error
	// AddToken adds a token of an existing user and sets t.ID.
	AddToken(ctx context.Context, t *Token) error
	TokenByHash(ctx context.Context, hash []byte) (*Token, error)
	DeleteToken(ctx context.Context, id int64) error
	// Tokens lists the API tokens of user ("" for all), by id.
	Tokens(ctx context.Context, user string) ([]Token, error)
}

// SessionStore keeps the web UI's sessions.
type SessionStore interface {
	// AddSession records a web UI session.
	AddSession(ctx context.Context, s *Session) error
	// Session returns the session with the id hash; ErrNotFound if none.
	Session(ctx context.Context, idHash []byte) (*Session, error)
	TouchSession(ctx context.Context, idHash []byte, at time.Time) error
	DeleteSession(ctx context.Context, idHash []byte) error
	// DeleteSessions deletes the sessions last seen before t.
	DeleteSessions(ctx context.Context, before time.Time) (int, error)
}

// AuditStore keeps the audit log.
type AuditStore interface {
	Audit(ctx context.Context, e AuditEntry) error
	AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) // newest first; limit 0: all
	// AuditQuery lists the entries f selects, newest first.
	AuditQuery(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}
