package apitype

import (
	"encoding/json"
	"errors"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/kcare/kcare/internal/charclass"
	"github.com/kcare/kcare/internal/taint"
)

// The agent API's paths. REGISTRATION_URL replaces RegisterBase's host
// part; the others are under PATCH_SERVER.
const (
	RegisterBase   = "/admin/api" // REGISTRATION_URL's default path
	RegisterPath   = RegisterBase + "/register"
	UnregisterPath = "/api/v1/unregister"
	IndexPath      = "/api/v1/index/" // + the kernel's build-id
	CheckInPath    = "/api/v1/checkin"
	// RunPath is an agent's run in one round trip: its check-in (POST,
	// a CheckIn, with IndexPrefixArg and IndexStickyArg in the query),
	// answered with the signed index for the build-id it reports, as
	// IndexPath answers it. Portals without it answer 404; the agent then
	// asks IndexPath and checks in at CheckInPath.
	RunPath         = "/api/v1/run"
	LicensePath     = "/api/v1/license"
	BlobPath        = "/blobs/sha256/" // + a bundle's sha256
	PortalKeyPath   = "/keys/portal.pub"
	IndexPrefixArg  = "prefix"   // the index's query: PREFIX
	IndexStickyArg  = "sticky"   // the index's query: STICKY_PATCH, or KEY
	IndexDelayArg   = "delay"    // the index's query: UPDATE_DELAY, 24h or 2d
	IndexPatchArg   = "patchset" // the index's query: STICKY_PATCHSET, a patchset name
	RegisterKeyArg  = "key"      // the registration form's activation key
	RegisterHostArg = "hostname" // the registration form's hostname
)

// ResultOK is the result of an answer that reports only success.
const ResultOK = "ok"

// OK is the answer of a request that reports only success:
// {"result": "ok"}.
var OK = Result[string]{Result: ResultOK}

// Registered is the answer to a registration: the server's id and its
// secret, which it authenticates with from then on (HTTP basic). The
// portal keeps only the secret's hash.
type Registered struct {
	ServerID     string `json:"server_id"`
	ServerSecret string `json:"server_secret"`
}

// CheckIn is what an agent reports after every run, as JSON to
// CheckInPath. The portal takes exactly these fields, each as Validate
// allows.
type CheckIn struct {
	Hostname         string  `json:"hostname"`
	Release          string  `json:"release"`
	BuildID          string  `json:"build_id"`
	KernelID         string  `json:"kernel_id"`
	Level            int     `json:"level"`
	EffectiveRelease string  `json:"effective_release"`
	Result           string  `json:"result"`
	AgentVersion     string  `json:"agent_version"`
	Tags             *string `json:"tags,omitempty"` // nil keeps the tags the portal has
	// Telemetry is the kernel's health, which the portal judges a
	// rollout by; nil from an agent that does not report it.
	Telemetry *Telemetry `json:"telemetry,omitempty"`
}

// Telemetry is the kernel's own account of its health at a check-in, and
// as of the last apply, so that the portal sees what changed since: new
// warnings, oopses or taint flags, a reboot (another boot id), or a
// server that stopped checking in.
type Telemetry struct {
	BootID string `json:"boot_id"` // /proc/sys/kernel/random/boot_id
	Uptime int64  `json:"uptime"`  // seconds since boot
	Taint  uint64 `json:"taint"`   // /proc/sys/kernel/tainted
	// TaintFlags is Taint decoded, as taint.Mask's String writes it
	// ("WOEK"); it must agree with Taint.
	TaintFlags string `json:"taint_flags"`
	// Warnings and Oopses count the kernel's warnings and oopses since
	// boot; -1 when unknown. CountsFrom says where they were read:
	// "sysfs" (the kernel's own counters), "kmsg" (the agent's count in
	// the kernel log, short when the log wrapped between runs) or "".
	Warnings   int64  `json:"warn_count"`
	Oopses     int64  `json:"oops_count"`
	CountsFrom string `json:"counts_from"`
	// LastApply is the last time the agent loaded a level, and how it
	// went; nil before the first.
	LastApply *ApplyReport `json:"last_apply,omitempty"`
}

// ApplyReport is one apply and the kernel's health just before it.
type ApplyReport struct {
	Level    int       `json:"level"`
	OK       bool      `json:"ok"` // the level was loaded and is in effect
	At       time.Time `json:"at"`
	BootID   string    `json:"boot_id"`
	Taint    uint64    `json:"taint"`
	Warnings int64     `json:"warn_count"`
	Oopses   int64     `json:"oops_count"`
}

// Bounds of a check-in's fields.
const (
	MaxLevel     = 1 << 20
	MaxResultLen = 1000 // bytes of a result kept; a longer one is cut at a character
	MaxTagsLen   = 500
)

var (
	// HostnameRE is a hostname registration and check-in accept.
	HostnameRE = charclass.New("A-Za-z0-9._-", 1, 253)
	// BuildIDRE is a GNU build-id as the index's path and a check-in name it.
	BuildIDRE = charclass.New("0-9a-f", 16, 128)
	// KernelIDRE is KernelCare's kernel id: the sha1 of /proc/version.
	KernelIDRE = charclass.New("0-9a-f", 40, 40)
	// releaseRE is a kernel release as uname -r prints it (at most 64
	// characters, the kernel's own bound).
	releaseRE = charclass.New("A-Za-z0-9._+~-", 1, 64)
	// agentVersionRE is kcarectl's version.
	agentVersionRE = charclass.New("A-Za-z0-9._+~-", 1, 64)
)

// ValidHostname reports whether registration and check-in accept h as a
// server's hostname: empty, or up to 253 letters, digits, dots, hyphens
// and underscores.
func ValidHostname(h string) bool { return h == "" || HostnameRE.MatchString(h) }

// ErrBadField is a field of a registration or a check-in that breaks its
// rule; every *FieldError matches it.
var ErrBadField = errors.New("bad field")

// FieldError names the field that broke its rule; its text is the
// error code the portal answers with (BadField).
type FieldError struct{ Field string }

func (e *FieldError) Error() string { return string(BadField(e.Field)) }

// Is reports whether target is ErrBadField.
func (e *FieldError) Is(target error) bool { return target == ErrBadField }

// Validate checks every field of a check-in, in the order they are
// listed, and cuts a long result to MaxResultLen. A field that breaks its
// rule is a *FieldError naming it.
func (c *CheckIn) Validate() error {
	ok := func(v string, re interface{ MatchString(string) bool }) bool { return v == "" || re.MatchString(v) }
	bad := ""
	switch {
	case !ValidHostname(c.Hostname):
		bad = "hostname"
	case !ok(c.Release, releaseRE):
		bad = "release"
	case !ok(c.BuildID, BuildIDRE):
		bad = "build-id"
	case !ok(c.KernelID, KernelIDRE):
		bad = "kernel-id"
	case c.Level < 0 || c.Level > MaxLevel:
		bad = "level"
	case !ok(c.EffectiveRelease, releaseRE):
		bad = "effective-release"
	case !freeText(c.Result, "\n\t"):
		bad = "result"
	case !ok(c.AgentVersion, agentVersionRE):
		bad = "agent-version"
	case c.Tags != nil && (len(*c.Tags) > MaxTagsLen || !freeText(*c.Tags, "") || strings.ContainsAny(*c.Tags, `"'\`)):
		bad = "tags"
	case c.Telemetry != nil && !c.Telemetry.valid():
		bad = "telemetry"
	}
	if bad != "" {
		return &FieldError{Field: bad}
	}
	if len(c.Result) > MaxResultLen {
		cut := MaxResultLen
		for cut > 0 && !utf8.RuneStart(c.Result[cut]) {
			cut--
		}
		c.Result = c.Result[:cut]
	}
	return nil
}

// Bounds of the telemetry's numbers.
const (
	maxUptime = 100 * 366 * 24 * 3600 // seconds: a century
	maxCount  = 1 << 40
	maxTaint  = 1<<32 - 1 // the kernel has 20 flags; room for more
)

// ValidBootID reports whether s is a boot id as the kernel writes it
// (/proc/sys/kernel/random/boot_id): a UUID in lowercase hex.
func ValidBootID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// valid reports whether every field of t keeps its rule.
func (t *Telemetry) valid() bool {
	count := func(n int64) bool { return n >= -1 && n <= maxCount }
	switch {
	case !ValidBootID(t.BootID), t.Uptime < 0 || t.Uptime > maxUptime,
		t.Taint > maxTaint, t.TaintFlags != taint.Mask(t.Taint).String(),
		!count(t.Warnings), !count(t.Oopses),
		t.CountsFrom != "" && t.CountsFrom != CountsSysfs && t.CountsFrom != CountsKmsg,
		(t.CountsFrom == "") != (t.Warnings == -1 && t.Oopses == -1):
		return false
	}
	a := t.LastApply
	return a == nil || a.Level >= 0 && a.Level <= MaxLevel && !a.At.IsZero() && ValidBootID(a.BootID) &&
		a.Taint <= maxTaint && count(a.Warnings) && count(a.Oopses)
}

// Where Telemetry's counts come from.
const (
	CountsSysfs = "sysfs"
	CountsKmsg  = "kmsg"
)

// freeText reports whether s is UTF-8 without control characters, but for
// those in allowed.
func freeText(s, allowed string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (unicode.IsControl(r) || r == '\u2028' || r == '\u2029') && !strings.ContainsRune(allowed, r) {
			return false
		}
	}
	return true
}

// LicenseType says what licenses a server.
type LicenseType string

// The license types.
const (
	LicenseKey LicenseType = "key" // registered under an activation key
	LicenseIP  LicenseType = "ip"  // known by an IP license
)

// License is the answer of LicensePath: what licenses the asking server.
// A server under a key also gets the key's settings (Key); one known by
// its IP license gets none.
type License struct {
	Type     LicenseType
	ServerID string
	Feed     string
	Key      *KeyLicense // nil for LicenseIP
}

// KeyLicense is the activation key a server is registered under, as the
// server may see it.
type KeyLicense struct {
	Key     string
	Limit   int // servers; 0 is unlimited
	Servers int // registered under the key now
	Note    string
	Sticky  string
}

// licenseJSON is License on the wire: one flat object, the key's fields
// only for a key.
type licenseJSON struct {
	Feed     string      `json:"feed"`
	Key      *string     `json:"key,omitempty"`
	Limit    *int        `json:"limit,omitempty"`
	Note     *string     `json:"note,omitempty"`
	ServerID string      `json:"server_id"`
	Servers  *int        `json:"servers,omitempty"`
	Sticky   *string     `json:"sticky,omitempty"`
	Type     LicenseType `json:"type"`
}

// MarshalJSON writes l as one flat object.
func (l License) MarshalJSON() ([]byte, error) {
	w := licenseJSON{Feed: l.Feed, ServerID: l.ServerID, Type: l.Type}
	if k := l.Key; k != nil {
		w.Key, w.Limit, w.Note, w.Servers, w.Sticky = &k.Key, &k.Limit, &k.Note, &k.Servers, &k.Sticky
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the flat object MarshalJSON writes.
func (l *License) UnmarshalJSON(b []byte) error {
	var w licenseJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*l = License{Type: w.Type, ServerID: w.ServerID, Feed: w.Feed}
	if w.Type == LicenseKey {
		k := &KeyLicense{}
		for dst, src := range map[*string]*string{&k.Key: w.Key, &k.Note: w.Note, &k.Sticky: w.Sticky} {
			if src != nil {
				*dst = *src
			}
		}
		if w.Limit != nil {
			k.Limit = *w.Limit
		}
		if w.Servers != nil {
			k.Servers = *w.Servers
		}
		l.Key = k
	}
	return nil
}
