package cli

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kcare/kcare/internal/portalclient"
)

// TestRegistrationRetryable: --register-autoretry tries again only when
// the portal cannot have taken the registration.
func TestRegistrationRetryable(t *testing.T) {
	unreachable := fmt.Errorf("%w: dial tcp 127.0.0.1:1: connect: connection refused", portalclient.ErrUnreachable)
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused_or_5xx", unreachable, true},
		{"answer_lost_after_sending", fmt.Errorf("%w; %w", unreachable, portalclient.ErrMaybeTaken), false},
		{"invalid_key", portalclient.ErrInvalidKey, false},
		{"limit_reached", portalclient.ErrLimitReached, false},
		{"other", errors.New("bad answer from the portal"), false},
	} {
		if got := registrationRetryable(tt.err); got != tt.want {
			t.Errorf("%s: registrationRetryable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
