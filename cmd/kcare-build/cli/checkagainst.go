package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/kcare/kcare/internal/analyze"
)

// checkAgainst refuses a livepatch module built for release that does not
// replace every function each analysis file in paths lists
// (`kcare-build analyze --out`). A refusal is errRefused.
func checkAgainst(paths []string, ko []byte, release string) error {
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		a, err := analyze.ReadAnalysis(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := analyze.Check(a, ko, release); err != nil {
			if errors.Is(err, analyze.ErrMissingFunctions) || errors.Is(err, analyze.ErrWrongKernel) {
				return fmt.Errorf("%w: %v", errRefused, err)
			}
			return err
		}
	}
	return nil
}
