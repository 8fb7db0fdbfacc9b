package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"time"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/bundle"
	"github.com/kcare/kcare/internal/secretflag"
)

// publishTokenSource is where publish takes the portal's API token from.
var publishTokenSource = secretflag.Source{Flag: "token", FileFlag: "token-file", Env: "KCARE_PUBLISH_TOKEN"}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	portal := fs.String("portal", "", "the portal's `URL`, e.g. http://eportal.example.com")
	tokenFlags := secretflag.Register(fs, publishTokenSource, "an admin's API token (eportal token add)")
	released := fs.String("released", "", "release `TIME`, RFC 3339 (default: the manifest's)")
	channel := fs.String("channel", "", "`CHANNEL`: stable (default) or test")
	patchset := fs.String("patchset", "", "`PATCHSET` name (default K<date>_01)")
	sigPath := fs.String("sig", "", "signature `FILE` (default: the bundle path + .sig)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("portal", *portal); err != nil {
		return err
	}
	token, err := tokenFlags.Get("kcare-build publish", stderr)
	if errors.Is(err, secretflag.ErrConflict) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err != nil {
		return err
	}
	if token == "" {
		return fmt.Errorf("%w: a token is required: --%s FILE or %s", errUsage, publishTokenSource.FileFlag, publishTokenSource.Env)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: give one bundle file", errUsage)
	}
	return publishFile(ctx, *portal, token, fs.Arg(0), *sigPath, map[string]string{"released": *released, "channel": *channel, "patchset": *patchset}, stdout)
}

// publishFile uploads the bundle at path and its signature (sigPath, or
// path + .sig) to the portal with an admin's token; fields are the
// optional form fields (released, channel, patchset).
func publishFile(ctx context.Context, portal, token, path, sigPath string, fields map[string]string, stdout io.Writer) error {
	if sigPath == "" {
		sigPath = path + ".sig"
	}
	data, err := agent.ReadFile(path, bundle.MaxBundleSize)
	if err != nil {
		return err
	}
	sig, err := agent.ReadFile(sigPath, bundle.MaxSignatureSize)
	if err != nil {
		return err
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range []struct {
		field, name string
		data        []byte
	}{{"bundle", "bundle.kcp", data}, {"signature", "bundle.kcp.sig", sig}} {
		w, err := mw.CreateFormFile(f.field, f.name)
		if err != nil {
			return err
		}
		w.Write(f.data)
	}
	for k, v := range fields {
		if v != "" {
			mw.WriteField(k, v)
		}
	}
	mw.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(portal, "/")+"/api/v1/publish", &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-Api-Key", token)
	resp, err := (&http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(out, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(out))
		}
		if resp.StatusCode >= 500 {
			// The portal's trouble (a full disk, its database down), not the bundle's.
			return fmt.Errorf("portal could not publish %s: %s: %s", path, resp.Status, e.Error)
		}
		return fmt.Errorf("%w: portal refused %s: %s: %s", errRefused, path, resp.Status, e.Error)
	}
	var res struct {
		Release  string `json:"release"`
		Level    int    `json:"level"`
		Patchset string `json:"patchset"`
		Channel  string `json:"channel"`
		Digest   string `json:"digest"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("bad answer from the portal: %v", err)
	}
	fmt.Fprintf(stdout, "published %s: %s level %d, patchset %s (%s), sha256 %s\n", path, res.Release, res.Level, res.Patchset, res.Channel, res.Digest)
	return nil
}
