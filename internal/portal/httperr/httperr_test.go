package httperr

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kcare/kcare/internal/portal/store"
)

// TestFromStoreSituation: a database that cannot be reached is answered
// 503 with Retry-After, a full disk 507, each saying so; other errors
// keep their answers, and a failed request of the portal's own to
// another server is no database failure.
func TestFromStoreSituation(t *testing.T) {
	refused := &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name  string
		err   error
		code  int
		msg   string
		retry string
	}{
		{"postgres-shutting-down", fmt.Errorf("read server: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}),
			503, "the portal's database is unavailable; try again later", "5"},
		{"postgres-starting", &pgconn.PgError{Code: "57P03"}, 503, "the portal's database is unavailable; try again later", "5"},
		{"postgres-connection-exception", &pgconn.PgError{Code: "08006"}, 503, "the portal's database is unavailable; try again later", "5"},
		{"connection-closed", fmt.Errorf("check in server x: %w", pgconn.ErrConnClosed), 503, "the portal's database is unavailable; try again later", "5"},
		{"connection-refused", fmt.Errorf("read server: %w", refused), 503, "the portal's database is unavailable; try again later", "5"},
		{"disk-full", fmt.Errorf("store bundle: %w", &os.PathError{Op: "write", Path: "/data/blobs/x", Err: syscall.ENOSPC}),
			507, "the portal's storage is full; nothing was stored", ""},
		{"unique-violation", fmt.Errorf("add: %w", store.ErrExists), 409, "already exists", ""},
		{"other-postgres-error", &pgconn.PgError{Code: "42P01"}, 500, "internal error", ""},
		{"upstream-refused", &url.Error{Op: "Get", URL: "http://upstream/", Err: refused}, 500, "internal error", ""},
		{"plain", errors.New("boom"), 500, "internal error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := From(tt.err)
			if e.Code != tt.code || e.Msg != tt.msg || e.Header.Get("Retry-After") != tt.retry {
				t.Errorf("From = %d %q Retry-After %q; want %d %q Retry-After %q", e.Code, e.Msg, e.Header.Get("Retry-After"), tt.code, tt.msg, tt.retry)
			}
			if !errors.Is(e, tt.err) && e.Code != http.StatusConflict {
				t.Errorf("the answer does not keep the error for the log")
			}
		})
	}
}
