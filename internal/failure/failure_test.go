package failure_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kcare/kcare/internal/failure"
)

var errBadSig = failure.New(failure.Refused, "bad signature")

func TestCategory(t *testing.T) {
	err := fmt.Errorf("verify bundle: %w", errBadSig)
	if !errors.Is(err, errBadSig) {
		t.Error("a wrapped error is not itself")
	}
	if !errors.Is(err, failure.Refused) {
		t.Error("a wrapped error is not its category")
	}
	if errors.Is(err, failure.Stalled) {
		t.Error("an error is another category")
	}
	if errors.Is(err, failure.New(failure.Refused, "bad signature")) {
		t.Error("two errors of one text and category are the same error")
	}
	if got := failure.Of(err, failure.Usage, failure.Refused); got != failure.Refused {
		t.Errorf("Of = %v, want refused", got)
	}
	if err.Error() != "verify bundle: bad signature" {
		t.Errorf("text %q", err.Error())
	}
}
