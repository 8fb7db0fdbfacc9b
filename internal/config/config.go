// Package config reads and writes kcare.conf, keeping the user's comments and order.
//
// The file layer, File, is lossless: it keeps every line as written and
// changes only the assignments that Set and Unset edit. The typed layer,
// Config, reads the keys kcarectl knows, fills in their defaults and checks
// their values. Every key KernelCare documents is known: honoured, or
// refused with a reason (ErrNotSupported) when kcare has no such feature.
// Other keys are kept in the file; Unknown names them, for a warning.
package config

import (
	"cmp"
	"regexp"

	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/kcare/kcare/internal/failure"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where kcarectl reads its configuration.
const DefaultPath = "/etc/sysconfig/kcare/kcare.conf"

// Defaults of the keys that have one.
const (
	DefaultKeyringDir        = "/etc/sysconfig/kcare/keys"
	DefaultTransitionTimeout = 60 * time.Second
)

// Update policies, the values of UPDATE_POLICY.
const (
	UpdatePolicyRemote     = "REMOTE"
	UpdatePolicyLocal      = "LOCAL"
	UpdatePolicyLocalFirst = "LOCAL_FIRST"
)

// Config is the agent's configuration, read from a File.
type Config struct {
	PatchServer string // PATCH_SERVER's first URL: an http or https URL, or "" for the built-in one
	// PatchServers are every URL of PATCH_SERVER, in order: one portal's
	// replicas, each tried in turn when the one before cannot be reached
	// ("url1,url2").
	PatchServers        []string
	RegistrationURL     string        // REGISTRATION_URL: an http or https URL, or "" for the built-in one
	AutoUpdate          bool          // AUTO_UPDATE, default true
	Prefix              string        // PREFIX: "", "test", "12h", "24h" or "48h"
	StickyPatch         string        // STICKY_PATCH: "", "KEY" or a date for ParseStickyDate, as written
	UpdatePolicy        string        // UPDATE_POLICY: one of the UpdatePolicy constants, default REMOTE
	UpdateDelay         string        // UPDATE_DELAY: "", or hours or days as ParseDelay takes them ("24h", "2d"), as written
	AutoUpdateDelay     string        // AUTO_UPDATE_DELAY: UPDATE_DELAY for --auto-update and --smart-update
	StickyPatchset      string        // STICKY_PATCHSET: "", or the newest patchset to take, such as K20261120_01
	AutoStickyPatchset  string        // AUTO_STICKY_PATCHSET: STICKY_PATCHSET for --auto-update and --smart-update
	PatchType           string        // PATCH_TYPE: "" or default: kcare has one kind of patch
	TransitionTimeout   time.Duration // TRANSITION_TIMEOUT, default 60s
	KeyringDir          string        // KEYRING_DIR, an absolute path, default DefaultKeyringDir
	HTTPProxy           string        // HTTP_PROXY, as written
	HTTPSProxy          string        // HTTPS_PROXY, as written
	IgnoreUnknownKernel bool          // IGNORE_UNKNOWN_KERNEL, default false
	CABundle            string        // CA_BUNDLE: a PEM file of CAs trusted beside the system's, absolute path
	// PatchServerPins are PATCH_SERVER_PIN's pins of the portal's public
	// key, each "sha256//" and the standard base64 of the sha256 of the
	// DER SubjectPublicKeyInfo (curl's --pinnedpubkey form).
	PatchServerPins []string
}

// Default returns the configuration of an empty file.
func Default() Config {
	return Config{
		AutoUpdate:        true,
		UpdatePolicy:      UpdatePolicyRemote,
		TransitionTimeout: DefaultTransitionTimeout,
		KeyringDir:        DefaultKeyringDir,
	}
}

// A ValueError reports a known key whose value is not valid.
type ValueError struct {
	Key   string
	Line  int // 1-based line of the assignment that counts, the last one
	Value string
	Err   error
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("line %d: %s=%q: %v", e.Line, e.Key, e.Value, e.Err)
}

func (e *ValueError) Unwrap() error { return e.Err }

// fields are the keys Config reads. Each set checks a value and stores it.
// For a key with a default, an empty value keeps the default.
type field struct {
	key string
	set func(c *Config, v string) error
}

var fields = []field{
	{"PATCH_SERVER", func(c *Config, v string) error { return setURLs(c, v) }},
	{"REGISTRATION_URL", func(c *Config, v string) error { return setURL(&c.RegistrationURL, v) }},
	{"AUTO_UPDATE", func(c *Config, v string) error { return setBool(&c.AutoUpdate, v) }},
	{"PREFIX", func(c *Config, v string) error {
		switch v {
		case "", "test", "12h", "24h", "48h":
			c.Prefix = v
			return nil
		}
		return errors.New(`want "", test, 12h, 24h or 48h`)
	}},
	{"STICKY_PATCH", func(c *Config, v string) error {
		if v != "" && v != "KEY" {
			if _, err := parseStickyDate(v); err != nil {
				return fmt.Errorf(`want "", KEY, DDMMYY, DDMMYYYY or YYYY-MM-DD: %v`, err)
			}
		}
		c.StickyPatch = v
		return nil
	}},
	{"UPDATE_POLICY", func(c *Config, v string) error {
		switch p := strings.ToUpper(v); p {
		case "":
		case UpdatePolicyRemote, UpdatePolicyLocal, UpdatePolicyLocalFirst:
			c.UpdatePolicy = p
		default:
			return errors.New("want REMOTE, LOCAL or LOCAL_FIRST")
		}
		return nil
	}},
	{"UPDATE_DELAY", func(c *Config, v string) error { return setDelay(&c.UpdateDelay, v) }},
	{"AUTO_UPDATE_DELAY", func(c *Config, v string) error {
		if err := setDelay(&c.AutoUpdateDelay, v); err != nil {
			return fmt.Errorf("%w (AUTO_UPDATE_DELAY now has KernelCare's meaning, the age below which patchsets are skipped; the random wait before an auto-update is the timer's RandomizedDelaySec)", err)
		}
		return nil
	}},
	{"STICKY_PATCHSET", func(c *Config, v string) error { return setPatchset(&c.StickyPatchset, v) }},
	{"AUTO_STICKY_PATCHSET", func(c *Config, v string) error { return setPatchset(&c.AutoStickyPatchset, v) }},
	{"PATCH_TYPE", func(c *Config, v string) error {
		switch strings.ToLower(v) {
		case "", "default":
			c.PatchType = strings.ToLower(v)
			return nil
		case "extra", "free":
			return notSupported("kcare has one kind of patch per kernel, no extra or free patch sets; use default")
		}
		return errors.New("want default")
	}},
	{"PATCH_METHOD", func(c *Config, v string) error {
		return refuseSet(v, "the kernel's livepatch consistency model switches each task at a safe point; there is no freezer to choose")
	}},
	{"FORCE_GID", func(c *Config, v string) error {
		return refuseSet(v, "kcare has no symlink protection patch to give a group to")
	}},
	{"USERSPACE_PATCHES", func(c *Config, v string) error {
		return refuseSet(v, "kcare patches the kernel only; there is no user-space patching")
	}},
	{"LOAD_KCARE_SYSCTL", func(c *Config, v string) error {
		var on bool
		if err := setBool(&on, v); err != nil {
			return err
		}
		if on {
			return notSupported("kcare's livepatches have no sysctl switches to load; set it to False or remove it")
		}
		return nil
	}},
	{"REPORT_FQDN", func(c *Config, v string) error {
		var on bool
		if err := setBool(&on, v); err != nil {
			return err
		}
		if on {
			return notSupported("kcarectl reports the host name the kernel has (hostname); set that to the FQDN (hostnamectl set-hostname), and this to False")
		}
		return nil
	}},
	{"TRANSITION_TIMEOUT", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		d, err := parseTimeout(v)
		if err != nil {
			return err
		}
		c.TransitionTimeout = d
		return nil
	}},
	{"KEYRING_DIR", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if !filepath.IsAbs(v) {
			return errors.New("want an absolute path")
		}
		c.KeyringDir = v
		return nil
	}},
	{"HTTP_PROXY", func(c *Config, v string) error { return setProxy(&c.HTTPProxy, v) }},
	{"HTTPS_PROXY", func(c *Config, v string) error { return setProxy(&c.HTTPSProxy, v) }},
	{"CA_BUNDLE", func(c *Config, v string) error {
		if v != "" && !filepath.IsAbs(v) {
			return errors.New("want an absolute path")
		}
		c.CABundle = v
		return nil
	}},
	{"IGNORE_UNKNOWN_KERNEL", func(c *Config, v string) error { return setBool(&c.IgnoreUnknownKernel, v) }},
	{"PATCH_SERVER_PIN", func(c *Config, v string) error {
		pins, err := ParsePins(v)
		c.PatchServerPins = pins
		return err
	}},
}

// PinPrefix starts a public key pin: the hash that follows is sha256.
const PinPrefix = "sha256//"

// ParsePins parses a PATCH_SERVER_PIN value: pins separated by ";" (as
// curl's --pinnedpubkey takes them), each PinPrefix and the standard
// base64, padded, of a 32-byte sha256. An empty value is no pins.
func ParsePins(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	var pins []string
	for _, p := range strings.Split(v, ";") {
		b64, ok := strings.CutPrefix(p, PinPrefix)
		sum, err := base64.StdEncoding.Strict().DecodeString(b64)
		if !ok || err != nil || len(sum) != sha256.Size {
			return nil, errors.New("want sha256//BASE64 (the base64 of the sha256 of the portal's public key, as curl's --pinnedpubkey), several separated by ;")
		}
		pins = append(pins, p)
	}
	return pins, nil
}

// Config returns the configuration the file describes: Default, overridden
// by the assignment of each known key. It reports every invalid value, and
// every known key assigned more than once, in line order, each as a
// *ValueError.
func (f *File) Config() (Config, error) {
	c := Default()
	var errs []*ValueError
	for _, field := range fields {
		i := f.last(field.key)
		if i < 0 {
			continue
		}
		v := f.lines[i].value
		if first := f.first(field.key); first != i {
			// A shell would take the last, and a reader of the file
			// might take the first: neither is a safe guess.
			errs = append(errs, &ValueError{Key: field.key, Line: i + 1, Value: v,
				Err: fmt.Errorf("%s is set on line %d already; set it once (several portals: one comma-separated list)", field.key, first+1)})
			continue
		}
		if err := field.set(&c, v); err != nil {
			errs = append(errs, &ValueError{Key: field.key, Line: i + 1, Value: v, Err: err})
		}
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b *ValueError) int { return cmp.Compare(a.Line, b.Line) })
		joined := make([]error, len(errs))
		for i, err := range errs {
			joined[i] = err
		}
		return Config{}, errors.Join(joined...)
	}
	return c, nil
}

// ErrNotSupported is a KernelCare setting kcare has no such feature for:
// refused, with the reason, never ignored. It is of the category
// failure.NotSupported.
var ErrNotSupported = failure.New(failure.NotSupported, "not supported by kcare")

// notSupported is ErrNotSupported with why.
func notSupported(why string) error { return fmt.Errorf("%w: %s", ErrNotSupported, why) }

// refuseSet refuses any value but empty.
func refuseSet(v, why string) error {
	if v == "" {
		return nil
	}
	return notSupported(why)
}

// setDelay checks a KernelCare delay (ParseDelay) and keeps it as
// written.
func setDelay(s *string, v string) error {
	if v != "" {
		if _, err := ParseDelay(v); err != nil {
			return err
		}
	}
	*s = v
	return nil
}

// patchsetRE is a patchset name: KernelCare's K20230908_02, or a name
// given at publish time.
var patchsetRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// setPatchset checks a patchset name.
func setPatchset(s *string, v string) error {
	if v != "" && !patchsetRE.MatchString(v) {
		return errors.New("want a patchset name such as K20261120_01")
	}
	*s = v
	return nil
}

// knownKeys are the keys kcare reads besides fields': TAGS, which
// kcarectl --tag writes.
var knownKeys = []string{"TAGS"}

// Unknown returns the keys the file assigns that kcare does not know,
// in file order: kept, but not read; kcarectl warns about each.
func (f *File) Unknown() []string {
	var out []string
	for _, k := range f.Keys() {
		if slices.Contains(knownKeys, k) || slices.ContainsFunc(fields, func(fl field) bool { return fl.key == k }) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// KnownKeys lists every key Config reads, and TAGS: those kcare knows.
func KnownKeys() []string {
	out := slices.Clone(knownKeys)
	for _, f := range fields {
		out = append(out, f.key)
	}
	return out
}

// setBool parses a boolean as kcarectl always has: true, yes, on or 1, and
// false, no, off or 0, in any case. An empty value keeps the default.
// setProxy accepts a proxy URL, with or without its http:// scheme.
func setProxy(s *string, v string) error {
	if v == "" {
		*s = ""
		return nil
	}
	u := v
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https" && p.Scheme != "socks5") {
		return errors.New("want a proxy URL such as http://proxy.example.com:3128")
	}
	*s = u
	return nil
}

func setBool(b *bool, v string) error {
	switch strings.ToLower(v) {
	case "":
	case "true", "yes", "on", "1":
		*b = true
	case "false", "no", "off", "0":
		*b = false
	default:
		return errors.New("want true/false, yes/no, on/off or 1/0")
	}
	return nil
}

// setURLs sets PATCH_SERVER: empty, or one or more http or https URLs
// separated by commas, none twice.
func setURLs(c *Config, v string) error {
	c.PatchServer, c.PatchServers = "", nil
	if v == "" {
		return nil
	}
	for _, u := range strings.Split(v, ",") {
		if err := setURL(new(string), u); err != nil || u == "" {
			return errors.New("want an http or https URL, or several separated by commas")
		}
		if slices.Contains(c.PatchServers, u) {
			return fmt.Errorf("%s is listed twice", u)
		}
		c.PatchServers = append(c.PatchServers, u)
	}
	c.PatchServer = c.PatchServers[0]
	return nil
}

// setURL checks that v is empty or an absolute http or https URL.
func setURL(s *string, v string) error {
	if v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("want an http or https URL")
		}
	}
	*s = v
	return nil
}

// parseTimeout parses a positive timeout in seconds ("60") or as a Go
// duration ("90s").
func parseTimeout(v string) (time.Duration, error) {
	const want = `want seconds ("60") or a duration ("90s") greater than zero`
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 || n > math.MaxInt64/int64(time.Second) {
			return 0, errors.New(want)
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New(want)
	}
	return d, nil
}

// ParseDelay parses KernelCare's UPDATE_DELAY and AUTO_UPDATE_DELAY: a
// whole number of hours ("24h") or days ("2d"), or "0" for none. It is
// the one place that syntax lives; the agent and the portal's resolver
// both use it.
func ParseDelay(v string) (time.Duration, error) {
	if v == "0" {
		return 0, nil
	}
	unit := time.Hour
	num, ok := strings.CutSuffix(v, "h")
	if !ok {
		num, ok = strings.CutSuffix(v, "d")
		unit = 24 * time.Hour
	}
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 0 || n > 3650 || !allDigits(num) {
		return 0, fmt.Errorf("delay %q: want hours (24h) or days (2d)", v)
	}
	return time.Duration(n) * unit, nil
}

// ParseStickyDate parses a STICKY_PATCH date, DDMMYY, DDMMYYYY or
// YYYY-MM-DD, as that day at 00:00 UTC. A two-digit year YY is 19YY from 69
// on and 20YY before.
func ParseStickyDate(v string) (time.Time, error) {
	t, err := parseStickyDate(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse sticky patch date %q: %w", v, err)
	}
	return t, nil
}

// StickyEnd is the end of a STICKY_PATCH day, v as ParseStickyDate takes
// it: the whole sticky day counts, so a patch released at or before the
// end is allowed. It is the one place that rule lives; the portal's
// resolver and its store both use it.
func StickyEnd(v string) (time.Time, error) {
	d, err := ParseStickyDate(v)
	if err != nil {
		return time.Time{}, err
	}
	return d.Add(24 * time.Hour), nil
}

// parseStickyDate is ParseStickyDate with an error that does not repeat v.
func parseStickyDate(v string) (time.Time, error) {
	var layout string
	switch {
	case len(v) == 6 && allDigits(v):
		layout = "020106"
	case len(v) == 8 && allDigits(v):
		layout = "02012006"
	case len(v) == 10 && allDigits(v[0:4]) && v[4] == '-' && allDigits(v[5:7]) && v[7] == '-' && allDigits(v[8:10]):
		layout = "2006-01-02"
	default:
		return time.Time{}, errors.New("not DDMMYY, DDMMYYYY or YYYY-MM-DD")
	}
	t, err := time.Parse(layout, v)
	if err != nil {
		var pe *time.ParseError
		if errors.As(err, &pe) && pe.Message != "" {
			return time.Time{}, errors.New(strings.TrimPrefix(pe.Message, ": "))
		}
		return time.Time{}, errors.New("not a valid date")
	}
	return t, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
