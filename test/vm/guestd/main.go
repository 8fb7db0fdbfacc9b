// Command guestd runs inside a test guest and lets the host drive it over
// HTTP on port 7100:
//
//	GET  /ping      200 when the guest is up
//	POST /run       run a command: {"argv":[...], "env":["K=V"], "dir":"",
//	                "stdin":"", "timeout_ms":N} answers {"stdout":"",
//	                "stderr":"", "exit":N, "error":""}
//	POST /poweroff  sync and power the guest off
//
// A command runs in its own process group, which is killed when the timeout
// passes (ten minutes when none is given); the answer then has exit -1 and
// an error, as it has when the command could not start. A command killed by
// a signal exits 128+signal, as in a shell. env is added to guestd's own
// environment.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	addr           = "0.0.0.0:7100"
	defaultTimeout = 10 * time.Minute
	maxRequest     = 64 << 20
)

// runRequest is the body of POST /run.
type runRequest struct {
	Argv      []string `json:"argv"`
	Env       []string `json:"env"`
	Dir       string   `json:"dir"`
	Stdin     string   `json:"stdin"`
	TimeoutMS int64    `json:"timeout_ms"`
}

// runResponse is the answer to POST /run.
type runResponse struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Exit   int    `json:"exit"`
	Error  string `json:"error"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("guestd: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	if os.Getenv("PATH") == "" {
		os.Setenv("PATH", "/sbin:/bin:/usr/sbin:/usr/bin")
	}
	if os.Getenv("HOME") == "" {
		os.Setenv("HOME", "/root")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "pong")
	})
	mux.HandleFunc("POST /run", handleRun)
	mux.HandleFunc("POST /poweroff", handlePoweroff)
	log.Printf("listening on %s", addr)
	return http.ListenAndServe(addr, mux)
}

func handleRun(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Argv) == 0 {
		http.Error(w, "bad request: empty argv", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(execute(req))
}

// execute runs req's command and reports how it went.
func execute(req runRequest) runResponse {
	timeout := defaultTimeout
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	cmd.Env = append(os.Environ(), req.Env...)
	cmd.Dir = req.Dir
	cmd.Stdin = strings.NewReader(req.Stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Children that outlive the command keep its pipes open; stop
	// waiting for them a little after the command itself is gone.
	cmd.WaitDelay = 2 * time.Second

	if err := cmd.Start(); err != nil {
		return runResponse{Exit: -1, Error: err.Error()}
	}
	timer := time.AfterFunc(timeout, func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
	})
	err := cmd.Wait()
	timedOut := !timer.Stop()
	resp := runResponse{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case timedOut:
		resp.Exit = -1
		resp.Error = fmt.Sprintf("%s: timed out after %v; process group killed", req.Argv[0], timeout)
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			resp.Exit = 128 + int(ws.Signal())
		} else {
			resp.Exit = exitErr.ExitCode()
		}
	case err != nil:
		// exec.ErrWaitDelay: the command exited but something it started
		// still holds its output.
		resp.Exit = cmd.ProcessState.ExitCode()
		resp.Error = err.Error()
	}
	return resp
}

func handlePoweroff(w http.ResponseWriter, r *http.Request) {
	log.Printf("powering off")
	unix.Sync()
	fmt.Fprintln(w, "powering off")
	http.NewResponseController(w).Flush()
	go func() {
		// Let the answer reach the host first.
		time.Sleep(200 * time.Millisecond)
		unix.Sync()
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			log.Printf("power off: %v", err)
		}
	}()
}
