package apitype

import (
	"encoding/json"
	"fmt"
	"time"
)

// The REST API (ePortal's /admin/api) answers lists in an envelope. Data
// is the envelope of today's answers, {"data": [...]}; ePortal's paged
// envelope ({"count", "limit", "offset", "result"}) is another type beside
// it, so that a route can answer either without touching its objects.
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

// Server is a server in the REST API.
type Server struct {
	ID              string     `json:"server_id"`
	Hostname        string     `json:"hostname"`
	IP              string     `json:"ip"`
	Key             string     `json:"key"` // masked for a read-only operator
	Kernel          string     `json:"kernel"`
	KernelID        string     `json:"kernel_id"`
	BuildID         string     `json:"build_id"`
	PatchLevel      int        `json:"patch_level"`
	EffectiveKernel string     `json:"effective_kernel"`
	LastResult      string     `json:"last_result"`
	AgentVersion    string     `json:"agent_version"`
	Tags            string     `json:"tags"`
	Registered      time.Time  `json:"registered"`
	Checkin         *time.Time `json:"checkin"` // null before the first check-in
}

// Key is an activation key in the REST API, as listed and as added.
type Key struct {
	Key      string    `json:"key"` // masked for a read-only operator; empty when adding: a random one
	Note     string    `json:"note"`
	Limit    int       `json:"server_limit"` // 0 is unlimited
	Feed     string    `json:"feed"`
	Sticky   string    `json:"sticky_patch"`
	IPRanges []string  `json:"ip_ranges"`
	Servers  int       `json:"servers"`
	Created  time.Time `json:"created"`
}

// Feed is a feed in the REST API.
type Feed struct {
	Name             string  `json:"name"`
	Channel          Channel `json:"channel"`
	DeployAfterHours int     `json:"deploy_after"`
	Auto             bool    `json:"auto"`
}

// Patchset is a patchset's state in one feed.
type Patchset struct {
	Name     string    `json:"patchset"`
	Feed     string    `json:"feed"`
	Enabled  bool      `json:"enabled"`
	Released time.Time `json:"released"`
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

// Managed is the answer to a patchset action: the patchsets it enabled
// or disabled.
type Managed struct {
	Patchsets []string `json:"patchsets"`
	Result    string   `json:"result"`
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
