package main

import (
	"strings"
	"testing"
)

func TestExecute(t *testing.T) {
	tests := []struct {
		name      string
		req       runRequest
		stdout    string
		exit      int
		errSubstr string
	}{
		{"echo", runRequest{Argv: []string{"echo", "hello"}}, "hello\n", 0, ""},
		{"exit_code", runRequest{Argv: []string{"sh", "-c", "exit 3"}}, "", 3, ""},
		{"stdin", runRequest{Argv: []string{"cat"}, Stdin: "in"}, "in", 0, ""},
		{"env", runRequest{Argv: []string{"sh", "-c", "echo $KCARE_X"}, Env: []string{"KCARE_X=y"}}, "y\n", 0, ""},
		{"dir", runRequest{Argv: []string{"pwd"}, Dir: "/"}, "/\n", 0, ""},
		{"signal", runRequest{Argv: []string{"sh", "-c", "kill -TERM $$"}}, "", 128 + 15, ""},
		{"not_found", runRequest{Argv: []string{"/nonexistent/kcare"}}, "", -1, "no such file"},
		{"timeout", runRequest{Argv: []string{"sh", "-c", "sleep 30 & sleep 30"}, TimeoutMS: 200}, "", -1, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := execute(tt.req)
			if got.Stdout != tt.stdout || got.Exit != tt.exit {
				t.Errorf("execute = stdout %q exit %d; want %q %d (stderr %q, error %q)", got.Stdout, got.Exit, tt.stdout, tt.exit, got.Stderr, got.Error)
			}
			if tt.errSubstr == "" && got.Error != "" || !strings.Contains(got.Error, tt.errSubstr) {
				t.Errorf("execute error = %q; want one containing %q", got.Error, tt.errSubstr)
			}
		})
	}
}
