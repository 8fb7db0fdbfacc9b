package kimage

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// xzCommand is the xz program unxz runs. Kernel payloads are xz streams with
// the x86 BCJ filter ahead of LZMA2 (scripts/xz_wrap.sh), which no Go xz
// decoder supports; xz-utils does.
const xzCommand = "xz"

// xzExitWarning is the exit status of xz when it only warned (xz(1), EXIT STATUS).
const xzExitWarning = 2

// unxz decompresses the first xz stream of payload with the xz command,
// reading at most limit bytes of its output.
//
// The kernel's build appends the decompressed size after the stream. xz
// would report those 4 bytes as trailing garbage and exit 1; --single-stream
// makes it stop after the first stream and ignore them silently (exit 0). So
// exit status 1 is a real failure (corrupt or truncated stream) even if
// the partial output starts like an ELF. Status 2 is a warning only; the
// output is then complete and is accepted if it is an ELF.
func unxz(payload []byte, limit int64) ([]byte, error) {
	cmd := exec.Command(xzCommand, "--decompress", "--stdout", "--single-stream")
	if cmd.Err != nil {
		return nil, fmt.Errorf("xz command not found (install xz-utils): %w", cmd.Err)
	}
	cmd.Stdin = bytes.NewReader(payload)
	stderr := &headBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run xz: %w", err)
	}
	out, readErr := readAllLimit(stdout, sizeHint(payload, limit), limit)
	if readErr != nil {
		// Stop xz rather than wait for it to write the rest.
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if readErr != nil {
		return nil, readErr
	}
	if waitErr != nil {
		var exit *exec.ExitError
		if errors.As(waitErr, &exit) && exit.ExitCode() == xzExitWarning && isELF(out) {
			return out, nil
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("%s (%w)", msg, waitErr)
		}
		return nil, fmt.Errorf("xz: %w", waitErr)
	}
	return out, nil
}

// headBuffer keeps the first max bytes written to it and discards the rest.
// It wraps rather than embeds bytes.Buffer so that io.Copy cannot bypass the
// bound through Buffer.ReadFrom.
type headBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *headBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *headBuffer) String() string { return b.buf.String() }
