package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/trust"
)

func runApply(ctx context.Context, a *agent.Agent, o *options, stdout io.Writer) error {
	data, err := agent.ReadFile(o.apply, bundle.MaxBundleSize)
	if err != nil {
		return fmt.Errorf("read bundle: %w", err)
	}
	sigPath := o.sig
	if sigPath == "" {
		sigPath = o.apply + ".sig"
	}
	sig, err := agent.ReadFile(sigPath, bundle.MaxSignatureSize)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", sigPath, trust.ErrUnsigned)
	}
	if err != nil {
		return fmt.Errorf("read signature: %w", err)
	}
	res, err := a.Apply(ctx, data, sig)
	if err != nil {
		return err
	}
	printApplied(stdout, res)
	return nil
}

func printApplied(w io.Writer, res *agent.Result) {
	m := res.Manifest
	fmt.Fprintf(w, "Kernel is patched: level %d (%s), effective release %s\n", m.Level, m.Module.Name, m.EffectiveReleaseOr())
}
