package taint

import "testing"

func TestParseString(t *testing.T) {
	tests := []struct {
		name, in string
		want     Mask
		letters  string
	}{
		{"untainted", "0\n", 0, ""},
		{"livepatch_out_of_tree_unsigned", "45056\n", Livepatch | OutOfTree | Unsigned, "OEK"},
		{"warning_after_livepatch", "45568\n", Warn | Livepatch | OutOfTree | Unsigned, "WOEK"},
		{"proprietary_die", "129", Proprietary | Die, "PD"},
		{"every_named_flag", "1048575", 1<<20 - 1, "PFSRMBUDAWCIOELKXTNJ"},
		{"unnamed_bit", "8388608", 1 << 23, "[23]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.letters {
				t.Errorf("String() = %q, want %q", s, tt.letters)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{"", "-1", "0x200", "12 34", "18446744073709551616"} {
		if m, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", in, m)
		}
	}
}

func TestAdded(t *testing.T) {
	tests := []struct {
		name          string
		before, after Mask
		want          Mask
	}{
		{"livepatch_is_expected", 0, Livepatch | OutOfTree | Unsigned, 0},
		{"warning_is_not", Livepatch, Livepatch | Warn, Warn},
		{"old_warning_is_not_new", Warn, Warn | Livepatch, 0},
		{"oops_and_lockup", Warn, Warn | Die | SoftLockup, Die | SoftLockup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.after.Added(tt.before); got != tt.want {
				t.Errorf("%s.Added(%s) = %s, want %s", tt.after, tt.before, got, tt.want)
			}
		})
	}
}
