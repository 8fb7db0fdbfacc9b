package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/kernel"
	"github.com/kcare/kcare/internal/kimage"
	"github.com/kcare/kcare/internal/kmod"
	"github.com/kcare/kcare/internal/trust"
)

func runPack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pack", flag.ContinueOnError)
	module := fs.String("module", "", "the livepatch module `FILE`.ko")
	kimg := fs.String("kernel", "", "the target kernel image `FILE` (vmlinuz bzImage or vmlinux)")
	level := fs.Int("level", 0, "cumulative patch `LEVEL` (1, 2, ...)")
	var cves listFlag
	fs.Var(&cves, "cve", "a fixed vulnerability `ID:TEXT` (repeatable)")
	effective := fs.String("effective-release", "", "the kernel `RELEASE` carrying the same fixes (default: the kernel's)")
	effVersion := fs.String("effective-version", "", "the package `VERSION` of the distribution kernel carrying the same fixes, e.g. 6.1.195-1")
	name := fs.String("name", "", "patch `NAME` (default: RELEASE-LEVEL)")
	desc := fs.String("description", "", "a one-line `TEXT` about the level")
	released := fs.String("released", "", "release `TIME`, RFC 3339 (default: now)")
	key := fs.String("sign-key", "", "the publisher's private key `FILE`")
	out := fs.String("out", "", "write the bundle to `FILE`.kcp and its signature to FILE.kcp.sig")
	check := fs.String("check", "", "a program `FILE` (a CVE reproducer, a script) that kcare-build test runs in the level's own kernel after applying it, and that must exit 0; the agent never runs it")
	var against listFlag
	fs.Var(&against, "check-against", "refuse a module that does not replace every function the analysis `FILE` (kcare-build analyze --out) lists (repeatable: one per fix of a cumulative level)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("module", *module, "kernel", *kimg, "sign-key", *key, "out", *out); err != nil {
		return err
	}
	if *level < 1 {
		return fmt.Errorf("%w: --level must be 1 or more", errUsage)
	}
	when := time.Now().UTC().Truncate(time.Second)
	if *released != "" {
		t, err := time.Parse(time.RFC3339, *released)
		if err != nil {
			return fmt.Errorf("%w: --released: %v", errUsage, err)
		}
		when = t.UTC()
	}
	keyData, err := os.ReadFile(*key)
	if err != nil {
		return err
	}
	signer, err := trust.ReadSigner(keyData)
	if err != nil {
		return fmt.Errorf("read signing key: %w", err)
	}
	ko, err := os.ReadFile(*module)
	if err != nil {
		return err
	}
	if len(ko) > bundle.MaxModuleSize {
		return fmt.Errorf("module %s: %w (%d bytes)", *module, bundle.ErrTooLarge, len(ko))
	}
	info, err := kmod.ReadInfo(ko)
	if err != nil {
		return fmt.Errorf("module %s: %w", *module, err)
	}
	if !info.Livepatch {
		return fmt.Errorf("module %s is not a livepatch (no livepatch=Y tag)", *module)
	}
	if len(against) > 0 {
		if err := checkAgainst(against, ko, info.Release()); err != nil {
			return fmt.Errorf("module %s: %w", *module, err)
		}
	}
	id, err := kimage.IdentifyFile(*kimg)
	if err != nil {
		return fmt.Errorf("kernel %s: %w", *kimg, err)
	}
	if info.Release() != id.Release {
		return fmt.Errorf("module %s was built for %s (vermagic %q), kernel %s is %s", *module, info.Release(), info.Vermagic, *kimg, id.Release)
	}
	if err := kmod.CheckCompiler(ko, id.Banner); err != nil {
		if errors.Is(err, kmod.ErrWrongCompiler) {
			return fmt.Errorf("%w: module %s: %w", errRefused, *module, err)
		}
		return fmt.Errorf("module %s: %w", *module, err)
	}
	m := bundle.Manifest{
		Name:  *name,
		Level: *level,
		Kernel: bundle.Kernel{
			BuildID:  id.BuildID,
			Release:  id.Release,
			Version:  id.Banner,
			KernelID: kernel.KernelID(id.Banner),
		},
		Module:           bundle.Module{File: info.Name + ".ko", Name: info.Name, Vermagic: info.Vermagic},
		EffectiveRelease: *effective,
		EffectiveVersion: *effVersion,
		Released:         when,
		Description:      *desc,
		CVEs:             []bundle.CVE{},
	}
	if m.Name == "" {
		m.Name = id.Release + "-" + strconv.Itoa(*level)
	}
	for _, c := range cves {
		cid, text, _ := strings.Cut(c, ":")
		cid = strings.TrimSpace(cid)
		m.CVEs = append(m.CVEs, bundle.CVE{ID: cid, Description: strings.TrimSpace(text), URL: "https://www.cve.org/CVERecord?id=" + cid})
	}
	var checkData []byte
	checkName := ""
	if *check != "" {
		if checkData, err = agent.ReadFile(*check, bundle.MaxCheckSize); err != nil {
			return fmt.Errorf("--check: %w", err)
		}
		checkName = "check"
	}
	var buf bytes.Buffer
	if err := bundle.WriteCheck(&buf, m, ko, checkName, checkData); err != nil {
		return err
	}
	sig, err := signer.Sign(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(*out+".sig", sig, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s level %d for %s (build-id %s), sha256 %s\n", *out, m.Level, id.Release, id.BuildID, bundle.Digest(buf.Bytes()))
	return nil
}
