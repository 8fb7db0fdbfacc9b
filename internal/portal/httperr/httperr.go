// Package httperr is what the portal's two HTTP faces, the API
// (internal/portal/server) and the web UI (internal/portal/web), share to
// answer: the error type their handlers return, the one mapping of the
// core's errors to statuses, and the address a request came from. Each
// face turns an Error into its own answer (JSON, or a page) in one place,
// showing the client Msg and logging the wrapped error.
package httperr

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/core"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
)

// Error is an error with a status and a message for the client; the
// wrapped error, if any, is for the log only.
type Error struct {
	Code   int
	Msg    string      // shown to the client; for the agent API an apitype.ErrorCode
	Err    error       // for the log
	Header http.Header // set on the answer, such as WWW-Authenticate or Retry-After
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %v", e.Code, e.Msg, e.Err)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// New is an Error with a message made as fmt.Sprintf makes it.
func New(code int, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap is an Error with msg for the client and err for the log.
func Wrap(code int, msg string, err error) *Error {
	return &Error{Code: code, Msg: msg, Err: err}
}

// TooMany is a 429 whose Retry-After says wait, in whole seconds, and
// whose message is reason and when to try again.
func TooMany(wait time.Duration, reason string) *Error {
	secs := int((wait + time.Second - 1) / time.Second)
	return &Error{Code: http.StatusTooManyRequests, Msg: fmt.Sprintf("%s; try again in %d s", reason, secs),
		Header: http.Header{"Retry-After": {strconv.Itoa(secs)}}}
}

// UnavailableRetry is the Retry-After of an answer given while the
// store cannot be reached: a request a few seconds later may succeed.
const UnavailableRetry = 5 * time.Second

// BodyTooLarge answers a body over its route's limit.
var BodyTooLarge = &Error{Code: http.StatusRequestEntityTooLarge, Msg: "request body too large"}

// From is err as an Error: itself if it is one, else with the status its
// cause has (a missing object 404, a duplicate or an object in use 409,
// bad input 400, ...), else 500 "internal error" with err for the log.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var mbe *http.MaxBytesError
	code, msg := http.StatusInternalServerError, ""
	switch {
	case errors.As(err, &mbe):
		return Wrap(BodyTooLarge.Code, BodyTooLarge.Msg, err)
	case store.Full(err):
		// Before the generic cases: a full disk wrapped in anything is
		// the operator's to fix, and the client must be told.
		code, msg = http.StatusInsufficientStorage, store.ErrFull.Error()+"; nothing was stored"
	case store.Unavailable(err):
		e := Wrap(http.StatusServiceUnavailable, store.ErrUnavailable.Error()+"; try again later", err)
		e.Header = http.Header{"Retry-After": {strconv.Itoa(int(UnavailableRetry / time.Second))}}
		return e
	case errors.Is(err, store.ErrExists):
		code, msg = http.StatusConflict, "already exists"
	case errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrChanged):
		code = http.StatusConflict
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrInvalidInput), errors.Is(err, apitype.ErrBadField),
		errors.Is(err, resolve.ErrBadPrefix), errors.Is(err, resolve.ErrBadSticky), errors.Is(err, core.ErrSelf),
		errors.Is(err, resolve.ErrBadDelay), errors.Is(err, resolve.ErrBadPatchset):
		code = http.StatusBadRequest
	case errors.Is(err, core.ErrNoPublisherKeys):
		code, msg = http.StatusConflict, core.ErrNoPublisherKeys.Error()+"; add one: eportal publisher add FILE.pub"
	case errors.Is(err, core.ErrBadToken):
		code = http.StatusUnauthorized
	case errors.Is(err, core.ErrNotAdmin):
		code = http.StatusForbidden
	default:
		return Wrap(http.StatusInternalServerError, "internal error", err)
	}
	if msg == "" {
		msg = err.Error()
	}
	return Wrap(code, msg, err)
}

// RemoteIP is the address a request came from, as the audit log, the
// throttles and the IP licenses see it.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
