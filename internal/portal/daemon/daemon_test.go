package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle/bundletest"
	"github.com/kcare/kcare/internal/portal/daemon"
	"github.com/kcare/kcare/internal/portal/mirror"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestShutdownWaitsForSync: eportal serve, stopped while its sync from
// an upstream is under way, returns only once the sync has ended (and
// recorded its status), so the store is closed under no one.
func TestShutdownWaitsForSync(t *testing.T) {
	data := t.TempDir()
	pub, err := bundletest.Signer("kcare daemon test publisher").PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(data, "publishers"), 0o700)
	os.WriteFile(filepath.Join(data, "publishers", "publisher.pub"), pub, 0o600)
	entered := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done() // hold the sync until the client gives up
	}))
	defer upstream.Close()
	var log lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{DataDir: data, Listen: "127.0.0.1:0", Upstream: upstream.URL, UpstreamToken: "token",
			SyncEvery: time.Hour, Log: slog.New(slog.NewTextHandler(&log, nil))})
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("Run returned before syncing: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("waited 30s for the sync to reach the upstream\n%s", log.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	b, err := os.ReadFile(mirror.StatusPath(data))
	if err != nil {
		t.Fatalf("Run returned before the sync recorded its end: %v", err)
	}
	var st mirror.Status
	if err := json.Unmarshal(b, &st); err != nil || st.LastSync.IsZero() || st.Error == "" {
		t.Errorf("sync status %s (%v), want the interrupted sync's", b, err)
	}
	if strings.Contains(log.String(), "database is closed") {
		t.Errorf("the store was closed under the sync:\n%s", log.String())
	}
}

// TestEmptyDataDir: a new data directory is enough to serve, with the log
// saying how to add a publisher key.
func TestEmptyDataDir(t *testing.T) {
	data := filepath.Join(t.TempDir(), "new")
	var log lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{DataDir: data, Listen: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(&log, nil))})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "eportal serving") {
		select {
		case err := <-done:
			t.Fatalf("Run on an empty data dir: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s to serve\n%s", log.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "eportal publisher add --data "+data+" FILE.pub") {
		t.Errorf("the log does not say how to add a publisher key:\n%s", log.String())
	}
}
