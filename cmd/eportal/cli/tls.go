package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kcare/kcare/internal/cmdline"
	"github.com/kcare/kcare/internal/tlscert"
)

// tlsPinCmd prints the public key pin of the data dir's self-signed
// certificate, or of --cert FILE, in curl's --pinnedpubkey format.
func tlsPinCmd(e *env) *cmdline.Command {
	fs := flags("tls-pin")
	data := fs.String("data", DefaultDataDir, "data `DIR` whose self-signed certificate (DIR/tls/cert.pem) to pin")
	cert := fs.String("cert", "", "pin this certificate `FILE` (PEM) instead")
	return &cmdline.Command{Name: "tls-pin", Summary: "print the public key pin of the portal's TLS certificate (curl's format)", Flags: fs,
		Run: func(ctx context.Context, args []string) error { return tlsPin(e, *data, *cert) }}
}

func tlsPin(e *env, data, cert string) error {
	path := cert
	if path == "" {
		path = filepath.Join(data, tlscert.Dir, tlscert.CertFile)
	}
	pin, err := tlscert.PinFile(path)
	if errors.Is(err, os.ErrNotExist) && cert == "" {
		return fmt.Errorf("no self-signed certificate in %s (eportal serve --tls-self-signed makes one; --cert FILE pins another)", filepath.Dir(path))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, pin)
	return nil
}
