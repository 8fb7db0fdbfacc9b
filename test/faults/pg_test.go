package faults_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// privatePostgres is a PostgreSQL server of the test's own, in a
// temporary directory on a port of its own, started and stopped with
// pg_ctl: the test may stop and restart it, which it must not do to the
// server other tests share.
type privatePostgres struct {
	bin  string // directory of initdb, pg_ctl, postgres
	dir  string // owned by the server's user
	data string
	port int
	cred *syscall.Credential // run as the postgres user when this is root
	t    *testing.T
}

// pgBinDir finds initdb and pg_ctl: on the PATH, else the newest
// /usr/lib/postgresql/*/bin.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found; install postgresql (scripts/postgres-test.sh)")
}

// startPostgres makes a cluster in a temporary directory and starts it
// on a free port of 127.0.0.1, with trust authentication for the user
// postgres; the test's end stops it.
func startPostgres(t *testing.T) *privatePostgres {
	t.Helper()
	if testing.Short() {
		t.Skip("portal fault tests do not run with -short")
	}
	bin, err := pgBinDir()
	requireHost(t, err)
	pg := &privatePostgres{bin: bin, t: t}
	pg.dir, err = os.MkdirTemp("", "kcare-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pg.dir) })
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			requireHost(t, fmt.Errorf("running as root and no postgres user to run PostgreSQL as: %v", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(pg.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pg.data = filepath.Join(pg.dir, "data")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pg.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	pg.run("initdb", "-D", pg.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nmax_connections = 100\n", pg.port, pg.dir)
	f, err := os.OpenFile(filepath.Join(pg.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()
	pg.start()
	t.Cleanup(func() { pg.ctl("stop", "-m", "immediate") })
	return pg
}

// DSN is a URL for the server's postgres database.
func (pg *privatePostgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

func (pg *privatePostgres) start() {
	pg.run("pg_ctl", "-D", pg.data, "-l", filepath.Join(pg.dir, "log"), "-w", "-t", "60", "start")
}

// stop stops the server with pg_ctl's fast mode: sessions are ended.
func (pg *privatePostgres) stop() {
	pg.run("pg_ctl", "-D", pg.data, "-m", "fast", "-w", "-t", "60", "stop")
}

func (pg *privatePostgres) ctl(args ...string) error {
	cmd := exec.Command(filepath.Join(pg.bin, "pg_ctl"), append([]string{"-D", pg.data}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	return cmd.Run()
}

func (pg *privatePostgres) run(name string, args ...string) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	cmd.Dir = pg.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "log"))
		pg.t.Fatalf("%s %s: %v\n%s\nserver log:\n%s", name, strings.Join(args, " "), err, out, tail(string(log), 20))
	}
}
