package faults_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/portal/store"
	"github.com/kcare/kcare/internal/trust"
)

// mountNSEnv marks the copy of the test binary that runs in a private
// mount namespace; binDirEnv hands it the binaries already built.
const (
	mountNSEnv = "KCARE_FAULTS_MOUNT_NS"
	binDirEnv  = "KCARE_FAULTS_BIN"
)

// inMountNS runs the calling test again in a private mount namespace
// (unshare -m), where it may mount a small tmpfs and fill it without
// touching this machine's own disks, and reports whether this is that
// run. The caller returns when it is not.
func inMountNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv(mountNSEnv) == "1" {
		return true
	}
	if testing.Short() {
		t.Skip("portal fault tests do not run with -short")
	}
	if os.Geteuid() != 0 {
		requireHost(t, errors.New("a private mount namespace with a tmpfs needs root"))
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		requireHost(t, errors.New("unshare not found; install util-linux"))
	}
	hostBinary(t, "eportal")
	cmd := exec.Command("unshare", "-m", "--propagation", "private", os.Args[0],
		"-test.run", "^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mountNSEnv+"=1", binDirEnv+"="+binDir)
	out, err := cmd.CombinedOutput()
	t.Logf("in a private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in its mount namespace: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the test did not pass in its mount namespace")
	}
	return false
}

// smallDisk mounts a tmpfs of size bytes at a new directory.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill leaves about room bytes free on the file system of dir.
func fill(t *testing.T, dir string, room int64) {
	t.Helper()
	unfill(t, dir)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	if free <= room {
		return
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for left := free - room; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:n]); err != nil {
			break
		}
		left -= n
	}
}

func unfill(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "filler")) }

// testBundle makes a signed level of the fake kernel, about size bytes.
func testBundle(t *testing.T, s *trust.Signer, level, size int) (data, sig []byte) {
	t.Helper()
	name := fmt.Sprintf("kcare_faults_l%d", level)
	m := bundle.Manifest{
		Name:  fmt.Sprintf("%s-%d", fakekernel.Release, level),
		Level: level,
		Kernel: bundle.Kernel{BuildID: fakekernel.BuildID, Release: fakekernel.Release,
			Version: fakekernel.Version, KernelID: kernel.KernelID(fakekernel.Version)},
		Module:           bundle.Module{File: name + ".ko", Name: name, Vermagic: fakekernel.Release + " SMP preempt mod_unload modversions "},
		CVEs:             []bundle.CVE{{ID: fmt.Sprintf("CVE-2026-%04d", 9000+level), Description: "fault test fix", URL: "https://www.cve.org/"}},
		EffectiveRelease: fmt.Sprintf("6.1.0-56.kcare%d-amd64", level),
		Released:         time.Now().UTC().Add(-time.Hour).Truncate(time.Second),
	}
	module := fakekernel.Module(name, m.Module.Vermagic, true)
	pad := make([]byte, size)
	rand.Read(pad)
	var buf bytes.Buffer
	if err := bundle.Write(&buf, m, append(module, pad...)); err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sig
}

// publish posts a bundle to the portal's publish API and returns the
// status and the answer.
func (p *hostPortal) publish(t *testing.T, data, sig []byte) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range []struct {
		field string
		data  []byte
	}{{"bundle", data}, {"signature", sig}} {
		w, _ := mw.CreateFormFile(f.field, f.field)
		w.Write(f.data)
	}
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, p.url()+"/api/v1/publish", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Api-Key", p.token)
	resp, err := (&http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// get fetches path from the portal.
func (p *hostPortal) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil}}).Get(p.url() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// wholeBlobs checks that every file under the portal's blobs directory
// is a whole blob, its sha256 its name, and returns their names.
func (p *hostPortal) wholeBlobs(t *testing.T) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(filepath.Join(p.data, "blobs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(path)
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != d.Name() {
			t.Errorf("blobs holds %s, not a whole blob (%d bytes)", path, len(b))
		}
		names = append(names, d.Name())
		return nil
	})
	return names
}

// levels counts the fake kernel's levels in the portal's store.
func (p *hostPortal) levels(t *testing.T) int {
	t.Helper()
	st, err := store.Open(t.Context(), p.data, p.dsn)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	defer st.Close()
	l, err := st.Levels(t.Context(), fakekernel.BuildID)
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

// TestPortalDiskFull fills the file system of the portal's data
// directory (a small tmpfs in a private mount namespace) and publishes a
// level with little room left, and with more: a publish fails clearly
// (507, and kcare-build publish says the portal's storage is full) with
// nothing half-stored and nothing served, or completes and is served
// whole. Then a mirror syncs the level from an upstream onto a full
// disk: the sync fails clearly, stores nothing, and completes once there
// is room.
func TestPortalDiskFull(t *testing.T) {
	if !inMountNS(t) {
		return
	}
	binDir = os.Getenv(binDirEnv)
	binOnce.Do(func() {})
	disk := smallDisk(t, 16<<20)
	p := newHostPortal(t, disk, "")
	p.start()
	c := p.register("disk-full.example.net")
	const size = 2 << 20
	rooms := []int64{0, 64 << 10, size / 2, size + 256<<10, size + 2<<20}
	failed, done := 0, 0
	for i, room := range rooms {
		data, sig := testBundle(t, p.publisher, i+1, size)
		digest := bundle.Digest(data)
		fill(t, disk, room)
		code, answer := p.publish(t, data, sig)
		unfill(t, disk)
		when := fmt.Sprintf("publish with %d KiB left", room>>10)
		blobCode, blob := p.get(t, "/blobs/sha256/"+digest)
		p.wholeBlobs(t)
		body, _, err := c.Index(t.Context(), fakekernel.BuildID, "", "")
		if err != nil {
			t.Fatalf("%s: index: %v", when, err)
		}
		listed := bytes.Contains(body, []byte(digest))
		switch code {
		case http.StatusOK:
			done++
			if !listed || blobCode != http.StatusOK || !bytes.Equal(blob, data) {
				t.Errorf("%s: published, but the index lists it %v and the blob is %d, %d bytes", when, listed, blobCode, len(blob))
			}
		case http.StatusInsufficientStorage:
			failed++
			if answer != `{"error":"the portal's storage is full; nothing was stored"}` {
				t.Errorf("%s: 507 %s", when, answer)
			}
			if listed {
				t.Errorf("%s: failed, and the index names the level", when)
			}
			if blobCode == http.StatusOK && !bytes.Equal(blob, data) {
				t.Errorf("%s: failed, and serves %d bytes of the blob", when, len(blob))
			}
		default:
			t.Errorf("%s: %d %s; want 200, or 507 saying the storage is full", when, code, answer)
		}
		if hc, _ := p.get(t, "/healthz"); hc != http.StatusOK {
			t.Errorf("%s: /healthz %d afterwards", when, hc)
		}
	}
	t.Logf("publish: %d failed for want of room, %d completed", failed, done)
	if failed == 0 || done == 0 {
		t.Errorf("publish: %d failed and %d completed; the rooms tried should give both", failed, done)
	}

	// What the publisher sees.
	data, sig := testBundle(t, p.publisher, 10, size)
	kcp := filepath.Join(t.TempDir(), "l10.kcp")
	os.WriteFile(kcp, data, 0o644)
	os.WriteFile(kcp+".sig", sig, 0o644)
	fill(t, disk, 0)
	cmd := exec.Command(hostBinary(t, "kcare-build"), "publish", "--portal", p.url(), kcp)
	cmd.Env = append(os.Environ(), "KCARE_PUBLISH_TOKEN="+p.token)
	out, err := cmd.CombinedOutput()
	unfill(t, disk)
	want := "kcare-build publish: portal could not publish " + kcp + ": 507 Insufficient Storage: the portal's storage is full; nothing was stored\n"
	if cmd.ProcessState.ExitCode() != 1 || string(out) != want {
		t.Errorf("kcare-build publish onto a full disk: %v\n%s\nwant exit 1 and %q", err, out, want)
	}
	p.kill()

	testSyncDiskFull(t)
}

// testSyncDiskFull syncs a level from an upstream on the machine's disk
// into a mirror whose data directory is full.
func testSyncDiskFull(t *testing.T) {
	up := newHostPortal(t, t.TempDir(), "")
	up.start()
	data, sig := testBundle(t, up.publisher, 1, 2<<20)
	if code, answer := up.publish(t, data, sig); code != http.StatusOK {
		t.Fatalf("publish upstream: %d %s", code, answer)
	}
	disk := smallDisk(t, 16<<20)
	mir := newHostPortal(t, disk, "")
	os.WriteFile(filepath.Join(mir.data, "publishers", "faults.pub"), mustPublicKey(t, up.publisher), 0o644)
	sync := func() (string, error) {
		cmd := exec.Command(mir.bin, mir.args("sync", "--upstream", up.url())...)
		cmd.Env = append(os.Environ(), "KCARE_UPSTREAM_TOKEN="+up.token)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	fill(t, disk, 64<<10)
	out, err := sync()
	unfill(t, disk)
	if err == nil || !strings.Contains(out, "no space left on device") {
		t.Errorf("eportal sync onto a full disk: %v\n%s", err, out)
	}
	mir.wholeBlobs(t)
	if n := mir.levels(t); n != 0 {
		t.Errorf("after the failed sync the mirror holds %d levels", n)
	}
	if out, err := sync(); err != nil || !strings.Contains(out, "fetched 1 levels") {
		t.Errorf("eportal sync with room: %v\n%s", err, out)
	}
	if blobs := mir.wholeBlobs(t); len(blobs) != 1 || blobs[0] != bundle.Digest(data) {
		t.Errorf("the mirror holds blobs %q, want the level's", blobs)
	}
}

func mustPublicKey(t *testing.T, s *trust.Signer) []byte {
	t.Helper()
	b, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
