package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/config"
)

// errNoPortal is returned while updates through a patch server are not
// configured.
var errNoPortal = errors.New("no patch server is configured (set PATCH_SERVER, or UPDATE_POLICY=LOCAL to re-apply the cached level)")

func runUpdate(ctx context.Context, a *agent.Agent, stdout io.Writer) error {
	switch a.Config.UpdatePolicy {
	case config.UpdatePolicyLocal, config.UpdatePolicyLocalFirst:
		res, err := a.UpdateLocal(ctx)
		if err != nil {
			return err
		}
		printApplied(stdout, res)
		return nil
	}
	return fmt.Errorf("update: %w", errNoPortal)
}
