package apitype

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The REST API (ePortal's /admin/api) answers as ePortal documents it:
// a listing of servers in the paged envelope Page, other listings and
// every change in Result ({"result": ...}). Data, {"data": [...]}, is the
// envelope of the per-key server listing scanner integrations read
// (/admin/api/kcare/patchset/{key}).
type Data[T any] struct {
	Data []T `json:"data"`
}

// DataOf wraps list, never answering null for an empty one.
func DataOf[T any](list []T) Data[T] {
	if list == nil {
		list = []T{}
	}
	return Data[T]{Data: list}
}

// Page is ePortal's paged envelope: Count is how many objects the
// filters select in all, Result the ones from Offset, at most Limit.
type Page[T any] struct {
	Count  int `json:"count"`
	Limit  int `json:"limit"`
	Offset int `json:"offset"`
	Result []T `json:"result"`
}

// Count is the answer of a listing asked with only_count: the count
// alone.
type Count struct {
	Count int `json:"count"`
}

// Result is ePortal's answer envelope, {"result": ...}: a listing, the
// object a change made, "ok", or how many objects a deletion removed.
type Result[T any] struct {
	Result T `json:"result"`
}

// ResultOf wraps v.
func ResultOf[T any](v T) Result[T] { return Result[T]{Result: v} }

// ListOf wraps list as a Result, never answering null for an empty one.
func ListOf[T any](list []T) Result[[]T] {
	if list == nil {
		list = []T{}
	}
	return Result[[]T]{Result: list}
}

// DefaultLimit is how many servers a listing answers when it names no
// limit, as in ePortal.
const DefaultLimit = 10

// MaxLimit is the most servers one listing answers.
const MaxLimit = 1000

// TimeLayout is how the REST API writes times, as ePortal does: UTC, with
// microseconds and no zone ("2021-04-08 16:43:23.907671").
const TimeLayout = "2006-01-02 15:04:05.000000"

// Time is a time in the REST API, written in TimeLayout.
type Time struct{ time.Time }

// TimeOf is t as a Time; nil for the zero time.
func TimeOf(t time.Time) *Time {
	if t.IsZero() {
		return nil
	}
	return &Time{t.UTC()}
}

// MarshalJSON writes t in TimeLayout, UTC.
func (t Time) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(TimeLayout))
}

// UnmarshalJSON reads TimeLayout (with or without its fraction) or RFC
// 3339.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", time.RFC3339Nano} {
		if v, err := time.Parse(layout, s); err == nil {
			t.Time = v.UTC()
			return nil
		}
	}
	return fmt.Errorf("time %q: want %s or RFC 3339", s, TimeLayout)
}

// PatchTypeDefault is the patch type of every server: kcare has one kind
// of patch (KernelCare's extra and free types do not exist here).
const PatchTypeDefault = "default"

// Server is a server in the REST API, with ePortal's field names. The
// fields kcarectl does not report (uptime, virt, distro, ...) are null;
// build_id and last_result are kcare's own, beside ePortal's.
type Server struct {
	ID            string  `json:"id"`
	IP            string  `json:"ip"`
	Hostname      string  `json:"hostname"`
	Key           string  `json:"key"` // masked for a read-only operator
	Feed          string  `json:"feed"`
	Registered    *Time   `json:"registered"`
	Checkin       *Time   `json:"checkin"` // null before the first check-in
	Updated       *Time   `json:"updated"` // when it last loaded patches (a new level); null before
	EUname        string  `json:"euname"`  // the effective release
	Release       string  `json:"release"` // uname -r
	KernelID      string  `json:"kernel_id"`
	PatchLevel    int     `json:"patch_level"`
	PatchType     string  `json:"patch_type"`
	Tags          *string `json:"tags"` // "k:v;k2" as kcarectl --tag set them; null for none
	Uptime        *int64  `json:"uptime"`
	Version       *string `json:"version"`
	Virt          *string `json:"virt"`
	KcareVersion  string  `json:"kcare_version"`
	Distro        *string `json:"distro"`
	DistroVersion *string `json:"distro_version"`
	Machine       *string `json:"machine"`
	Processor     *string `json:"processor"`
	BuildID       string  `json:"build_id"`
	LastResult    string  `json:"last_result"`
}

// Key is an activation key in the REST API, as listed and as added or
// changed.
type Key struct {
	Key      string   `json:"key"` // masked for a read-only operator; empty when adding: a random one
	Feed     string   `json:"feed"`
	Note     *string  `json:"note"`         // null for none, as ePortal lists it
	Limit    int      `json:"server_limit"` // 0 is unlimited
	Sticky   string   `json:"sticky_patch"`
	IPRanges []string `json:"ip_ranges"`
	Servers  int      `json:"servers"`
	Created  *Time    `json:"created"`
}

// FeedChannel is a feed's channel as ePortal names it: "default" for
// stable.
type FeedChannel string

// ChannelDefault is ePortal's name of the stable channel.
const ChannelDefault FeedChannel = "default"

// ParseFeedChannel reads a channel as ePortal or kcare names it.
func ParseFeedChannel(s string) (Channel, error) {
	switch strings.ToLower(s) {
	case "", string(ChannelDefault), string(ChannelStable):
		return ChannelStable, nil
	case string(ChannelTest):
		return ChannelTest, nil
	}
	return "", fmt.Errorf("channel %q: want default (stable) or test", s)
}

// FeedChannelOf is ch as ePortal names it.
func FeedChannelOf(ch Channel) FeedChannel {
	if ch == ChannelTest {
		return FeedChannel(ChannelTest)
	}
	return ChannelDefault
}

// Feed is a feed in the REST API.
type Feed struct {
	Name             string      `json:"name"`
	Auto             bool        `json:"auto"`
	DeployAfterHours int         `json:"deploy_after"`
	Channel          FeedChannel `json:"channel"`
}

// PatchsetStatus is a patchset's state in a feed, as ePortal names it.
type PatchsetStatus string

// The patchset states.
const (
	PatchsetEnabled    PatchsetStatus = "enabled"    // servers of the feed may get it
	PatchsetDisabled   PatchsetStatus = "disabled"   // enabled once, disabled since
	PatchsetUndeployed PatchsetStatus = "undeployed" // never enabled in this feed
)

// Patchset is a patchset's state in one feed.
type Patchset struct {
	Name     string         `json:"patchset"`
	Status   PatchsetStatus `json:"status"`
	Feed     string         `json:"feed"`
	Released *Time          `json:"released"`
}

// User is an operator in the REST API, as ePortal lists it.
type User struct {
	ID          int    `json:"id"` // the place in the listing, from 1: kcare names users, it numbers none
	Username    string `json:"username"`
	Description string `json:"description"`
	Readonly    bool   `json:"readonly"`
}

// PatchsetAction is what /admin/api/patchsets/manage does to a patchset
// in a feed.
type PatchsetAction string

// The patchset actions, as ePortal names them.
const (
	ActionEnable         PatchsetAction = "enable"          // enable the patchset
	ActionDisable        PatchsetAction = "disable"         // disable the patchset
	ActionEnableUpTo     PatchsetAction = "enable-upto"     // enable it and every older one
	ActionUndeployDownTo PatchsetAction = "undeploy-downto" // disable it and every newer one
)

// PatchsetActions lists every action.
var PatchsetActions = []PatchsetAction{ActionEnable, ActionDisable, ActionEnableUpTo, ActionUndeployDownTo}

// Valid reports whether a is one of PatchsetActions.
func (a PatchsetAction) Valid() bool {
	for _, v := range PatchsetActions {
		if a == v {
			return true
		}
	}
	return false
}

// ServerLevel is one server of a key in ePortal's per-key listing
// (/admin/api/kcare/patchset/{key}), on the wire [ip, kernel_id, level].
type ServerLevel struct {
	IP       string
	KernelID string
	Level    int
}

// MarshalJSON writes the server as [ip, kernel_id, level].
func (s ServerLevel) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{s.IP, s.KernelID, s.Level})
}

// UnmarshalJSON reads [ip, kernel_id, level].
func (s *ServerLevel) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 3 {
		return fmt.Errorf("server level: %d elements, want [ip, kernel_id, level]", len(raw))
	}
	if err := json.Unmarshal(raw[0], &s.IP); err != nil {
		return err
	}
	if err := json.Unmarshal(raw[1], &s.KernelID); err != nil {
		return err
	}
	return json.Unmarshal(raw[2], &s.Level)
}

// Published is the answer to a publish: the level as stored.
type Published struct {
	BuildID  string    `json:"build_id"`
	Channel  Channel   `json:"channel"`
	Digest   string    `json:"digest"`
	Level    int       `json:"level"`
	Patchset string    `json:"patchset"`
	Release  string    `json:"release"`
	Released time.Time `json:"released"`
	Size     int64     `json:"size"`
}

// CVE is one fix in a level.
type CVE struct {
	ID          string `json:"id"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url,omitempty"`
}

// MirrorLevel is a level as one portal hands it to another (a mirror's
// sync, an export archive): everything but the bundle, which is fetched
// by its digest, with the publisher's signature.
type MirrorLevel struct {
	BuildID          string    `json:"build_id"`
	KernelID         string    `json:"kernel_id"`
	Release          string    `json:"release"`
	Level            int       `json:"level"`
	Patchset         string    `json:"patchset"`
	Channel          Channel   `json:"channel"`
	Digest           string    `json:"digest"`
	Size             int64     `json:"size"`
	Signature        string    `json:"signature"`
	EffectiveRelease string    `json:"effective_release"`
	CVEs             []CVE     `json:"cves"`
	Released         time.Time `json:"released"`
	Published        time.Time `json:"published"`
}

// MirrorLevels is the answer of /api/v1/mirror/levels.
type MirrorLevels struct {
	Levels []MirrorLevel `json:"levels"`
}
