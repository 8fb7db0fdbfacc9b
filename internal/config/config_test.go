package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"comments", "# kcare configuration\n\n# AUTO_UPDATE=False\n"},
		{"unknown-keys", "CUSTOM_KEY=1\nauto_update=False\nLIBCARE_ENABLED=yes\n"},
		{"empty-values", "AUTO_UPDATE=\nUPDATE_POLICY=\nTRANSITION_TIMEOUT=\nKEYRING_DIR=\nIGNORE_UNKNOWN_KERNEL=\"\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustParse(t, tt.in).Config()
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			if diff := cmp.Diff(Default(), got); diff != "" {
				t.Errorf("Config mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	want := Config{
		AutoUpdate:        true,
		UpdatePolicy:      "REMOTE",
		TransitionTimeout: 60 * time.Second,
		KeyringDir:        "/etc/sysconfig/kcare/keys",
	}
	if diff := cmp.Diff(want, Default()); diff != "" {
		t.Errorf("Default mismatch (-want +got):\n%s", diff)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(c *Config) // changes from Default
	}{
		{"typical", typical, func(c *Config) {
			c.AutoUpdate = true
			c.PatchServer = "https://patches.example.com/"
			c.PatchServers = []string{"https://patches.example.com/"}
			c.RegistrationURL = "https://portal.example.com/admin/api"
			c.Prefix = "test"
			c.UpdatePolicy = "LOCAL_FIRST"
		}},
		{"every-key", `PATCH_SERVER=http://10.0.0.5:8080/patches
REGISTRATION_URL=https://portal.example.com/admin/api
AUTO_UPDATE=no
PREFIX=48h
STICKY_PATCH=KEY
UPDATE_POLICY=local
UPDATE_DELAY=24h
TRANSITION_TIMEOUT=90s
KEYRING_DIR=/var/lib/kcare/keys
HTTP_PROXY=http://proxy.example.com:3128
HTTPS_PROXY=proxy.example.com:3129
IGNORE_UNKNOWN_KERNEL=on
`, func(c *Config) {
			c.PatchServer = "http://10.0.0.5:8080/patches"
			c.PatchServers = []string{"http://10.0.0.5:8080/patches"}
			c.RegistrationURL = "https://portal.example.com/admin/api"
			c.AutoUpdate = false
			c.Prefix = "48h"
			c.StickyPatch = "KEY"
			c.UpdatePolicy = "LOCAL"
			c.UpdateDelay = "24h"
			c.TransitionTimeout = 90 * time.Second
			c.KeyringDir = "/var/lib/kcare/keys"
			c.HTTPProxy = "http://proxy.example.com:3128"
			c.HTTPSProxy = "http://proxy.example.com:3129"
			c.IgnoreUnknownKernel = true
		}},
		{"replicas", "PATCH_SERVER=https://eportal-a.example.com,https://eportal-b.example.com:8443/\n", func(c *Config) {
			c.PatchServer = "https://eportal-a.example.com"
			c.PatchServers = []string{"https://eportal-a.example.com", "https://eportal-b.example.com:8443/"}
		}},
		{"timeout-seconds", "TRANSITION_TIMEOUT=120\n", func(c *Config) { c.TransitionTimeout = 2 * time.Minute }},
		{"timeout-minutes", "TRANSITION_TIMEOUT=2m30s\n", func(c *Config) { c.TransitionTimeout = 150 * time.Second }},
		{"sticky-ddmmyy", "STICKY_PATCH=271126\n", func(c *Config) { c.StickyPatch = "271126" }},
		{"sticky-ddmmyyyy", "STICKY_PATCH=27112026\n", func(c *Config) { c.StickyPatch = "27112026" }},
		{"sticky-iso", "STICKY_PATCH=2026-11-27\n", func(c *Config) { c.StickyPatch = "2026-11-27" }},
		{"policy-mixed-case", "UPDATE_POLICY=Local_First\n", func(c *Config) { c.UpdatePolicy = "LOCAL_FIRST" }},
		{"policy-remote", "UPDATE_POLICY=remote\n", func(c *Config) {}},
		{"ignore-unknown-kernel", "IGNORE_UNKNOWN_KERNEL=True\n", func(c *Config) { c.IgnoreUnknownKernel = true }},
		{"delay-empty", "UPDATE_DELAY=\n", func(c *Config) {}},
		{"pin", "PATCH_SERVER_PIN=sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=\n", func(c *Config) { c.PatchServerPins = []string{"sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o="} }},
		{"pins-for-rotation", "PATCH_SERVER_PIN=sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=;sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", func(c *Config) {
			c.PatchServerPins = []string{"sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=", "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
		}},
		{"pin-empty", "PATCH_SERVER_PIN=\n", func(c *Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustParse(t, tt.in).Config()
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			want := Default()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Config mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigBool(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{"True", true}, {"true", true}, {"TRUE", true}, {"YES", true}, {"yes", true}, {"1", true}, {"on", true}, {"On", true},
		{"False", false}, {"false", false}, {"NO", false}, {"no", false}, {"0", false}, {"off", false}, {"OFF", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := mustParse(t, "AUTO_UPDATE="+tt.value+"\nIGNORE_UNKNOWN_KERNEL="+tt.value+"\n").Config()
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			if c.AutoUpdate != tt.want || c.IgnoreUnknownKernel != tt.want {
				t.Errorf("AutoUpdate, IgnoreUnknownKernel = %v, %v; want %v", c.AutoUpdate, c.IgnoreUnknownKernel, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		key  string
		line int
		msg  string // part of the message
	}{
		{"auto-update", "# c\nAUTO_UPDATE=maybe\n", "AUTO_UPDATE", 2, `line 2: AUTO_UPDATE="maybe": want true/false`},
		{"auto-update-y", "AUTO_UPDATE=y\n", "AUTO_UPDATE", 1, "want true/false"},
		{"ignore-unknown-kernel", "IGNORE_UNKNOWN_KERNEL=2\n", "IGNORE_UNKNOWN_KERNEL", 1, "want true/false"},
		{"prefix", "PREFIX=6h\n", "PREFIX", 1, `want "", test, 12h, 24h or 48h`},
		{"prefix-case", "PREFIX=TEST\n", "PREFIX", 1, "want"},
		{"sticky-word", "STICKY_PATCH=yesterday\n", "STICKY_PATCH", 1, "not DDMMYY, DDMMYYYY or YYYY-MM-DD"},
		{"sticky-day", "STICKY_PATCH=320126\n", "STICKY_PATCH", 1, "day out of range"},
		{"sticky-month", "STICKY_PATCH=2026-13-01\n", "STICKY_PATCH", 1, "month out of range"},
		{"sticky-key-case", "STICKY_PATCH=key\n", "STICKY_PATCH", 1, "want"},
		{"policy", "UPDATE_POLICY=NEVER\n", "UPDATE_POLICY", 1, "want REMOTE, LOCAL or LOCAL_FIRST"},
		{"timeout-zero", "TRANSITION_TIMEOUT=0\n", "TRANSITION_TIMEOUT", 1, "greater than zero"},
		{"timeout-negative", "TRANSITION_TIMEOUT=-5s\n", "TRANSITION_TIMEOUT", 1, "greater than zero"},
		{"timeout-word", "TRANSITION_TIMEOUT=soon\n", "TRANSITION_TIMEOUT", 1, "want seconds"},
		{"timeout-fraction", "TRANSITION_TIMEOUT=1.5\n", "TRANSITION_TIMEOUT", 1, "want seconds"},
		{"timeout-overflow", "TRANSITION_TIMEOUT=99999999999999\n", "TRANSITION_TIMEOUT", 1, "want seconds"},
		{"keyring-relative", "KEYRING_DIR=keys\n", "KEYRING_DIR", 1, "absolute path"},
		{"patch-server-no-scheme", "PATCH_SERVER=patches.example.com\n", "PATCH_SERVER", 1, "http or https URL"},
		{"patch-server-ftp", "PATCH_SERVER=ftp://patches.example.com/\n", "PATCH_SERVER", 1, "http or https URL"},
		{"registration-url-no-host", "REGISTRATION_URL=https:///admin\n", "REGISTRATION_URL", 1, "http or https URL"},
		{"set-twice", "PREFIX=12h\nPREFIX=24h\n", "PREFIX", 2, `line 2: PREFIX="24h": PREFIX is set on line 1 already; set it once`},
		{"patch-server-twice", "PATCH_SERVER=https://a.example.com\n# the second portal\nPATCH_SERVER=https://b.example.com\n", "PATCH_SERVER", 3,
			"PATCH_SERVER is set on line 1 already; set it once (several portals: one comma-separated list)"},
		{"patch-server-same-twice", "PATCH_SERVER=https://a.example.com,https://a.example.com\n", "PATCH_SERVER", 1, "https://a.example.com is listed twice"},
		{"patch-server-empty-in-list", "PATCH_SERVER=https://a.example.com,\n", "PATCH_SERVER", 1, "several separated by commas"},
		{"patch-server-bad-second", "PATCH_SERVER=https://a.example.com,b.example.com\n", "PATCH_SERVER", 1, "several separated by commas"},
		{"pin-no-prefix", "PATCH_SERVER_PIN=OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
		{"pin-sha1", "PATCH_SERVER_PIN=sha1//2jmj7l5rSw0yVb/vlWAYkK/YBwk=\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
		{"pin-short", "PATCH_SERVER_PIN=sha256//AAAA\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
		{"pin-url-base64", "PATCH_SERVER_PIN=sha256//OJ-e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
		{"pin-unpadded", "PATCH_SERVER_PIN=sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
		{"pin-trailing-semicolon", "PATCH_SERVER_PIN=sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=;\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
		{"pin-spaces", "PATCH_SERVER_PIN=\"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ; sha256//OJ+e3lINvDPSrrxIkkatieIh0ewV9pPDSMWLCCGTZ6o=\"\n", "PATCH_SERVER_PIN", 1, "want sha256//BASE64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := mustParse(t, tt.in).Config()
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("Config() = %+v, %v; want a *ValueError", c, err)
			}
			if ve.Key != tt.key || ve.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Config() error = %q (key %s, line %d), want key %s, line %d with %q", err, ve.Key, ve.Line, tt.key, tt.line, tt.msg)
			}
		})
	}
}

func TestConfigErrorsAll(t *testing.T) {
	f := mustParse(t, "PREFIX=bad\n# c\nAUTO_UPDATE=maybe\nUPDATE_POLICY=NEVER\n")
	_, err := f.Config()
	if err == nil {
		t.Fatal("Config() succeeded, want errors")
	}
	want := `line 1: PREFIX="bad": want "", test, 12h, 24h or 48h
line 3: AUTO_UPDATE="maybe": want true/false, yes/no, on/off or 1/0
line 4: UPDATE_POLICY="NEVER": want REMOTE, LOCAL or LOCAL_FIRST`
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("error mismatch (-want +got):\n%s", diff)
	}
}

func TestParseStickyDate(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"271126", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"27112026", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"2026-11-27", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"010168", time.Date(2068, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"010169", time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"290224", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"31122025", time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseStickyDate(tt.in)
			if err != nil {
				t.Fatalf("ParseStickyDate(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("ParseStickyDate(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseStickyDateErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		msg  string
	}{
		{"320126", "320126", "day out of range"},
		{"290225", "290225", "day out of range"},
		{"001126", "001126", "day out of range"},
		{"271326", "271326", "month out of range"},
		{"2026-13-01", "2026-13-01", "month out of range"},
		{"2026-02-30", "2026-02-30", "day out of range"},
		{"abc", "abc", "not DDMMYY"},
		{"empty", "", "not DDMMYY"},
		{"27-11-26", "27-11-26", "not DDMMYY"},
		{"2026-1-27", "2026-1-27", "not DDMMYY"},
		{"slashes", "2026/11/27", "not DDMMYY"},
		{"plus-sign", "+27112026", "not DDMMYY"},
		{"seven-digits", "2711202", "not DDMMYY"},
		{"trailing-letter", "27112026T", "not DDMMYY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStickyDate(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("ParseStickyDate(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.msg)
			}
		})
	}
}

// TestKernelCareKeys: every kcare.conf key KernelCare documents is read:
// honoured (it changes Config) or refused, a refusal for a feature kcare
// lacks being ErrNotSupported.
func TestKernelCareKeys(t *testing.T) {
	tests := []struct {
		line    string
		want    func(c *Config)
		refused bool // ErrNotSupported
		bad     bool // another refusal
	}{
		{line: "UPDATE_DELAY=24h", want: func(c *Config) { c.UpdateDelay = "24h" }},
		{line: "UPDATE_DELAY=2d", want: func(c *Config) { c.UpdateDelay = "2d" }},
		{line: "UPDATE_DELAY=2w", bad: true},
		{line: "AUTO_UPDATE_DELAY=48h", want: func(c *Config) { c.AutoUpdateDelay = "48h" }},
		{line: "AUTO_UPDATE_DELAY=300", bad: true}, // kcare's old random wait, in seconds
		{line: "STICKY_PATCHSET=K20261120_01", want: func(c *Config) { c.StickyPatchset = "K20261120_01" }},
		{line: "AUTO_STICKY_PATCHSET=K20261120_01", want: func(c *Config) { c.AutoStickyPatchset = "K20261120_01" }},
		{line: "STICKY_PATCHSET=K2026/01", bad: true},
		{line: "PATCH_TYPE=default", want: func(c *Config) { c.PatchType = "default" }},
		{line: "PATCH_TYPE=extra", refused: true},
		{line: "PATCH_TYPE=free", refused: true},
		{line: "PATCH_METHOD=smart", refused: true},
		{line: "FORCE_GID=48", refused: true},
		{line: "USERSPACE_PATCHES=libs", refused: true},
		{line: "LOAD_KCARE_SYSCTL=True", refused: true},
		{line: "LOAD_KCARE_SYSCTL=False", want: func(c *Config) {}},
		{line: "REPORT_FQDN=True", refused: true},
		{line: "REPORT_FQDN=False", want: func(c *Config) {}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			f, err := Parse([]byte(tt.line + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Config()
			switch {
			case tt.refused:
				if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "not supported by kcare: ") {
					t.Errorf("Config = %v, want ErrNotSupported with a reason", err)
				}
			case tt.bad:
				if err == nil || errors.Is(err, ErrNotSupported) {
					t.Errorf("Config = %v, want a bad value", err)
				}
			default:
				want := Default()
				tt.want(&want)
				if err != nil || !cmp.Equal(got, want) {
					t.Errorf("Config = %+v, %v; want %+v", got, err, want)
				}
			}
			if u := f.Unknown(); len(u) != 0 {
				t.Errorf("Unknown = %v, want none", u)
			}
		})
	}
	f, _ := Parse([]byte("AUTO_UPDATE=yes\nKCARE_MAILTO=root\nTAGS=a\n"))
	if u := f.Unknown(); !cmp.Equal(u, []string{"KCARE_MAILTO"}) {
		t.Errorf("Unknown = %v, want [KCARE_MAILTO]", u)
	}
}

func TestParseDelay(t *testing.T) {
	for v, want := range map[string]time.Duration{"0": 0, "24h": 24 * time.Hour, "2d": 48 * time.Hour, "0h": 0} {
		if got, err := ParseDelay(v); err != nil || got != want {
			t.Errorf("ParseDelay(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "2", "300", "5m", "-1h", "1.5d", "+2d", "h", "2 d"} {
		if _, err := ParseDelay(v); err == nil {
			t.Errorf("ParseDelay(%q) accepted", v)
		}
	}
}
