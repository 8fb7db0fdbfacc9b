// Package portalclient is the agent's side of the portal API: register,
// fetch the signed index, download bundles, check in. It only moves bytes;
// the agent verifies everything it receives.
package portalclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/index"
)

// Errors the portal answers with, for messages and exit codes.
var (
	ErrInvalidKey    = errors.New("invalid activation key")
	ErrLimitReached  = errors.New("the activation key's server limit is reached")
	ErrIPNotAllowed  = errors.New("this server's IP address is not allowed for the activation key")
	ErrUnregistered  = errors.New("server is not registered (kcarectl --register KEY)")
	ErrUnreachable   = errors.New("patch server unreachable")
	ErrNoPatchServer = errors.New("no patch server configured (PATCH_SERVER in kcare.conf)")
	// ErrMaybeTaken is a request that must not be sent twice (a
	// registration) whose answer was lost after it was sent: the portal
	// may have taken it. It comes with ErrUnreachable.
	ErrMaybeTaken = errors.New("not sent again, as the portal may have taken it")
)

// retries bounds how often a request is retried on 429 and 5xx answers
// or a failed connection.
const retries = 3

// Client talks to one portal, through any of its replicas.
type Client struct {
	PatchServer string // PATCH_SERVER, e.g. http://eportal.example.com
	// Alternates are more URLs of the same portal (PATCH_SERVER's after
	// the first: its replicas). A request that cannot reach one (a
	// connection that fails, 429, 5xx) goes to the next, in turn, and
	// the client keeps to the one that answered.
	Alternates      []string
	RegistrationURL string // REGISTRATION_URL; default each PATCH_SERVER + /admin/api
	ServerID        string
	Secret          string
	HTTP            *http.Client // nil: a client honouring http_proxy/https_proxy
	UserAgent       string
	// Backoff is the first pause between retries; zero means one second.
	Backoff time.Duration
	// Report, when not nil, is this server's check-in for the run under
	// way. The next Index sends it with its question in one request
	// (apitype.RunPath) and, once the portal has stored it, sets Report
	// to nil. A portal without RunPath gets the question at IndexPath
	// instead, and Report stays for the caller to send with CheckIn.
	Report *apitype.CheckIn

	noRun bool // the portal answered that it has no RunPath
	cur   int  // the portal URL that answered last: 0 PatchServer, i Alternates[i-1]
}

// servers are the portal's URLs, PatchServer first.
func (c *Client) servers() []string {
	if c.PatchServer == "" {
		return nil
	}
	return append([]string{c.PatchServer}, c.Alternates...)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
}

func (c *Client) url(base, path string) (string, error) {
	if base == "" {
		return "", ErrNoPatchServer
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + path)
	if err != nil {
		return "", fmt.Errorf("bad portal URL %q: %w", base, err)
	}
	return u.String(), nil
}

func (c *Client) backoff() time.Duration {
	if c.Backoff == 0 {
		return time.Second
	}
	return c.Backoff
}

// do sends a request to path under one of bases, retrying 429, 5xx and
// connection errors: each retry goes to the next base in turn, starting
// from the one that answered last, with a pause after every round of them
// all; retries rounds in all. A request that must not be sent twice
// (resend false: a registration) is sent again, to any base, only when it
// cannot have reached the portal: the connection was refused, or the
// portal (or a load balancer with no portal up) answered 429 or 503. A
// registration whose answer is lost (a cut connection, a load balancer's
// 502 or 504) may have been taken, and a second one would register the
// server twice.
func (c *Client) do(ctx context.Context, method string, bases []string, path string, body []byte, contentType string, authn, resend bool) (*http.Response, error) {
	if len(bases) == 0 {
		return nil, ErrNoPatchServer
	}
	backoff := c.backoff()
	n := len(bases)
	start := c.cur % n
	var lastErr error
	for try := 0; try < retries*n; try++ {
		if try > 0 && try%n == 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		at := (start + try) % n
		u, err := c.url(bases[at], path)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if c.UserAgent != "" {
			req.Header.Set("User-Agent", c.UserAgent)
		}
		if authn && c.ServerID != "" {
			req.SetBasicAuth(c.ServerID, c.Secret)
		}
		resp, err := c.http().Do(req)
		if err != nil {
			if terr := tlsError(err); terr != nil {
				return nil, terr // no retry can fix a certificate
			}
			lastErr = fmt.Errorf("%w: %v", ErrUnreachable, err)
			if !resend && !notSent(err) {
				return nil, fmt.Errorf("%w; %w", lastErr, ErrMaybeTaken)
			}
			continue
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			lastErr = fmt.Errorf("%w: %s %s: %s", ErrUnreachable, method, u, resp.Status)
			resp.Body.Close()
			if !resend && (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout) {
				// A load balancer's answer when the portal it passed the
				// request to went away before answering: it may have
				// taken it.
				return nil, fmt.Errorf("%w; %w", lastErr, ErrMaybeTaken)
			}
			continue
		}
		c.cur = at
		return resp, nil
	}
	return nil, lastErr
}

// apiError reads a JSON error answer (apitype.Error) and maps its code.
func apiError(resp *http.Response) error {
	var e apitype.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	json.Unmarshal(b, &e)
	switch code := apitype.ErrorCode(e.Error); code {
	case apitype.CodeInvalidKey:
		return ErrInvalidKey
	case apitype.CodeLimitReached:
		return ErrLimitReached
	case apitype.CodeIPNotAllowed:
		return ErrIPNotAllowed
	case apitype.CodeUnregistered, apitype.CodeUnknownServer, apitype.CodeBadSecret, apitype.CodeKeyRevoked:
		return fmt.Errorf("%w (%s)", ErrUnregistered, code)
	}
	if e.Error == "" {
		e.Error = strings.TrimSpace(string(b))
	}
	return fmt.Errorf("portal answered %s: %s", resp.Status, e.Error)
}

// Server returns the registered server id requests authenticate as; ""
// for a server known by its IP license.
func (c *Client) Server() string { return c.ServerID }

// Register registers this server with an activation key and returns its
// id and secret.
func (c *Client) Register(ctx context.Context, key, hostname string) (id, secret string, err error) {
	bases := []string{c.RegistrationURL}
	if c.RegistrationURL == "" {
		bases = nil
		for _, s := range c.servers() {
			bases = append(bases, strings.TrimRight(s, "/")+apitype.RegisterBase)
		}
	}
	form := url.Values{apitype.RegisterKeyArg: {key}, apitype.RegisterHostArg: {hostname}}
	resp, err := c.do(ctx, http.MethodPost, bases, strings.TrimPrefix(apitype.RegisterPath, apitype.RegisterBase),
		[]byte(form.Encode()), "application/x-www-form-urlencoded", false, false)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", apiError(resp)
	}
	var out apitype.Registered
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil || out.ServerID == "" {
		return "", "", fmt.Errorf("register: bad answer from the portal: %v", err)
	}
	return out.ServerID, out.ServerSecret, nil
}

// Unregister removes this server from the portal.
func (c *Client) Unregister(ctx context.Context) error {
	_, err := c.postJSON(ctx, apitype.UnregisterPath, nil)
	return err
}

// Index fetches the signed index for a kernel with a prefix and sticky
// date: IndexFor with no delay or patchset.
func (c *Client) Index(ctx context.Context, buildID, prefix, sticky string) (body, sig []byte, err error) {
	return c.IndexFor(ctx, index.Request{BuildID: buildID, Prefix: prefix, Sticky: sticky})
}

// IndexFor fetches the signed index that answers r: the exact body and
// the signature from its header. It parses nothing. With a Report (and a
// portal that has apitype.RunPath) the same request checks in: see
// Client.Report.
func (c *Client) IndexFor(ctx context.Context, r index.Request) (body, sig []byte, err error) {
	q := url.Values{}
	for _, p := range [][2]string{{apitype.IndexPrefixArg, r.Prefix}, {apitype.IndexStickyArg, r.Sticky},
		{apitype.IndexDelayArg, r.Delay}, {apitype.IndexPatchArg, r.Patchset}} {
		if p[1] != "" {
			q.Set(p[0], p[1])
		}
	}
	query := ""
	if len(q) > 0 {
		query = "?" + q.Encode()
	}
	var resp *http.Response
	if c.Report != nil && !c.noRun && c.Report.BuildID == r.BuildID {
		if resp, err = c.run(ctx, query); err != nil {
			return nil, nil, err
		}
	}
	if resp == nil {
		if resp, err = c.call(ctx, http.MethodGet, apitype.IndexPath+url.PathEscape(r.BuildID)+query, nil, ""); err != nil {
			return nil, nil, err
		}
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(index.LimitedReader(resp.Body, index.DefaultMaxSize))
	if err != nil {
		return nil, nil, fmt.Errorf("read index: %w", err)
	}
	sig, err = index.DecodeSignature(resp.Header.Get(index.SignatureHeader))
	if err != nil {
		// An index without a usable signature header is an unsigned one:
		// hand the body on with no signature, for the verifier to refuse.
		return body, nil, nil
	}
	return body, sig, nil
}

// run sends c.Report to RunPath with the index question in query. It
// returns the index answer, or a nil response (and sets c.noRun) when
// the portal has no RunPath: it answers 404 or 405 for a path it does not
// serve.
func (c *Client) run(ctx context.Context, query string) (*http.Response, error) {
	b, err := json.Marshal(c.Report)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, c.servers(), apitype.RunPath+query, b, "application/json", true, true)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		c.Report = nil
		return resp, nil
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		resp.Body.Close()
		c.noRun = true
		return nil, nil
	}
	defer resp.Body.Close()
	return nil, apiError(resp)
}

// Download fetches a bundle by its path, reading at most size bytes: a
// longer answer fails with index.ErrTooLarge. progress, if not nil, is
// called with the bytes read so far. A connection cut in the middle of
// the bundle (a portal restarting, a proxy or a network dropping it) is
// retried from the start, after a pause, up to retries times in all;
// then the error wraps ErrUnreachable. The caller checks the digest.
func (c *Client) Download(ctx context.Context, path string, size int64, progress func(done, total int64)) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, min(size, 64<<20)))
	backoff := c.backoff()
	var cut error
	for try := 0; try < retries; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		buf.Reset()
		err := c.download(ctx, path, size, buf, progress)
		if err == nil {
			return buf.Bytes(), nil
		}
		var ce *cutError
		if !errors.As(err, &ce) || ctx.Err() != nil {
			return nil, err
		}
		cut = fmt.Errorf("download %s: cut off after %d of %d bytes, %d times: %w", path, buf.Len(), size, try+1, ce.err)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnreachable, cut)
}

// cutError is a bundle's answer that ended before its end.
type cutError struct{ err error }

func (e *cutError) Error() string { return e.err.Error() }

// download makes one request for a bundle and reads it into buf.
func (c *Client) download(ctx context.Context, path string, size int64, buf *bytes.Buffer, progress func(done, total int64)) error {
	resp, err := c.call(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := index.LimitedReader(resp.Body, size)
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		buf.Write(chunk[:n])
		if progress != nil && n > 0 {
			progress(int64(buf.Len()), size)
		}
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, index.ErrTooLarge):
			return fmt.Errorf("download %s: %w", path, err)
		case err != nil:
			return &cutError{err}
		}
	}
}

// CheckIn reports this server's state.
func (c *Client) CheckIn(ctx context.Context, ci apitype.CheckIn) error {
	b, err := json.Marshal(ci)
	if err != nil {
		return err
	}
	_, err = c.postJSON(ctx, apitype.CheckInPath, b)
	return err
}

// License returns what the portal says licenses this server.
func (c *Client) License(ctx context.Context) (*apitype.License, error) {
	resp, err := c.call(ctx, http.MethodGet, apitype.LicensePath, nil, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out apitype.License
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return nil, fmt.Errorf("license: bad answer: %w", err)
	}
	return &out, nil
}

func (c *Client) postJSON(ctx context.Context, path string, body []byte) ([]byte, error) {
	resp, err := c.call(ctx, http.MethodPost, path, body, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}

// call sends an authenticated request to the patch server and returns a
// 200 answer, or the portal's error.
func (c *Client) call(ctx context.Context, method, path string, body []byte, contentType string) (*http.Response, error) {
	resp, err := c.do(ctx, method, c.servers(), path, body, contentType, true, true)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

// notSent reports whether a request failed before it could reach the
// portal: the connection was never made.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
