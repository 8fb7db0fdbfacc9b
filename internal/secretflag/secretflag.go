// Package secretflag reads a secret a command is given: from a file, from
// an environment variable or, where every local user can read it in ps and
// /proc/PID/cmdline, from a flag's own value. The last is kept for old
// scripts and warned about.
package secretflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxFileSize bounds a secret file.
const MaxFileSize = 64 << 10

// Source names the three ways one secret can be given.
type Source struct {
	Flag     string // the flag taking the secret itself, e.g. "upstream-token"
	FileFlag string // the flag taking a file holding it, e.g. "upstream-token-file"
	Env      string // the environment variable holding it, e.g. "KCARE_UPSTREAM_TOKEN"
}

// Value is a secret's flags, registered on a flag set.
type Value struct {
	src   Source
	value string
	file  string
}

// Register adds src's two flags to fs; what says what the secret is
// ("an API token on the upstream").
func Register(fs *flag.FlagSet, src Source, what string) *Value {
	v := &Value{src: src}
	fs.StringVar(&v.file, src.FileFlag, "", fmt.Sprintf("read %s from `FILE` (or set %s)", what, src.Env))
	fs.StringVar(&v.value, src.Flag, "", fmt.Sprintf("%s: the `TOKEN` itself, visible to other local users in ps; prefer --%s or %s", what, src.FileFlag, src.Env))
	return v
}

// ErrConflict is a secret given more than one way.
var ErrConflict = errors.New("given more than one way")

// Get returns the secret: the file's contents without the trailing
// newline, the environment variable's value, or the flag's value, with a
// warning line to warn naming prog. It returns "" when none of them is
// given, and an error when more than one is, or when the file is missing,
// unreadable, too large or empty.
func (v *Value) Get(prog string, warn io.Writer) (string, error) {
	env, _ := os.LookupEnv(v.src.Env)
	given := 0
	for _, s := range []string{v.file, env, v.value} {
		if s != "" {
			given++
		}
	}
	if given > 1 {
		return "", fmt.Errorf("--%s, %s and --%s: %w; give one", v.src.FileFlag, v.src.Env, v.src.Flag, ErrConflict)
	}
	switch {
	case v.file != "":
		return readFile(v.file, "--"+v.src.FileFlag)
	case env != "":
		return strings.TrimSpace(env), nil
	case v.value != "":
		fmt.Fprintf(warn, "%s: warning: --%s is visible to other local users (ps); use --%s FILE or %s instead\n",
			prog, v.src.Flag, v.src.FileFlag, v.src.Env)
		return v.value, nil
	}
	return "", nil
}

// ReadFile reads a secret from the file at path, given by flagName, as Get
// reads a FileFlag's: one line, at most MaxFileSize, not empty. It is for
// secrets that may only come from a file.
func ReadFile(path, flagName string) (string, error) { return readFile(path, flagName) }

func readFile(path, flagName string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return "", fmt.Errorf("%s: read %s: %w", flagName, path, err)
	}
	if len(b) > MaxFileSize {
		return "", fmt.Errorf("%s: %s is larger than %d bytes", flagName, path, MaxFileSize)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", flagName, path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s: %s holds more than one line", flagName, path)
	}
	return s, nil
}
