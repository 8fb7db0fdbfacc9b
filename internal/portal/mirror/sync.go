package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/flock"
	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// Syncer fetches new levels from an upstream portal.
type Syncer struct {
	Upstream   string // the upstream portal's base URL
	Token      string // an API token on the upstream (any role)
	HTTP       *http.Client
	Store      store.LevelStore
	Blobs      blobs.Store
	Publishers *trust.Keyring
	DataDir    string // sync state: sync.lock, sync-status.json, partial downloads
	Log        *slog.Logger
	Now        func() time.Time
}

// Status is sync-status.json: what the last syncs did.
type Status struct {
	Upstream    string    `json:"upstream"`
	LastSync    time.Time `json:"last_sync"`
	LastSuccess time.Time `json:"last_success"`
	Cursor      time.Time `json:"cursor"` // upstream publish time of the newest level handled
	Fetched     int       `json:"fetched"`
	Refused     []string  `json:"refused"`
	Error       string    `json:"error"`
}

// StatusPath is where a data dir's sync status is kept.
func StatusPath(dataDir string) string { return filepath.Join(dataDir, "sync-status.json") }

// ReadStatus reads a data dir's sync status (zero if none yet).
func ReadStatus(dataDir string) (*Status, error) {
	var st Status
	b, err := os.ReadFile(StatusPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return &st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", StatusPath(dataDir), err)
	}
	return &st, nil
}

// Healthy reports whether the last sync succeeded and is not older than
// maxAge.
func (st *Status) Healthy(now time.Time, maxAge time.Duration) bool {
	return st.Error == "" && !st.LastSuccess.IsZero() && now.Sub(st.LastSuccess) <= maxAge
}

func (s *Syncer) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Syncer) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Syncer) client() *http.Client {
	if s.HTTP != nil {
		return s.HTTP
	}
	return &http.Client{Timeout: 30 * time.Minute, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
}

// lockBound bounds the wait for another sync of the same data dir.
const lockBound = 10 * time.Minute

// Sync fetches the levels published upstream since the last sync. Syncs
// of one data dir run one at a time (a file lock); a level already stored
// is skipped, so a second sync right after the first stores nothing.
// A bundle that fails verification is refused and reported, never stored;
// a download that breaks off is resumed by the next sync.
func (s *Syncer) Sync(ctx context.Context) (*Status, error) {
	unlock, err := lockFile(ctx, filepath.Join(s.DataDir, "sync.lock"), lockBound)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := ReadStatus(s.DataDir)
	if err != nil {
		return nil, err
	}
	st.Upstream, st.LastSync, st.Fetched, st.Refused, st.Error = s.Upstream, s.now(), 0, nil, ""
	err = s.sync(ctx, st)
	if err != nil {
		st.Error = err.Error()
	} else {
		st.LastSuccess = st.LastSync
	}
	if werr := writeJSON(StatusPath(s.DataDir), st); werr != nil && err == nil {
		err = werr
	}
	return st, err
}

func (s *Syncer) sync(ctx context.Context, st *Status) error {
	levels, err := s.list(ctx, st.Cursor)
	if err != nil {
		return err
	}
	for _, l := range levels {
		stored, err := s.one(ctx, l)
		switch {
		case errors.Is(err, ErrRefused):
			s.log().Warn("sync: refused", "error", err)
			st.Refused = append(st.Refused, err.Error())
		case err != nil:
			return err
		case stored:
			st.Fetched++
		}
		if l.Published.After(st.Cursor) {
			st.Cursor = l.Published
		}
	}
	return nil
}

func (s *Syncer) list(ctx context.Context, since time.Time) ([]apitype.MirrorLevel, error) {
	u := strings.TrimRight(s.Upstream, "/") + "/api/v1/mirror/levels?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339Nano))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Api-Key", s.Token)
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("upstream unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("upstream answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Levels []apitype.MirrorLevel `json:"levels"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("upstream's level list: %w", err)
	}
	return out.Levels, nil
}

// one fetches, verifies and stores one level, and reports whether it
// stored it (false: the level was here already).
func (s *Syncer) one(ctx context.Context, l apitype.MirrorLevel) (bool, error) {
	have, err := s.Store.Levels(ctx, l.BuildID)
	if err != nil {
		return false, err
	}
	for _, h := range have {
		if h.Level == l.Level {
			return false, nil // stored already (by us, or by a sync that ran at the same time)
		}
	}
	if !blobs.ValidDigest(l.Digest) || l.Size <= 0 || l.Size > bundle.MaxBundleSize {
		return false, fmt.Errorf("%w: level %d of %s: bad digest or size", ErrRefused, l.Level, l.BuildID)
	}
	data, err := s.fetch(ctx, l)
	if err != nil {
		return false, err
	}
	sl, err := Check(l, data, s.Publishers, s.now())
	if err != nil {
		return false, err
	}
	if _, err := s.Blobs.Put(data); err != nil {
		return false, err
	}
	if err := s.Store.AddLevel(ctx, sl); err != nil && !errors.Is(err, store.ErrExists) {
		return false, err
	}
	s.log().Info("sync: stored", "release", l.Release, "level", l.Level, "patchset", l.Patchset)
	return true, nil
}

// fetch downloads a bundle into DATA/partial/<digest>, continuing where
// an earlier attempt stopped (HTTP Range), and returns it once complete.
func (s *Syncer) fetch(ctx context.Context, l apitype.MirrorLevel) ([]byte, error) {
	dir := filepath.Join(s.DataDir, "partial")
	if err := datadir.MkdirAll(dir); err != nil {
		return nil, err
	}
	part := filepath.Join(dir, l.Digest)
	f, err := datadir.OpenFile(part, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if have > l.Size {
		if err := f.Truncate(0); err != nil {
			return nil, err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	if have < l.Size {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.Upstream, "/")+"/blobs/sha256/"+l.Digest, nil)
		if err != nil {
			return nil, err
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := s.client().Do(req)
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", l.Digest, err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
		case resp.StatusCode == http.StatusOK:
			if err := f.Truncate(0); err != nil {
				return nil, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("download %s: upstream answered %s", l.Digest, resp.Status)
		}
		if _, err := io.Copy(f, io.LimitReader(resp.Body, l.Size)); err != nil {
			return nil, fmt.Errorf("download %s (will resume): %w", l.Digest, err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, l.Size+1))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != l.Size || hex.EncodeToString(sum[:]) != l.Digest {
		os.Remove(part) // start over next time
		return nil, fmt.Errorf("%w: level %d of %s: downloaded bundle does not match its digest", ErrRefused, l.Level, l.BuildID)
	}
	os.Remove(part)
	return data, nil
}

func lockFile(ctx context.Context, path string, bound time.Duration) (func(), error) {
	if err := datadir.MkdirAll(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := datadir.OpenFile(path, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return nil, err
	}
	if err := flock.Lock(ctx, f, bound); err != nil {
		f.Close()
		if errors.Is(err, flock.ErrHeld) {
			return nil, fmt.Errorf("waited %s for another sync (%s): %w", bound, path, err)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return datadir.WriteFile(path, append(b, '\n'))
}
