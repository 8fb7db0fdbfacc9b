package apitype

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestLicenseJSON: a key's license and an IP license, each as the wire
// has it and back.
func TestLicenseJSON(t *testing.T) {
	tests := []struct {
		name string
		lic  License
		want string
	}{
		{"key", License{Type: LicenseKey, ServerID: "a1b2", Feed: "main", Key: &KeyLicense{Key: "k1", Limit: 0, Servers: 3, Note: "", Sticky: "2026-11-20"}},
			`{"feed":"main","key":"k1","limit":0,"note":"","server_id":"a1b2","servers":3,"sticky":"2026-11-20","type":"key"}`},
		{"ip", License{Type: LicenseIP, ServerID: "ip-192-0-2-1", Feed: "lab"},
			`{"feed":"lab","server_id":"ip-192-0-2-1","type":"ip"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.lic)
			if err != nil || string(b) != tt.want {
				t.Fatalf("marshal = %s, %v\nwant %s", b, err, tt.want)
			}
			var back License
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.lic, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerLevelJSON(t *testing.T) {
	in := Data[ServerLevel]{Data: []ServerLevel{{IP: "192.0.2.1", KernelID: "02088a120bf0ab256348fc6f756085ab64f70cd0", Level: 2}}}
	b, _ := json.Marshal(in)
	want := `{"data":[["192.0.2.1","02088a120bf0ab256348fc6f756085ab64f70cd0",2]]}`
	if string(b) != want {
		t.Fatalf("marshal = %s, want %s", b, want)
	}
	var back Data[ServerLevel]
	if err := json.Unmarshal(b, &back); err != nil || !cmp.Equal(in, back) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"data":[["192.0.2.1",2]]}`), &back); err == nil {
		t.Error("a two-element row was accepted")
	}
	if b, _ := json.Marshal(DataOf[Key](nil)); string(b) != `{"data":[]}` {
		t.Errorf("empty list = %s, want {\"data\":[]}", b)
	}
}

// TestCheckInValidate: each rule names its field; a long result is cut
// at a character.
func TestCheckInValidate(t *testing.T) {
	tags := func(s string) *string { return &s }
	tests := []struct {
		name string
		ci   CheckIn
		want string // the error code, "" for valid
	}{
		{"valid", CheckIn{Hostname: "web1.example.com", Release: "6.1.0-56-amd64", BuildID: "5f2c3b0d9d2e5a2d", Level: 3, Result: "ok\nline two", AgentVersion: "1.0.0", Tags: tags("env:prod;team:web")}, ""},
		{"empty", CheckIn{}, ""},
		{"hostname", CheckIn{Hostname: "web1 (192.0.2.9) is OUTOFDATE"}, "bad-hostname"},
		{"release", CheckIn{Release: "6.1.0\n"}, "bad-release"},
		{"build_id", CheckIn{BuildID: "XYZ"}, "bad-build-id"},
		{"kernel_id", CheckIn{KernelID: "0208"}, "bad-kernel-id"},
		{"level", CheckIn{Level: -1}, "bad-level"},
		{"level_large", CheckIn{Level: MaxLevel + 1}, "bad-level"},
		{"effective", CheckIn{EffectiveRelease: "a b"}, "bad-effective-release"},
		{"result", CheckIn{Result: "ok\x1b[31m"}, "bad-result"},
		{"agent_version", CheckIn{AgentVersion: "1.0 beta"}, "bad-agent-version"},
		{"tags_quote", CheckIn{Tags: tags(`a:"b"`)}, "bad-tags"},
		{"tags_long", CheckIn{Tags: tags(strings.Repeat("a", MaxTagsLen+1))}, "bad-tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.ci.Validate()
			got := ""
			if err != nil {
				got = err.Error()
				if !errors.Is(err, ErrBadField) {
					t.Errorf("%v is not ErrBadField", err)
				}
			}
			if got != tt.want {
				t.Errorf("Validate = %q, want %q", got, tt.want)
			}
		})
	}
	ci := CheckIn{Result: strings.Repeat("a", MaxResultLen-1) + "é"}
	if err := ci.Validate(); err != nil || len(ci.Result) != MaxResultLen-1 {
		t.Errorf("long result: %v, cut to %d bytes, want %d", err, len(ci.Result), MaxResultLen-1)
	}
}

func TestChannelAdmits(t *testing.T) {
	for _, tt := range []struct {
		feed, level Channel
		want        bool
	}{{ChannelStable, ChannelStable, true}, {ChannelStable, ChannelTest, false}, {ChannelTest, ChannelStable, true}, {ChannelTest, ChannelTest, true}} {
		if got := tt.feed.Admits(tt.level); got != tt.want {
			t.Errorf("%s feed admits a %s level = %v, want %v", tt.feed, tt.level, got, tt.want)
		}
	}
}

// TestTelemetryValidate: a check-in's telemetry as an agent sends it, and
// each way a field can break its rule.
func TestTelemetryValidate(t *testing.T) {
	at := time.Date(2026, 11, 20, 3, 14, 0, 0, time.UTC)
	good := func() *Telemetry {
		return &Telemetry{BootID: "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19", Uptime: 7245, Taint: 45568, TaintFlags: "WOEK",
			Warnings: 1, Oopses: 0, CountsFrom: CountsSysfs,
			LastApply: &ApplyReport{Level: 4, OK: true, At: at, BootID: "6a1c8f0e-2b7d-4a3e-9c51-0f4e8d2b7a19", Taint: 45056, Warnings: 0}}
	}
	tests := []struct {
		name   string
		change func(*Telemetry)
		ok     bool
	}{
		{"as_sent", func(*Telemetry) {}, true},
		{"no_apply_yet", func(t *Telemetry) { t.LastApply = nil }, true},
		{"no_counters", func(t *Telemetry) { t.Warnings, t.Oopses, t.CountsFrom = -1, -1, "" }, true},
		{"kmsg_counts", func(t *Telemetry) { t.CountsFrom = CountsKmsg }, true},
		{"untainted", func(t *Telemetry) { t.Taint, t.TaintFlags = 0, "" }, true},
		{"boot_id_not_uuid", func(t *Telemetry) { t.BootID = "6A1C8F0E-2B7D-4A3E-9C51-0F4E8D2B7A19" }, false},
		{"flags_disagree", func(t *Telemetry) { t.TaintFlags = "OEK" }, false},
		{"negative_uptime", func(t *Telemetry) { t.Uptime = -1 }, false},
		{"count_below_unknown", func(t *Telemetry) { t.Warnings = -2 }, false},
		{"unknown_source", func(t *Telemetry) { t.CountsFrom = "dmesg" }, false},
		{"counts_without_source", func(t *Telemetry) { t.CountsFrom = "" }, false},
		{"source_without_counts", func(t *Telemetry) { t.Warnings, t.Oopses = -1, -1 }, false},
		{"apply_level_too_high", func(t *Telemetry) { t.LastApply.Level = MaxLevel + 1 }, false},
		{"apply_without_time", func(t *Telemetry) { t.LastApply.At = time.Time{} }, false},
		{"apply_bad_boot_id", func(t *Telemetry) { t.LastApply.BootID = "x" }, false},
		{"taint_beyond_32_bits", func(t *Telemetry) { t.Taint, t.TaintFlags = 1<<40, "[40]" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := good()
			tt.change(tel)
			c := CheckIn{Level: 4, Result: "ok", Telemetry: tel}
			err := c.Validate()
			switch {
			case tt.ok && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case !tt.ok && (!errors.Is(err, ErrBadField) || err.Error() != "bad-telemetry"):
				t.Errorf("Validate = %v, want bad-telemetry", err)
			}
		})
	}
}
