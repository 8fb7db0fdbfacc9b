package secretflag

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testSource = Source{Flag: "token", FileFlag: "token-file", Env: "KCARE_TEST_TOKEN"}

func TestGet(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	crlf := file("crlf", "s3cret\r\n")
	twoLines := file("two", "s3cret\nmore\n")
	big := file("big", strings.Repeat("x", MaxFileSize+1))
	tests := []struct {
		name    string
		args    []string
		env     string
		want    string
		warning string
		err     string
	}{
		{"nothing", nil, "", "", "", ""},
		{"crlf_file", []string{"--token-file", crlf}, "", "s3cret", "", ""},
		{"env_trimmed", nil, "s3cret\n", "s3cret", "", ""},
		{"flag", []string{"--token", "s3cret"}, "", "s3cret",
			"prog: warning: --token is visible to other local users (ps); use --token-file FILE or KCARE_TEST_TOKEN instead\n", ""},
		{"two_lines", []string{"--token-file", twoLines}, "", "", "", "--token-file: " + twoLines + " holds more than one line"},
		{"too_large", []string{"--token-file", big}, "", "", "", "--token-file: " + big + " is larger than 65536 bytes"},
		{"flag_and_env", []string{"--token", "a"}, "b", "", "", "--token-file, KCARE_TEST_TOKEN and --token: given more than one way; give one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(testSource.Env, tt.env)
			fs := flag.NewFlagSet("prog", flag.ContinueOnError)
			v := Register(fs, testSource, "a token")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var warn strings.Builder
			got, err := v.Get("prog", &warn)
			errText := ""
			if err != nil {
				errText = err.Error()
			}
			if got != tt.want || errText != tt.err || warn.String() != tt.warning {
				t.Errorf("Get: %q, %q, warned %q; want %q, %q, %q", got, errText, warn.String(), tt.want, tt.err, tt.warning)
			}
		})
	}
	t.Setenv(testSource.Env, "b")
	fs := flag.NewFlagSet("prog", flag.ContinueOnError)
	v := Register(fs, testSource, "a token")
	fs.Parse([]string{"--token-file", crlf})
	if _, err := v.Get("prog", &strings.Builder{}); !errors.Is(err, ErrConflict) {
		t.Errorf("file and env: %v, want ErrConflict", err)
	}
}
