package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/kcare/kcare/internal/agent"
)

func runUnload(ctx context.Context, a *agent.Agent, stdout io.Writer) error {
	removed, err := a.Unload(ctx)
	for _, name := range removed {
		fmt.Fprintf(stdout, "Removed %s\n", name)
	}
	return err
}
