package store

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"testing"
	"time"
)

// testShared: two stores on one database, as two replicas: a bundle one
// stores, in several chunks, the other reads back whole; replicas adding a
// secret at once all get the same one; failed sign-ins are counted
// together; a lock one holds the other cannot take until it is let go.
func testShared(t *testing.T, b backend) {
	dir, dsn := b.fresh(t)
	a, c := openAt(t, dir, dsn), openAt(t, dir, dsn)
	ctx := t.Context()

	data := make([]byte, 2*blobChunk+12345)
	rand.Read(data)
	sum := sha256.Sum256(data)
	d := hex.EncodeToString(sum[:])
	check(t, "PutBlob", a.PutBlob(ctx, d, data))
	check(t, "PutBlob again", a.PutBlob(ctx, d, data))
	var got bytes.Buffer
	n, err := c.ReadBlob(ctx, d, &got)
	check(t, "ReadBlob", err)
	if n != int64(len(data)) || !bytes.Equal(got.Bytes(), data) {
		t.Errorf("ReadBlob = %d bytes, equal %v; want the %d stored", n, bytes.Equal(got.Bytes(), data), len(data))
	}
	_, err = c.ReadBlob(ctx, "00"+d[2:], &got)
	wantErr(t, "ReadBlob of no blob", err, ErrNotFound)

	_, err = c.Secret(ctx, "index-key")
	wantErr(t, "Secret before any", err, ErrNotFound)
	var wg sync.WaitGroup
	stored := make([][]byte, 8)
	for i := range stored {
		wg.Go(func() {
			st := a
			if i%2 == 1 {
				st = c
			}
			v, err := st.AddSecret(ctx, "index-key", []byte{byte(i)})
			if err != nil {
				t.Errorf("AddSecret: %v", err)
			}
			stored[i] = v
		})
	}
	wg.Wait()
	for i, v := range stored {
		if !bytes.Equal(v, stored[0]) || len(v) != 1 {
			t.Errorf("AddSecret %d got %v, AddSecret 0 got %v: want one secret for all", i, v, stored[0])
		}
	}
	if v, err := c.Secret(ctx, "index-key"); err != nil || !bytes.Equal(v, stored[0]) {
		t.Errorf("Secret = %v, %v; want %v", v, err, stored[0])
	}

	key, other := []byte("pair: alice from 192.0.2.1"), []byte("source: 192.0.2.1")
	at := t0
	count := func(f *SignInFailure) { f.N++; f.Last = at; f.Until = at.Add(time.Minute) }
	check(t, "CountSignInFailure", a.CountSignInFailure(ctx, count, key, other))
	at = t0.Add(time.Second)
	check(t, "CountSignInFailure", c.CountSignInFailure(ctx, count, key, other))
	fs, err := a.SignInFailures(ctx, key, other, []byte("none"))
	check(t, "SignInFailures", err)
	if len(fs) != 2 || fs[0].N != 2 || !fs[0].Last.Equal(at) || !fs[0].Until.Equal(at.Add(time.Minute)) || !bytes.Equal(fs[1].Key, other) {
		t.Errorf("SignInFailures = %+v; want both keys, 2 failures each, the last at %v", fs, at)
	}
	check(t, "ForgetSignInFailures", c.ForgetSignInFailures(ctx, key, t0))
	if fs, _ := a.SignInFailures(ctx, key, other); len(fs) != 1 || !bytes.Equal(fs[0].Key, other) {
		t.Errorf("after forgetting the pair: %+v, want the source's alone", fs)
	}
	check(t, "ForgetSignInFailures", c.ForgetSignInFailures(ctx, key, t0.Add(time.Hour)))
	if fs, _ := a.SignInFailures(ctx, key, other); len(fs) != 0 {
		t.Errorf("after forgetting those last counted an hour ago: %+v, want none", fs)
	}

	unlock, ok, err := a.TryLock(ctx, "sync")
	check(t, "TryLock", err)
	if !ok {
		t.Fatal("TryLock of a free lock: not taken")
	}
	if b.name == "postgres" {
		if _, ok, err := c.TryLock(ctx, "sync"); err != nil || ok {
			t.Errorf("TryLock of a held lock by another replica: %v, %v; want not taken", ok, err)
		}
		if u, ok, err := c.TryLock(ctx, "other"); err != nil || !ok {
			t.Errorf("TryLock of another lock: %v, %v; want taken", ok, err)
		} else {
			u()
		}
	}
	unlock()
	unlock2, ok, err := c.TryLock(ctx, "sync")
	if err != nil || !ok {
		t.Errorf("TryLock after unlock: %v, %v; want taken", ok, err)
	} else {
		unlock2()
	}
}
