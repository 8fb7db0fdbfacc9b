package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/kcare/kcare/internal/portal/blobs"
	"github.com/kcare/kcare/internal/portal/datadir"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// Replicas of one portal on one PostgreSQL database share, through it,
// what a single portal keeps in its data directory: the index signing key
// (an agent trusts one key, whichever replica answers), the metrics salt
// (the keys' names in /metrics agree), the bundles.

// Names of the shared secrets.
const (
	indexKeySecret    = "index-key"
	metricsSaltSecret = "metrics-salt"
)

// ErrKeyMismatch is a data directory whose portal.key is not the index
// key the portal's replicas sign with.
var ErrKeyMismatch = errors.New("DATA/portal.key is not the index key of this portal's database")

// SharedPortalKey returns the index signing key of the portal in st's
// database. The first replica to start stores it there: the data
// directory's portal.key when it has one (a single portal becoming
// several keeps the key its agents trust), else a new one. A replica whose
// data directory holds another portal.key refuses to start
// (ErrKeyMismatch): its agents would trust one key and the others another.
// DATA/portal.pub gets the public half.
func SharedPortalKey(ctx context.Context, st store.SharedStore, data string) (*trust.Signer, error) {
	local, err := os.ReadFile(filepath.Join(data, "portal.key"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	v, err := st.Secret(ctx, indexKeySecret)
	if errors.Is(err, store.ErrNotFound) {
		candidate := local
		if candidate == nil {
			if candidate, _, err = trust.GenerateKey("kcare eportal index key", ""); err != nil {
				return nil, err
			}
		}
		v, err = st.AddSecret(ctx, indexKeySecret, candidate)
	}
	if err != nil {
		return nil, fmt.Errorf("index key: %w", err)
	}
	signer, err := trust.ReadSigner(v)
	if err != nil {
		return nil, fmt.Errorf("index key in the database: %w", err)
	}
	if local != nil {
		ls, err := trust.ReadSigner(local)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(data, "portal.key"), err)
		}
		if ls.Fingerprint() != signer.Fingerprint() {
			return nil, fmt.Errorf("%w: it is %s, the database's is %s, which the other replicas sign with and agents trust; move %s away",
				ErrKeyMismatch, ls.Fingerprint(), signer.Fingerprint(), filepath.Join(data, "portal.key"))
		}
	}
	pub, err := signer.PublicKey()
	if err != nil {
		return nil, err
	}
	if err := datadir.WriteFile(filepath.Join(data, "portal.pub"), pub); err != nil {
		return nil, err
	}
	return signer, nil
}

// SharedMetricsSalt returns the metrics salt of the portal in st's
// database, storing one on first start: the data directory's when it has
// one, else a new one.
func SharedMetricsSalt(ctx context.Context, st store.SharedStore, data string) ([]byte, error) {
	v, err := st.Secret(ctx, metricsSaltSecret)
	if errors.Is(err, store.ErrNotFound) {
		candidate, rerr := os.ReadFile(filepath.Join(data, metricsSaltFile))
		if rerr != nil {
			salt := make([]byte, 32)
			rand.Read(salt)
			candidate = []byte(hex.EncodeToString(salt) + "\n")
		}
		v, err = st.AddSecret(ctx, metricsSaltSecret, candidate)
	}
	if err != nil {
		return nil, fmt.Errorf("metrics salt: %w", err)
	}
	salt, err := hex.DecodeString(strings.TrimSpace(string(v)))
	if err != nil || len(salt) < 16 {
		return nil, errors.New("metrics salt in the database: want at least 32 hex digits")
	}
	return salt, nil
}

// shareLocalBlobs stores in the database the bundles of the data
// directory it does not hold yet: those a portal published before it had
// replicas. Each is checked against its digest first. It returns how many
// it stored.
func shareLocalBlobs(ctx context.Context, st store.SharedStore, dir string) (int, error) {
	local := blobs.Store{Dir: dir}
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "sha256"), func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || e.IsDir() || !blobs.ValidDigest(e.Name()) {
			return err
		}
		if has, err := st.HasBlob(ctx, e.Name()); err != nil || has {
			return err
		}
		data, err := local.Get(e.Name())
		if err != nil {
			return err
		}
		if err := st.PutBlob(ctx, e.Name(), data); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}
