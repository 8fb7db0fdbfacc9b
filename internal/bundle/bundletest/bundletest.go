// Package bundletest makes keys and signed bundles for the fake kernel
// (internal/fakekernel), for the tests of the agent, the portal and the
// tools around them.
package bundletest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/fakekernel"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/trust"
)

// Signer makes a new signing key; it panics if that fails, so it can
// initialise package variables.
func Signer(name string) *trust.Signer {
	priv, _, err := trust.GenerateKey(name, "")
	if err != nil {
		panic(err)
	}
	s, err := trust.ReadSigner(priv)
	if err != nil {
		panic(err)
	}
	return s
}

// Keyring trusts the public keys of signers.
func Keyring(tb testing.TB, signers ...*trust.Signer) *trust.Keyring {
	tb.Helper()
	var all []byte
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, pub...)
	}
	k, err := trust.ReadKeyring(all)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Options tune a bundle; the zero value is fine.
type Options struct {
	Released time.Time // default: day `level` of November 2026, 09:00 UTC
	Pad      int       // grow the module to at least this many bytes
}

// Bundle makes level of the fake kernel's fixture patch (module
// kcare_test_lN, CVE-2026-100N, effective release 6.1.0-56.kcareN-amd64)
// signed by s.
func Bundle(tb testing.TB, s *trust.Signer, level int, o Options) (data, sig []byte) {
	tb.Helper()
	name := fmt.Sprintf("kcare_test_l%d", level)
	m := bundle.Manifest{
		Name:  fmt.Sprintf("%s-%d", fakekernel.Release, level),
		Level: level,
		Kernel: bundle.Kernel{BuildID: fakekernel.BuildID, Release: fakekernel.Release,
			Version: fakekernel.Version, KernelID: kernel.KernelID(fakekernel.Version)},
		Module:           bundle.Module{File: name + ".ko", Name: name, Vermagic: fakekernel.Release + " SMP preempt mod_unload modversions "},
		CVEs:             []bundle.CVE{{ID: fmt.Sprintf("CVE-2026-%04d", 1000+level), Description: "fixture fix", URL: "https://www.cve.org/"}},
		EffectiveRelease: fmt.Sprintf("6.1.0-56.kcare%d-amd64", level),
		Released:         o.Released.UTC().Truncate(time.Second),
	}
	if o.Released.IsZero() {
		m.Released = time.Date(2026, 11, level, 9, 0, 0, 0, time.UTC)
	}
	mod := fakekernel.Module(name, m.Module.Vermagic, true)
	if len(mod) < o.Pad {
		mod = append(mod, make([]byte, o.Pad-len(mod))...)
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, m, mod); err != nil {
		tb.Fatal(err)
	}
	sig, err := s.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), sig
}
