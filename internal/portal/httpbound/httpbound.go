// Package httpbound holds the time bounds of eportal's HTTP server that
// more than one face needs: the server's own timeouts, and the longer read
// and write deadlines an authenticated upload is given once its caller is
// known (the agent API's publish and the web UI's patch upload alike).
package httpbound

import (
	"net/http"
	"time"
)

// The server's bounds on a request: headers within ReadHeaderTimeout, the
// whole request within ReadTimeout, the answer within WriteTimeout (which
// the server's pacing writer extends as bytes go out).
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second

	// MinReadRate is the rate, in bytes per second, an authenticated
	// upload must keep up.
	MinReadRate = 128 << 10
)

// ExtendForUpload gives an authenticated request whose body may be up to
// limit bytes the time that body takes at MinReadRate beyond ReadTimeout,
// and its answer WriteTimeout after that. It returns when the answer's
// time starts. Call it only after the caller is authenticated: before
// that, ReadTimeout holds.
func ExtendForUpload(w http.ResponseWriter, start time.Time, limit int64) time.Time {
	upload := time.Duration(limit/MinReadRate) * time.Second
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(start.Add(ReadTimeout + upload))
	rc.SetWriteDeadline(start.Add(upload + WriteTimeout))
	return start.Add(upload)
}
