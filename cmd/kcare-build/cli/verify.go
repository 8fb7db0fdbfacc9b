package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/klp"
	"github.com/kcare/kcare/internal/trust"
)

// errRefused marks a bundle that failed verification.
var errRefused = errors.New("refused")

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	keyring := fs.String("keyring", "", "public key `FILE` or directory of keys")
	sigPath := fs.String("sig", "", "signature `FILE` (default: the bundle path + .sig)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("keyring", *keyring); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one bundle file", errUsage)
	}
	path := fs.Arg(0)
	if *sigPath == "" {
		*sigPath = path + ".sig"
	}
	keys, err := trust.LoadKeyring(*keyring)
	if err != nil {
		return err
	}
	data, err := agent.ReadFile(path, bundle.MaxBundleSize)
	if errors.Is(err, bundle.ErrTooLarge) {
		return fmt.Errorf("%w: %w", errRefused, err)
	}
	if err != nil {
		return err
	}
	sig, err := agent.ReadFile(*sigPath, bundle.MaxSignatureSize)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s: %w", errRefused, *sigPath, trust.ErrUnsigned)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errRefused, err)
	}
	b, err := bundle.Open(data, sig, keys)
	if err != nil {
		return fmt.Errorf("%w: %w", errRefused, err)
	}
	m := b.Manifest
	fmt.Fprintf(stdout, "good signature by %s\n%s: level %d, module %s, kernel %s (build-id %s)\n",
		b.Signer.Fingerprint, path, m.Level, m.Module.Name, m.Kernel.Release, m.Kernel.BuildID)
	rels, err := klp.Relocations(b.Module)
	if err != nil {
		return fmt.Errorf("%w: module %s: %w", errRefused, m.Module.File, err)
	}
	writeRelocations(stdout, rels)
	if m.Check != nil {
		fmt.Fprintf(stdout, "check: %s (%d bytes), run only by kcare-build test\n", m.Check.File, m.Check.Size)
	}
	return nil
}

// writeRelocations lists a module's livepatch relocations, one a line:
// "  .text+0x3f R_X86_64_32S vmlinux _acpi_module_name,2 +0", under a
// line that counts them.
func writeRelocations(w io.Writer, rels []klp.Reloc) {
	if len(rels) == 0 {
		fmt.Fprintln(w, "livepatch relocations: none")
		return
	}
	fmt.Fprintf(w, "livepatch relocations: %d\n", len(rels))
	for _, r := range rels {
		obj, sym, _ := strings.Cut(strings.TrimPrefix(r.Symbol, ".klp.sym."), ".")
		fmt.Fprintf(w, "  %s+%#x %v %s %s %+d\n", r.Target, r.Offset, r.Type, obj, sym, r.Addend)
	}
}
