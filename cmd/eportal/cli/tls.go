package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kcare/kcare/internal/tlscert"
)

// runTLSPin prints the public key pin of the data dir's self-signed
// certificate, or of --cert FILE, in curl's --pinnedpubkey format.
func runTLSPin(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tls-pin", flag.ContinueOnError)
	data := fs.String("data", DefaultDataDir, "data `DIR` whose self-signed certificate (DIR/tls/cert.pem) to pin")
	cert := fs.String("cert", "", "pin this certificate `FILE` (PEM) instead")
	pos, err := parse(fs, e, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	path := *cert
	if path == "" {
		path = filepath.Join(*data, tlscert.Dir, tlscert.CertFile)
	}
	pin, err := tlscert.PinFile(path)
	if errors.Is(err, os.ErrNotExist) && *cert == "" {
		return fmt.Errorf("no self-signed certificate in %s (eportal serve --tls-self-signed makes one; --cert FILE pins another)", filepath.Dir(path))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, pin)
	return nil
}
