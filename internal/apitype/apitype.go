// Package apitype is the portal's wire contract, imported by both sides:
// the agent's client (internal/portalclient, internal/agent) and the
// portal (internal/portal/...). It holds the requests and answers of the
// agent API, the objects of the REST API, the error codes both sides
// name, and the enums (channel, role, server state, the main feed) as
// types. The signed index, which the agent verifies before it reads it,
// is internal/index.
//
// Nothing here decides anything: the rules live in the portal's core.
// A JSON answer's field names and order are the wire format; the golden
// files of the portal's tests pin them.
package apitype

// MainFeed is the feed every portal has and cannot delete: keys and IP
// licenses without a feed of their own take it.
const MainFeed = "main"

// Channel is the channel a level is released on; a feed's channel says
// which levels it shows.
type Channel string

// The channels.
const (
	ChannelStable Channel = "stable" // every feed shows stable levels
	ChannelTest   Channel = "test"   // only test feeds (and PREFIX=test) show test levels
)

// Channels lists every channel.
var Channels = []Channel{ChannelStable, ChannelTest}

// Valid reports whether c is one of Channels.
func (c Channel) Valid() bool { return c == ChannelStable || c == ChannelTest }

// Admits reports whether a feed on channel c shows a level on channel l:
// a stable feed shows stable levels, a test feed both.
func (c Channel) Admits(l Channel) bool { return l == ChannelStable || c == ChannelTest }

// Role is what an operator may do.
type Role string

// The roles.
const (
	RoleAdmin    Role = "admin"    // may change anything
	RoleReadOnly Role = "readonly" // may read everything but secrets
)

// Roles lists every role.
var Roles = []Role{RoleAdmin, RoleReadOnly}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleReadOnly }

// ServerState is a server's patch state, the same in the web UI, the
// Nagios API and the metrics.
type ServerState string

// The states, in the order reports list them.
const (
	StateUpToDate    ServerState = "uptodate"    // has the newest level it is allowed
	StateOutOfDate   ServerState = "outofdate"   // a newer level is allowed than the one applied
	StateUnsupported ServerState = "unsupported" // no level exists for its kernel
	StateInactive    ServerState = "inactive"    // has not checked in for the inactive age
)

// ServerStates lists every state, in report order.
var ServerStates = []ServerState{StateUpToDate, StateOutOfDate, StateUnsupported, StateInactive}

// Valid reports whether s is one of ServerStates.
func (s ServerState) Valid() bool {
	for _, v := range ServerStates {
		if s == v {
			return true
		}
	}
	return false
}
