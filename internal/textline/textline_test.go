package textline

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"web1.example.com", "web1.example.com"},
		{"", ""},
		{"evil\nfake (192.0.2.99) is OUTOFDATE|outofdate=99", `evil\x0afake (192.0.2.99) is OUTOFDATE\x7coutofdate=99`},
		{"cr\r\x00\x1b[31m\x7f", `cr\x0d\x00\x1b[31m\x7f`},
		{"tab\there", `tab\x09here`},
		{`back\slash`, `back\slash`},
		{"caf\u00e9\u2028", `caf\xc3\xa9\xe2\x80\xa8`},
		{"\xff", `\xff`},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if again := Escape(tt.want); again != tt.want {
			t.Errorf("Escape is not idempotent: Escape(%q) = %q", tt.want, again)
		}
	}
}

// TestEscapeEveryByte: every byte alone and after "|" comes out as
// printable ASCII without "|", and escaping twice changes nothing.
func TestEscapeEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		for _, s := range []string{string([]byte{byte(c)}), "a|" + string([]byte{byte(c)}) + "\\x"} {
			e := Escape(s)
			if strings.Contains(e, "|") || Escape(e) != e {
				t.Errorf("Escape(%q) = %q", s, e)
			}
			for i := 0; i < len(e); i++ {
				if e[i] < 0x20 || e[i] >= 0x7f {
					t.Errorf("Escape(%q) = %q holds byte %#x", s, e, e[i])
				}
			}
		}
	}
}
