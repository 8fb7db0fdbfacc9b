package store

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors of the store's situation rather than of the request, which the
// HTTP faces answer as such (internal/portal/httperr).
var (
	// ErrUnavailable is a database that cannot be reached now:
	// PostgreSQL down, restarting or refusing connections, a connection
	// lost in the middle, SQLite still busy after its retries. The same
	// request may succeed later; eportal keeps running and reconnects.
	ErrUnavailable = errors.New("the portal's database is unavailable")
	// ErrFull is the disk that holds the store or its blobs full.
	ErrFull = errors.New("the portal's storage is full")
)

// Unavailable reports whether err means the database cannot be reached
// now (ErrUnavailable, or a connection error from a driver).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01-57P03: the server is
		// shutting down, crashed or not yet accepting connections;
		// 53300: too many connections.
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return false // an HTTP request of the portal's own failed, not the database
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Full reports whether err is a full disk: ENOSPC or EDQUOT from a file,
// or SQLite's SQLITE_FULL.
func Full(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrFull) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL
}
