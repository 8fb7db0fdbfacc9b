package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/kcare/kcare/internal/trust"
)

func runKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	name := fs.String("name", "", "user id `NAME` of the key, e.g. \"Example Patches <patches@example.com>\"")
	email := fs.String("email", "", "e-mail `ADDRESS` of the key (optional)")
	out := fs.String("out", "", "write `PREFIX`.key (private) and PREFIX.pub (public)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := required("name", *name, "out", *out); err != nil {
		return err
	}
	priv, pub, err := trust.GenerateKey(*name, *email)
	if err != nil {
		return err
	}
	if err := writeNew(*out+".key", priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(*out+".pub", pub, 0o644); err != nil {
		return err
	}
	s, err := trust.ReadSigner(priv)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", s.Fingerprint())
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
