// Package kimage reads a Linux kernel image (bzImage or vmlinux ELF) and tells which kernel build it is.
package kimage

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
)

// Size bounds. A distribution bzImage is 8-15 MiB and its vmlinux 40-100 MiB;
// a vmlinux with debug info may reach several hundred MiB.
const (
	// MaxImageSize is the largest bzImage Vmlinux accepts.
	MaxImageSize = 256 << 20
	// MaxVmlinuxSize is the largest vmlinux Vmlinux produces or IdentifyFile reads.
	MaxVmlinuxSize = 1 << 30
)

var (
	// ErrNotKernelImage means the input is neither an ELF nor an x86 bzImage.
	ErrNotKernelImage = errors.New("not a Linux kernel image (neither ELF nor x86 bzImage)")
	// ErrTruncated means the bzImage ends before its compressed payload does.
	ErrTruncated = errors.New("truncated kernel image")
	// ErrUnsupportedCompression means the bzImage payload uses a compression
	// this package cannot decompress.
	ErrUnsupportedCompression = errors.New("unsupported compression")
	// ErrTooLarge means an input or a decompressed output exceeds its size bound.
	ErrTooLarge = errors.New("too large")
)

// limits bounds the sizes Vmlinux accepts and produces; tests use small ones.
type limits struct {
	image   int64
	vmlinux int64
}

var defaultLimits = limits{image: MaxImageSize, vmlinux: MaxVmlinuxSize}

var elfMagic = []byte("\x7fELF")

// isELF reports whether b starts with the ELF magic.
func isELF(b []byte) bool { return bytes.HasPrefix(b, elfMagic) }

// Vmlinux returns the uncompressed vmlinux ELF inside a bzImage; an ELF input is returned as is.
func Vmlinux(image []byte) ([]byte, error) {
	return vmlinux(image, defaultLimits)
}

// VmlinuxFile reads the kernel image at path and returns its vmlinux ELF, as Vmlinux does.
func VmlinuxFile(path string) ([]byte, error) {
	image, err := readImage(path, defaultLimits)
	if err != nil {
		return nil, err
	}
	v, err := vmlinux(image, defaultLimits)
	if err != nil {
		return nil, fmt.Errorf("extract vmlinux from %s: %w", path, err)
	}
	return v, nil
}

// readImage reads a kernel image file: up to lim.vmlinux bytes if it is an
// ELF, up to lim.image bytes otherwise.
func readImage(path string, lim limits) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel image: %w", err)
	}
	defer f.Close()

	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read kernel image %s: %w", path, err)
	}
	limit := lim.image
	if isELF(magic[:n]) {
		limit = lim.vmlinux
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read kernel image %s: %w", path, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read kernel image %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read kernel image %s: larger than %s: %w", path, sizeString(limit), ErrTooLarge)
	}
	return b, nil
}

func vmlinux(image []byte, lim limits) ([]byte, error) {
	if isELF(image) {
		return image, nil
	}
	if int64(len(image)) > lim.image {
		return nil, fmt.Errorf("kernel image of %d bytes is larger than %s: %w", len(image), sizeString(lim.image), ErrTooLarge)
	}
	payload, err := bzImagePayload(image)
	if err != nil {
		return nil, err
	}
	c := detectCompression(payload)
	out, err := decompress(c, payload, lim.vmlinux)
	if err != nil {
		return nil, fmt.Errorf("decompress %s payload: %w", c, err)
	}
	if !isELF(out) {
		return nil, fmt.Errorf("decompressed %s payload is not an ELF", c)
	}
	return out, nil
}

// Offsets into the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	setupHeaderEnd   = 0x250

	minPayloadVersion = 0x0208 // first protocol with payload_offset and payload_length
)

// bzImagePayload returns the compressed kernel inside a bzImage.
func bzImagePayload(image []byte) ([]byte, error) {
	if len(image) < setupHeaderEnd || string(image[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return nil, ErrNotKernelImage
	}
	le := binary.LittleEndian
	version := le.Uint16(image[offVersion:])
	if version < minPayloadVersion {
		return nil, fmt.Errorf("bzImage boot protocol %d.%02d predates 2.08 and has no payload_offset",
			version>>8, version&0xff)
	}
	setupSects := uint64(image[offSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	pmStart := (setupSects + 1) * 512
	offset := uint64(le.Uint32(image[offPayloadOffset:]))
	length := uint64(le.Uint32(image[offPayloadLength:]))
	if length == 0 {
		return nil, errors.New("bzImage has an empty payload (payload_length 0)")
	}
	start, end := pmStart+offset, pmStart+offset+length
	if end > uint64(len(image)) {
		return nil, fmt.Errorf("bzImage payload at %d+%d runs past the end of the %d-byte image: %w",
			start, length, len(image), ErrTruncated)
	}
	return image[start:end], nil
}

// compression names a bzImage payload format, as the kernel's CONFIG_KERNEL_* does.
type compression string

const (
	compGzip    compression = "gzip"
	compXZ      compression = "xz"
	compZstd    compression = "zstd"
	compBzip2   compression = "bzip2"
	compLZMA    compression = "lzma"
	compLZO     compression = "lzo"
	compLZ4     compression = "lz4"
	compUnknown compression = "unknown"
)

// Payload magics, as the kernel's lib/decompress.c lists them.
var compressionMagics = []struct {
	magic string
	c     compression
}{
	{"\x1f\x8b", compGzip},
	{"\xfd7zXZ\x00", compXZ},
	{"\x28\xb5\x2f\xfd", compZstd},
	{"BZh", compBzip2},
	{"\x5d\x00\x00", compLZMA},
	{"\x89LZO", compLZO},
	{"\x02\x21\x4c\x18", compLZ4},
}

func detectCompression(payload []byte) compression {
	for _, m := range compressionMagics {
		if bytes.HasPrefix(payload, []byte(m.magic)) {
			return m.c
		}
	}
	return compUnknown
}

// decompress returns the decompressed payload, at most limit bytes.
func decompress(c compression, payload []byte, limit int64) ([]byte, error) {
	switch c {
	case compGzip:
		return gunzip(payload, limit)
	case compXZ:
		return unxz(payload, limit)
	case compZstd:
		return unzstd(payload, limit)
	case compUnknown:
		n := min(len(payload), 8)
		return nil, fmt.Errorf("%w (payload magic % x)", ErrUnsupportedCompression, payload[:n])
	default:
		return nil, fmt.Errorf("%w %s", ErrUnsupportedCompression, c)
	}
}

func errOutputTooLarge(limit int64) error {
	return fmt.Errorf("decompressed kernel is larger than %s: %w", sizeString(limit), ErrTooLarge)
}

// sizeString formats a size limit for an error message.
func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// sizeHint returns a capacity for the output buffer. The kernel's build
// appends the decompressed size as a little-endian u32 to every payload (gzip
// carries it as ISIZE); a hint that does not fit the payload is ignored.
func sizeHint(payload []byte, limit int64) int {
	if len(payload) < 4 {
		return 0
	}
	n := int64(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	if n > limit || n > 64*int64(len(payload)) {
		return 0
	}
	return int(n)
}

// readAllLimit reads r to the end into a buffer of capacity hint, failing
// with ErrTooLarge if r yields more than limit bytes.
func readAllLimit(r io.Reader, hint int, limit int64) ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, hint))
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, errOutputTooLarge(limit)
	}
	return buf.Bytes(), nil
}

func gunzip(payload []byte, limit int64) ([]byte, error) {
	z, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	z.Multistream(false)
	return readAllLimit(z, sizeHint(payload, limit), limit)
}

func unzstd(payload []byte, limit int64) ([]byte, error) {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(limit)))
	if err != nil {
		return nil, err
	}
	defer d.Close()

	// The size the kernel's build appends after the frame would be read as
	// the start of a second frame, so first decode without it.
	if len(payload) > 4 {
		hint := sizeHint(payload, limit)
		out, err := d.DecodeAll(payload[:len(payload)-4], make([]byte, 0, hint))
		if err == nil {
			return out, nil
		}
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, errOutputTooLarge(limit)
		}
	}
	out, err := d.DecodeAll(payload, nil)
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return nil, errOutputTooLarge(limit)
	}
	return out, err
}
