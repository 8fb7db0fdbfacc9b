package apitype

import (
	"encoding/json"
	"time"
)

// RolloutState is where a rollout is (the portal's rollout.State).
type RolloutState string

// The rollout states.
const (
	RolloutRunning    RolloutState = "running"     // its waves so far get the patchset; the next follows when healthy
	RolloutPaused     RolloutState = "paused"      // as running, but it does not advance
	RolloutHalted     RolloutState = "halted"      // no server gets the patchset anew
	RolloutRolledBack RolloutState = "rolled-back" // every server with the patchset is ordered back
	RolloutDone       RolloutState = "done"        // every server may have the patchset
)

// RolloutStates lists every state.
var RolloutStates = []RolloutState{RolloutRunning, RolloutPaused, RolloutHalted, RolloutRolledBack, RolloutDone}

// RolloutAction is an operator's action on a rollout.
type RolloutAction string

// The actions, as POST /admin/api/rollouts/{id}/{action} names them.
const (
	RolloutPause    RolloutAction = "pause"
	RolloutResume   RolloutAction = "resume"
	RolloutPromote  RolloutAction = "promote"
	RolloutHalt     RolloutAction = "halt"
	RolloutRollback RolloutAction = "rollback"
)

// RolloutActions lists every action.
var RolloutActions = []RolloutAction{RolloutPause, RolloutResume, RolloutPromote, RolloutHalt, RolloutRollback}

// Rollout is a feed's release of a patchset in waves, in the REST API.
type Rollout struct {
	ID          int64         `json:"id"`
	Feed        string        `json:"feed"`
	Patchset    string        `json:"patchset"`
	Waves       []json.Number `json:"waves"` // percentages of the servers: [1, 10, 50, 100]
	Wave        int           `json:"wave"`  // the current one, from 1
	State       RolloutState  `json:"state"`
	Reason      string        `json:"reason"` // why it is in its state
	Urgent      bool          `json:"urgent"`
	Started     *time.Time    `json:"started"` // null until the rollout loop stamps it
	WaveStarted *time.Time    `json:"wave_started"`
	Updated     *time.Time    `json:"updated"`
}

// RolloutDetail is a rollout with the health of its waves now and its
// servers.
type RolloutDetail struct {
	Rollout
	// Verdict is what the rollout loop would decide now: wait, advance,
	// finish, halt, or idle (not running); Next says why.
	Verdict string          `json:"verdict"`
	Next    string          `json:"next"`
	Health  []RolloutWave   `json:"health"`
	Servers []RolloutServer `json:"servers"`
}

// RolloutWave is one wave's servers and their health signals since the
// rollout began.
type RolloutWave struct {
	Wave     int         `json:"wave"`  // from 1
	Share    json.Number `json:"share"` // percent
	Size     int         `json:"size"`  // servers in this wave and those before it
	Servers  int         `json:"servers"`
	Applied  int         `json:"applied"`
	Failures int         `json:"failures"`
	Warnings int64       `json:"warnings"`
	Oopses   int64       `json:"oopses"`
	Taints   int         `json:"taints"`
	Reboots  int         `json:"reboots"`
	Silent   int         `json:"silent"`
}

// RolloutServer is one server of a rollout.
type RolloutServer struct {
	ID     string `json:"server_id"`
	Wave   int    `json:"wave"`   // from 1
	Level  int    `json:"level"`  // the level it reports
	Target int    `json:"target"` // the patchset's level for its kernel
	Health string `json:"health"` // "ok", or what counts against the rollout
}

// RolloutPolicy is a feed's rollout policy in the REST API. A PUT sets
// the fields it names and keeps the others.
type RolloutPolicy struct {
	Waves             []json.Number `json:"waves"` // [] releases every patchset at once
	Soak              string        `json:"soak"`  // a duration, "4h"
	AutoRollback      bool          `json:"auto_rollback"`
	MaxFailures       int           `json:"max_failures"`
	MaxWarnings       int           `json:"max_warnings"`
	MaxOopses         int           `json:"max_oopses"`
	MaxTaints         int           `json:"max_taints"`
	MaxReboots        int           `json:"max_reboots"`
	MaxSilent         int           `json:"max_silent"`
	SilentAfter       string        `json:"silent_after"`
	MinCheckedIn      int           `json:"min_checked_in"` // percent
	Window            string        `json:"window"`         // "Mon-Fri 22:00-02:00 Europe/Berlin"; "" none
	UrgentSkipsWindow bool          `json:"urgent_skips_window"`
}

// KeyWindow is an activation key's own maintenance window; "" none.
type KeyWindow struct {
	Key    string `json:"key"`
	Window string `json:"window"`
}

// Urgency says whether a patchset is urgent.
type Urgency struct {
	Urgent bool `json:"urgent"`
}
