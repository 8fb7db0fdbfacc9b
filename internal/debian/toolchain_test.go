package debian

import "testing"

func TestReadCompiler(t *testing.T) {
	for _, tt := range []struct {
		config  string
		command string
		version string
		pkg     string
	}{
		{"CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\nCONFIG_CC_IS_GCC=y\n", "gcc-12", "12.2.0", "gcc-12"},
		{"# comment\nCONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0\"\n", "x86_64-linux-gnu-gcc-14", "14.2.0", "gcc-14"},
		{"CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0\"\n", "x86_64-linux-gnu-gcc-12", "12.2.0", "gcc-12"},
	} {
		c, err := ReadCompiler([]byte(tt.config))
		if err != nil || c.Command != tt.command || c.Version != tt.version || c.Package() != tt.pkg {
			t.Errorf("ReadCompiler(%q) = %+v (package %s), %v", tt.config, c, c.Package(), err)
		}
	}
	for _, bad := range []string{"", "CONFIG_CC_IS_GCC=y\n", "CONFIG_CC_VERSION_TEXT=\"Debian clang version 16.0.6\"\n", "CONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian)\"\n"} {
		if c, err := ReadCompiler([]byte(bad)); err == nil {
			t.Errorf("ReadCompiler(%q) = %+v; want an error", bad, c)
		}
	}
}

func TestSameCompiler(t *testing.T) {
	parse := func(s string) Compiler {
		c, err := ParseCompiler(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	gcc12 := parse("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0")
	for _, tt := range []struct {
		have string
		same bool
	}{
		{"gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", true},
		{"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14) 12.2.0", true},
		{"x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0", false},
		{"gcc-12 (Debian 12.3.0-1) 12.3.0", false},
	} {
		if got := SameCompiler(gcc12, parse(tt.have)); got != tt.same {
			t.Errorf("SameCompiler(gcc-12 12.2.0, %q) = %v; want %v", tt.have, got, tt.same)
		}
	}
}
