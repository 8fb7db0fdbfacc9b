package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const typical = `# kcare configuration
AUTO_UPDATE=True
PATCH_SERVER=https://patches.example.com/
REGISTRATION_URL=https://portal.example.com/admin/api
STICKY_PATCH=""   # unstick with empty
PREFIX=test
export UPDATE_POLICY='LOCAL_FIRST'
`

func mustParse(t *testing.T, s string) *File {
	t.Helper()
	f, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return f
}

func TestParseGet(t *testing.T) {
	type kv struct{ Key, Value string }
	tests := []struct {
		name string
		in   string
		want []kv // every key, in file order, with its value
	}{
		{"typical", typical, []kv{
			{"AUTO_UPDATE", "True"},
			{"PATCH_SERVER", "https://patches.example.com/"},
			{"REGISTRATION_URL", "https://portal.example.com/admin/api"},
			{"STICKY_PATCH", ""},
			{"PREFIX", "test"},
			{"UPDATE_POLICY", "LOCAL_FIRST"},
		}},
		{"empty", "", nil},
		{"comments-and-blanks", "# one\n\n   \t\n\t# two\n", nil},
		{"last-wins", "PREFIX=12h\nAUTO_UPDATE=no\nPREFIX=24h\n", []kv{{"PREFIX", "24h"}, {"AUTO_UPDATE", "no"}}},
		{"no-final-newline", "AUTO_UPDATE=on", []kv{{"AUTO_UPDATE", "on"}}},
		{"crlf", "AUTO_UPDATE=1\r\nPREFIX=48h\r\n", []kv{{"AUTO_UPDATE", "1"}, {"PREFIX", "48h"}}},
		{"cr-at-end", "AUTO_UPDATE=1\r\nPREFIX=48h\r", []kv{{"AUTO_UPDATE", "1"}, {"PREFIX", "48h"}}},
		{"cr-in-value", "NOTE=a\rb\n", []kv{{"NOTE", "a\rb"}}},
		{"empty-value", "STICKY_PATCH=\n", []kv{{"STICKY_PATCH", ""}}},
		{"empty-value-comment", "STICKY_PATCH= # none\n", []kv{{"STICKY_PATCH", ""}}},
		{"indented", "  export\tPREFIX=test\n", []kv{{"PREFIX", "test"}}},
		{"key-named-export", "export=1\n", []kv{{"export", "1"}}},
		{"comment-after-blank", "PREFIX=test\t# the test channel\n", []kv{{"PREFIX", "test"}}},
		{"hash-inside-word", "NOTE=a#b\n", []kv{{"NOTE", "a#b"}}},
		{"hash-at-word-start", "NOTE=#b\n", []kv{{"NOTE", "#b"}}},
		{"equals-in-value", "REGISTRATION_URL=https://portal.example.com/?a=1\n", []kv{{"REGISTRATION_URL", "https://portal.example.com/?a=1"}}},
		{"single-quoted", `NOTE='a "b" \n $c # d'` + "\n", []kv{{"NOTE", `a "b" \n $c # d`}}},
		{"double-quoted", `NOTE="a \"b\" \\ \$c \` + "`" + `d\` + "`" + ` \n # e"` + "\n", []kv{{"NOTE", `a "b" \ $c ` + "`d` " + `\n # e`}}},
		{"concatenated", `NOTE=a'b c'"d e"f` + "\n", []kv{{"NOTE", "ab cd ef"}}},
		{"bare-backslash", `NOTE=a\ b\#c\\` + "\n", []kv{{"NOTE", `a b#c\`}}},
		{"dollar-kept", "NOTE=$HOME\n", []kv{{"NOTE", "$HOME"}}},
		{"utf8", "NOTE='día'\n", []kv{{"NOTE", "día"}}},
		{"unknown-keys-kept", "CUSTOM_KEY=1\nAUTO_UPDATE=0\n", []kv{{"CUSTOM_KEY", "1"}, {"AUTO_UPDATE", "0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			var got []kv
			for _, k := range f.Keys() {
				v, ok := f.Get(k)
				if !ok {
					t.Errorf("Get(%q) found nothing for a key from Keys", k)
				}
				got = append(got, kv{k, v})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("keys and values mismatch (-want +got):\n%s", diff)
			}
			if got := string(f.Bytes()); got != tt.in {
				t.Errorf("Bytes() = %q, want the input %q", got, tt.in)
			}
		})
	}
}

func TestGetMissing(t *testing.T) {
	f := mustParse(t, typical)
	if v, ok := f.Get("KEYRING_DIR"); ok {
		t.Errorf("Get(KEYRING_DIR) = %q, true; want false", v)
	}
	if v, ok := f.Get(""); ok {
		t.Errorf("Get(\"\") = %q, true; want false", v)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		msg  string // part of the message
	}{
		{"no-equals", "# c\nAUTO_UPDATE\n", 2, "want KEY=VALUE"},
		{"blank-before-equals", "PREFIX =test\n", 1, "want KEY=VALUE"},
		{"digit-first", "1PREFIX=test\n", 1, "want KEY=VALUE"},
		{"dash-in-key", "PATCH-SERVER=x\n", 1, "want KEY=VALUE"},
		{"export-alone", "export PREFIX\n", 1, "want KEY=VALUE"},
		{"not-an-assignment", "\n\nrm -rf /\n", 3, "want KEY=VALUE"},
		{"text-after-value", "AUTO_UPDATE=yes please\n", 1, `unexpected " please"`},
		{"blank-after-equals", "PREFIX= test\n", 1, "value of PREFIX: unexpected"},
		{"unterminated-double", "A=1\nPATCH_SERVER=\"https://x\n", 2, "value of PATCH_SERVER: unterminated double quote"},
		{"unterminated-single", "NOTE='it\n", 1, "unterminated single quote"},
		{"escaped-closing-quote", `NOTE="a\"` + "\n", 1, "unterminated double quote"},
		{"quote-spans-lines", "NOTE=\"a\nb\"\n", 1, "unterminated double quote"},
		{"continuation", "NOTE=a\\\nb\n", 1, "backslash at end of line"},
		{"crlf-line", "A=1\r\nB='x\r\n", 2, "unterminated single quote"},
		{"last-line", "A=1\nB=\"x", 2, "unterminated double quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) = %v, %v; want a *SyntaxError", tt.in, f, err)
			}
			if se.Line != tt.line || !strings.Contains(se.Msg, tt.msg) {
				t.Errorf("Parse(%q) error = %q, want line %d with %q", tt.in, err, tt.line, tt.msg)
			}
		})
	}
}

func TestSetExisting(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		key, value string
		want       string
	}{
		{
			name: "keeps-others",
			in:   typical, key: "PREFIX", value: "12h",
			want: strings.Replace(typical, "PREFIX=test\n", "PREFIX=12h\n", 1),
		},
		{
			name: "keeps-comment",
			in:   typical, key: "STICKY_PATCH", value: "271126",
			want: strings.Replace(typical, `STICKY_PATCH=""   # unstick`, `STICKY_PATCH=271126   # unstick`, 1),
		},
		{
			name: "keeps-export",
			in:   typical, key: "UPDATE_POLICY", value: "LOCAL",
			want: strings.Replace(typical, "export UPDATE_POLICY='LOCAL_FIRST'", "export UPDATE_POLICY=LOCAL", 1),
		},
		{
			name: "to-empty",
			in:   typical, key: "PREFIX", value: "",
			want: strings.Replace(typical, "PREFIX=test\n", "PREFIX=\"\"\n", 1),
		},
		{
			name: "same-value-untouched",
			in:   "NOTE='abc'  # c\n", key: "NOTE", value: "abc",
			want: "NOTE='abc'  # c\n",
		},
		{
			name: "last-of-several",
			in:   "PREFIX=12h # old\nPREFIX=24h # new\n", key: "PREFIX", value: "48h",
			want: "PREFIX=12h # old\nPREFIX=48h # new\n",
		},
		{
			name: "crlf",
			in:   "A=1\r\nPREFIX=test\r\nB=2\r\n", key: "PREFIX", value: "24h",
			want: "A=1\r\nPREFIX=24h\r\nB=2\r\n",
		},
		{
			name: "no-final-newline",
			in:   "A=1\nPREFIX=test", key: "PREFIX", value: "a b",
			want: "A=1\nPREFIX='a b'",
		},
		{
			name: "concatenated-word",
			in:   "NOTE=a'b'\"c\" # x\n", key: "NOTE", value: "z",
			want: "NOTE=z # x\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			f.Set(tt.key, tt.value)
			if diff := cmp.Diff(tt.want, string(f.Bytes())); diff != "" {
				t.Errorf("after Set(%q, %q) (-want +got):\n%s", tt.key, tt.value, diff)
			}
		})
	}
}

func TestSetAppends(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", "KEYRING_DIR=/etc/kcare/keys\n"},
		{"comments", "# c\n", "# c\nKEYRING_DIR=/etc/kcare/keys\n"},
		{"no-final-newline", "A=1", "A=1\nKEYRING_DIR=/etc/kcare/keys\n"},
		{"crlf", "A=1\r\n", "A=1\r\nKEYRING_DIR=/etc/kcare/keys\r\n"},
		{"crlf-no-final-newline", "A=1\r\nB=2", "A=1\r\nB=2\r\nKEYRING_DIR=/etc/kcare/keys\r\n"},
		{"cr-at-end", "A=1\r", "A=1\r\nKEYRING_DIR=/etc/kcare/keys\r\n"},
		{"cr-after-newlines", "A=1\nB=\r", "A=1\nB=\r\nKEYRING_DIR=/etc/kcare/keys\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			f.Set("KEYRING_DIR", "/etc/kcare/keys")
			if got := string(f.Bytes()); got != tt.want {
				t.Errorf("after Set: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUnset(t *testing.T) {
	tests := []struct {
		name string
		in   string
		key  string
		want string
	}{
		{"one", typical, "PREFIX", strings.Replace(typical, "PREFIX=test\n", "", 1)},
		{"with-comment", typical, "STICKY_PATCH", strings.Replace(typical, "STICKY_PATCH=\"\"   # unstick with empty\n", "", 1)},
		{"all-assignments", "PREFIX=12h\n# keep me\nexport PREFIX=24h\nA=1\n", "PREFIX", "# keep me\nA=1\n"},
		{"missing", typical, "KEYRING_DIR", typical},
		{"empty-key", typical, "", typical},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			f.Unset(tt.key)
			if diff := cmp.Diff(tt.want, string(f.Bytes())); diff != "" {
				t.Errorf("after Unset(%q) (-want +got):\n%s", tt.key, diff)
			}
			if v, ok := f.Get(tt.key); ok {
				t.Errorf("after Unset(%q): Get = %q, true; want false", tt.key, v)
			}
		})
	}
}

// quoteTests are values Set must write so that they read back the same,
// with the form Set writes them in.
var quoteTests = []struct {
	name  string
	value string
	word  string
}{
	{"bare", "https://patches.example.com/", "https://patches.example.com/"},
	{"bare-symbols", "user@host:3128,a=b%20+c", "user@host:3128,a=b%20+c"},
	{"empty", "", `""`},
	{"space", "build farm", "'build farm'"},
	{"tab", "a\tb", "'a\tb'"},
	{"leading-space", " a", "' a'"},
	{"hash", "#1", "'#1'"},
	{"hash-after-space", "a #1", "'a #1'"},
	{"dollar", "$HOME", "'$HOME'"},
	{"backquote", "`id`", "'`id`'"},
	{"double-quote", `say "hi"`, `'say "hi"'`},
	{"backslash", `a\b`, `'a\b'`},
	{"single-quote", "it's", `"it's"`},
	{"both-quotes", `it's "$5" \ ` + "`x`", `"it's \"\$5\" \\ \` + "`x\\`" + `"`},
	{"query", "https://x.example.com/?a=1&b=2", "'https://x.example.com/?a=1&b=2'"},
	{"tilde", "~/keys", "'~/keys'"},
	{"glob", "*.conf", "'*.conf'"},
	{"semicolon", "a;b", "'a;b'"},
	{"carriage-return", "a\r", "'a\r'"},
	{"utf8", "día", "'día'"},
	{"invalid-utf8", "\xff\xfe", "'\xff\xfe'"},
}

func TestSetRoundTrip(t *testing.T) {
	for _, tt := range quoteTests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, "# c\nNOTE=old # keep\n")
			f.Set("NOTE", tt.value)
			if got, want := string(f.Bytes()), "# c\nNOTE="+tt.word+" # keep\n"; got != want {
				t.Errorf("Bytes() = %q, want %q", got, want)
			}
			g, err := Parse(f.Bytes())
			if err != nil {
				t.Fatalf("Parse(%q): %v", f.Bytes(), err)
			}
			if got, _ := g.Get("NOTE"); got != tt.value {
				t.Errorf("Get after re-Parse = %q, want %q", got, tt.value)
			}
		})
	}
}

// TestSetShellAgrees checks that a shell sourcing what Set wrote sees the
// same values as Parse.
func TestSetShellAgrees(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh in PATH")
	}
	for _, tt := range quoteTests {
		t.Run(tt.name, func(t *testing.T) {
			f := &File{}
			f.Set("NOTE", tt.value)
			path := filepath.Join(t.TempDir(), "kcare.conf")
			if err := f.Save(path, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(sh, "-c", `. "$1" && printf %s "$NOTE"`, "sh", path).Output()
			if err != nil {
				t.Fatalf("sh: %v", err)
			}
			if got := string(out); got != tt.value {
				t.Errorf("sh read %q, want %q", got, tt.value)
			}
		})
	}
}

func TestSetPanics(t *testing.T) {
	tests := []struct {
		name       string
		key, value string
	}{
		{"empty-key", "", "x"},
		{"bad-key", "PATCH-SERVER", "x"},
		{"newline", "NOTE", "a\nb"},
		{"nul", "NOTE", "a\x00b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Set(%q, %q) did not panic", tt.key, tt.value)
				}
			}()
			(&File{}).Set(tt.key, tt.value)
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("ok", func(t *testing.T) {
		f, err := Load(write("ok.conf", typical))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(f.Bytes()); got != typical {
			t.Errorf("Bytes() = %q, want %q", got, typical)
		}
	})
	t.Run("missing", func(t *testing.T) {
		f, err := Load(filepath.Join(dir, "missing.conf"))
		if err != nil {
			t.Fatalf("Load of a missing file: %v", err)
		}
		if got := f.Bytes(); len(got) != 0 {
			t.Errorf("Bytes() = %q, want empty", got)
		}
	})
	t.Run("largest", func(t *testing.T) {
		data := strings.Repeat("#"+strings.Repeat("x", 1022)+"\n", MaxSize/1024)
		if _, err := Load(write("largest.conf", data)); err != nil {
			t.Errorf("Load of %d bytes: %v", len(data), err)
		}
	})
	t.Run("too-large", func(t *testing.T) {
		path := write("large.conf", strings.Repeat("#\n", MaxSize/2)+"A=1\n")
		_, err := Load(path)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
			t.Errorf("Load = %v, want ErrTooLarge naming %s", err, path)
		}
	})
	t.Run("syntax-error", func(t *testing.T) {
		path := write("bad.conf", "A=1\nB='x\n")
		_, err := Load(path)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != 2 || !strings.Contains(err.Error(), path) {
			t.Errorf("Load = %v, want a SyntaxError at line 2 naming %s", err, path)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := Load(dir); err == nil {
			t.Errorf("Load of a directory succeeded")
		}
	})
}

func TestSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kcare.conf")
	if err := os.WriteFile(path, []byte(typical), 0o644); err != nil {
		t.Fatal(err)
	}
	// A reader that opened the old file keeps reading it whole: Save
	// replaces the file rather than rewriting it.
	old, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Set("PREFIX", "24h")
	if err := f.Save(path, 0o640); err != nil {
		t.Fatalf("Save: %v", err)
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := f.Bytes(); !bytes.Equal(got, want) {
		t.Errorf("saved %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != 0o640 {
		t.Errorf("mode = %v, want %v", got, os.FileMode(0o640))
	}
	oldData, err := io.ReadAll(old)
	if err != nil {
		t.Fatal(err)
	}
	if string(oldData) != typical {
		t.Errorf("old file now reads %q, want it unchanged %q", oldData, typical)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want only kcare.conf", names)
	}
}

func TestSaveNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kcare.conf")
	f := &File{}
	f.Set("AUTO_UPDATE", "False")
	if err := f.Save(path, 0o600); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "AUTO_UPDATE=False\n"; string(got) != want {
		t.Errorf("saved %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != 0o600 {
		t.Errorf("mode = %v, want %v", got, os.FileMode(0o600))
	}
}

func TestSaveMissingDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "missing", "kcare.conf")
	err := (&File{}).Save(path, 0o644)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Save into a missing directory = %v, want an error naming %s", err, path)
	}
}

// edit is the fixed sequence of edits the golden files record.
func edit(f *File) {
	f.Set("AUTO_UPDATE", "False")
	f.Set("PATCH_SERVER", "https://patches.example.net/")
	f.Set("STICKY_PATCH", "2026-11-27")
	f.Unset("PREFIX")
	f.Set("UPDATE_POLICY", "LOCAL")
	f.Set("HTTPS_PROXY", "http://proxy.example.com:3128")
	f.Set("SITE_NAME", `it's "$5" # cheap`)
}

func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.conf")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".conf")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := f.Bytes(); !bytes.Equal(got, data) {
				t.Errorf("Bytes() before editing = %q, want the input %q", got, data)
			}
			edit(f)
			got := f.Bytes()

			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("edited %s mismatch (-want +got):\n%s", in, diff)
			}
		})
	}
}
