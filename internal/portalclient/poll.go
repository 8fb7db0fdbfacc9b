package portalclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/index"
)

// IndexIfChanged is IndexFor as a conditional request, the cheap poll an
// agent makes between its runs: with tag, the entity tag of the answer
// it has, the portal answers 304 from memory when its answer is that
// one, and IndexIfChanged returns no body and tag. Else it returns the
// new answer and its tag. It checks nothing in and is not retried: a
// poll that fails waits for the next.
func (c *Client) IndexIfChanged(ctx context.Context, r index.Request, tag string) (body, sig []byte, newTag string, err error) {
	q := url.Values{}
	for _, p := range [][2]string{{apitype.IndexPrefixArg, r.Prefix}, {apitype.IndexStickyArg, r.Sticky},
		{apitype.IndexDelayArg, r.Delay}, {apitype.IndexPatchArg, r.Patchset}} {
		if p[1] != "" {
			q.Set(p[0], p[1])
		}
	}
	path := apitype.IndexPath + url.PathEscape(r.BuildID)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	bases := c.servers()
	if len(bases) == 0 {
		return nil, nil, "", ErrNoPatchServer
	}
	u, err := c.url(bases[c.cur%len(bases)], path)
	if err != nil {
		return nil, nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, "", err
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if tag != "" {
		req.Header.Set("If-None-Match", tag)
	}
	if c.ServerID != "" {
		req.SetBasicAuth(c.ServerID, c.Secret)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil, tag, nil
	case http.StatusOK:
	default:
		return nil, nil, "", apiError(resp)
	}
	body, err = io.ReadAll(index.LimitedReader(resp.Body, index.DefaultMaxSize))
	if err != nil {
		return nil, nil, "", fmt.Errorf("read index: %w", err)
	}
	sig, err = index.DecodeSignature(resp.Header.Get(index.SignatureHeader))
	if err != nil {
		sig = nil // unsigned: the verifier refuses it
	}
	return body, sig, resp.Header.Get("ETag"), nil
}
