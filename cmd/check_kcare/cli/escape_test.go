package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/auth"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/server"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/portal/storetest"
)

// forgedHostname is the attack run's hostname: a newline and a "|" to
// forge a Nagios line and perfdata.
const forgedHostname = "evil\nfake (192.0.2.99) is OUTOFDATE|outofdate=99"

// TestForgedHostnameFromPortal: against a real portal whose store holds a
// hostname with a newline and "|" (registered before check-ins were
// validated), check_kcare prints one line per server and no perfdata but
// the status line's.
func TestForgedHostnameFromPortal(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	publisher := bundletest.Signer("check_kcare test publisher")
	st := storetest.Open(t, "sqlite")
	srv := server.New(server.Config{Core: core.New(core.Config{Store: st, Blobs: blobs.Store{Dir: t.TempDir()}, IndexKey: bundletest.Signer("check_kcare test index key"), Publishers: bundletest.Keyring(t, publisher), Now: func() time.Time { return now }})})
	for level := 1; level <= 2; level++ {
		data, sig := bundletest.Bundle(t, publisher, level, bundletest.Options{})
		if _, err := srv.Core().Publish(ctx, core.CLI, data, sig, core.PublishOptions{Released: now.Add(-time.Duration(100-level) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddKey(ctx, &store.Key{Key: "mon", Feed: "main", Created: now}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		host, ip string
		level    int
	}{{"web1", "192.0.2.10", 2}, {forgedHostname, "192.0.2.20", 1}} {
		sv := &store.Server{ID: "srv-" + s.ip, SecretHash: auth.HashSecret("x"), Hostname: s.host, IP: s.ip, Registered: now.Add(-100 * time.Hour)}
		if err := st.Register(ctx, "mon", sv); err != nil {
			t.Fatal(err)
		}
		if err := st.CheckIn(ctx, sv.ID, store.Report{Hostname: s.host, IP: s.ip, Release: fakekernel.Release, BuildID: fakekernel.BuildID,
			KernelID: kernel.KernelID(fakekernel.Version), Level: s.level, LastResult: "ok", At: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	var out, errb bytes.Buffer
	code := Run(ctx, []string{"-k", "mon", "-u", hs.URL}, &out, &errb)
	want := "KERNELCARE CRITICAL - 1 machines are OUTOFDATE! | uptodate=1;outofdate=1;unsupported=0;inactive=0\n" +
		`evil\x0afake (192.0.2.99) is OUTOFDATE\x7coutofdate=99 (192.0.2.20) is OUTOFDATE` + "\n"
	if code != Critical || out.String() != want {
		t.Errorf("exit %d (want %d)\n--- got ---\n%s--- want ---\n%s", code, Critical, out.String(), want)
	}
}

// TestEscapesAnOldPortal: a portal from before the fix sends the forged
// hostname raw; check_kcare cannot rejoin the lines, but it prints no "|"
// (perfdata) and no control character past the status line.
func TestEscapesAnOldPortal(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "1 machines are OUTOFDATE!|uptodate=1;outofdate=1;unsupported=0;inactive=0\n"+
			forgedHostname+" (192.0.2.20) is OUTOFDATE\n"+"tab\there\x1b[31m (192.0.2.21\r) is OUTOFDATE\n")
	}))
	defer hs.Close()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"-k", "mon", "-u", hs.URL}, &out, &errb)
	want := "KERNELCARE CRITICAL - 1 machines are OUTOFDATE! | uptodate=1;outofdate=1;unsupported=0;inactive=0\n" +
		"evil\n" +
		`fake (192.0.2.99) is OUTOFDATE\x7coutofdate=99 (192.0.2.20) is OUTOFDATE` + "\n" +
		`tab\x09here\x1b[31m (192.0.2.21\x0d) is OUTOFDATE` + "\n"
	if code != Critical || out.String() != want {
		t.Errorf("exit %d (want %d)\n--- got ---\n%s--- want ---\n%s", code, Critical, out.String(), want)
	}
	if n := strings.Count(out.String(), "|"); n != 1 {
		t.Errorf("%d \"|\" in the output; want only the status line's", n)
	}
}
