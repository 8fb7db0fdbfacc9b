package trust

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gpgTimeout bounds each gpg run; key generation is the slowest, at well
// under a second on an idle machine.
const gpgTimeout = 30 * time.Second

// maxHomeLen keeps GNUPGHOME short enough for gpg-agent's socket path
// ("/S.gpg-agent.browser" appended) to fit the 108-byte sun_path.
const maxHomeLen = 80

// gpgHome is a throwaway GnuPG home directory.
type gpgHome struct {
	t   *testing.T
	dir string
}

// newGPGHome returns a fresh GnuPG home. It skips the test when gpg is not
// installed, unless CI=true, where a missing gpg fails it. At cleanup it
// stops the gpg-agent it may have started.
func newGPGHome(t *testing.T) *gpgHome {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("gpg is needed for the interoperability test and CI=true: %v", err)
		}
		t.Skipf("gpg not installed: %v", err)
	}
	dir := t.TempDir()
	if len(dir) > maxHomeLen {
		d, err := os.MkdirTemp("", "gpg")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	h := &gpgHome{t: t, dir: dir}
	// Registered after the directory's removal, so it runs before it.
	t.Cleanup(h.stopAgent)
	return h
}

func (h *gpgHome) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+h.dir)
	return cmd
}

// gpg runs gpg in batch mode against the home and returns its stdout; the
// error carries stderr.
func (h *gpgHome) gpg(args ...string) ([]byte, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), gpgTimeout)
	defer cancel()
	base := []string{"--homedir", h.dir, "--batch", "--no-tty", "--pinentry-mode", "loopback"}
	cmd := h.command(ctx, "gpg", append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("gpg %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return append(stdout.Bytes(), stderr.Bytes()...), nil
}

// mustGPG is gpg that fails the test on error.
func (h *gpgHome) mustGPG(args ...string) []byte {
	h.t.Helper()
	out, err := h.gpg(args...)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// stopAgent kills the home's gpg-agent and removes its socket directory,
// so no process outlives the test.
func (h *gpgHome) stopAgent() {
	if _, err := exec.LookPath("gpgconf"); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), gpgTimeout)
	defer cancel()
	for _, args := range [][]string{{"--kill", "gpg-agent"}, {"--remove-socketdir"}} {
		if out, err := h.command(ctx, "gpgconf", args...).CombinedOutput(); err != nil {
			h.t.Logf("gpgconf %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// TestGPGVerifiesKcareSignature checks that gpg accepts what Signer.Sign
// makes, the way an admin checks a bundle: gpg --verify NAME.kcp.sig NAME.kcp.
func TestGPGVerifiesKcareSignature(t *testing.T) {
	h := newGPGHome(t)
	s := newSigner(t, "kcare release")
	sig := sign(t, s, bundle)

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "kcare-release.pub")
	writeFile(t, keyFile, publicKey(t, s))
	h.mustGPG("--import", keyFile)

	tests := []struct {
		name   string
		data   []byte
		sig    []byte
		wantOK bool
	}{
		{"armored", bundle, sig, true},
		{"binary", bundle, dearmor(t, sig), true},
		{"flipped-byte", flipByte(bundle, 7), sig, false},
		{"truncated", bundle[:len(bundle)-1], sig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(dir, tt.name+".kcp")
			writeFile(t, data, tt.data)
			writeFile(t, data+".sig", tt.sig)
			out, err := h.gpg("--verify", data+".sig", data)
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("gpg --verify accepted a changed file: %s", out)
				}
				if !strings.Contains(err.Error(), "BAD signature") {
					t.Errorf("gpg --verify: got %v, want a BAD signature report", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), s.Fingerprint()) {
				t.Errorf("gpg --verify output does not name key %s: %s", s.Fingerprint(), out)
			}
		})
	}
}

// TestKcareVerifiesGPGSignature checks the other way: a key made by gpg,
// exported, and its gpg --detach-sign signatures verify with Keyring.Verify;
// and the same key, exported secret, signs through ReadSigner for gpg.
func TestKcareVerifiesGPGSignature(t *testing.T) {
	h := newGPGHome(t)
	const uid = "test <t@example.org>"
	h.mustGPG("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
	fpr := gpgFingerprint(t, h.mustGPG("--with-colons", "--list-keys", uid))
	ring, err := ReadKeyring(h.mustGPG("--armor", "--export", uid))
	if err != nil {
		t.Fatalf("ReadKeyring of gpg export: %v", err)
	}

	dir := t.TempDir()
	data := filepath.Join(dir, "kcare-6.1.0-56-amd64.kcp")
	writeFile(t, data, bundle)
	h.mustGPG("--local-user", fpr, "--armor", "--output", data+".asc", "--detach-sign", data)
	h.mustGPG("--local-user", fpr, "--output", data+".sig", "--detach-sign", data)

	tests := []struct {
		name    string
		sigFile string
		data    []byte
		want    error
	}{
		{"armored", data + ".asc", bundle, nil},
		{"binary", data + ".sig", bundle, nil},
		{"armored-flipped-byte", data + ".asc", flipByte(bundle, 7), ErrBadSignature},
		{"binary-flipped-byte", data + ".sig", flipByte(bundle, 7), ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := os.ReadFile(tt.sigFile)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ring.Verify(bytes.NewReader(tt.data), sig)
			if tt.want != nil {
				checkRefusal(t, err, tt.want)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Fingerprint != fpr {
				t.Errorf("got fingerprint %s, want %s", got.Fingerprint, fpr)
			}
		})
	}

	t.Run("gpg-secret-key-signs-for-gpg", func(t *testing.T) {
		s, err := ReadSigner(h.mustGPG("--passphrase", "", "--armor", "--export-secret-keys", fpr))
		if err != nil {
			t.Fatalf("ReadSigner of gpg secret key: %v", err)
		}
		if s.Fingerprint() != fpr {
			t.Errorf("got signer fingerprint %s, want %s", s.Fingerprint(), fpr)
		}
		writeFile(t, data+".kcare.sig", sign(t, s, bundle))
		h.mustGPG("--verify", data+".kcare.sig", data)
	})
}

// gpgFingerprint returns the first fingerprint in gpg --with-colons output.
func gpgFingerprint(t *testing.T, colons []byte) string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(colons))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if fields[0] == "fpr" && len(fields) > 9 {
			return fields[9]
		}
	}
	t.Fatal(errors.New("no fpr line in gpg --with-colons output"))
	return ""
}
