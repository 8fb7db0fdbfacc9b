package kimage

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNoBuildID means no note carries a GNU build-id.
	ErrNoBuildID = errors.New("no GNU build-id note")
	// ErrNoBanner means the vmlinux holds no linux_banner.
	ErrNoBanner = errors.New(`no linux_banner ("Linux version <release> (...") found`)
)

// Identity tells which kernel build a vmlinux is.
type Identity struct {
	// BuildID is the GNU build-id of vmlinux, lower-case hex (as in /sys/kernel/notes).
	BuildID string `json:"build_id"`
	// Banner is the linux_banner text, byte-identical to /proc/version on
	// that kernel, including the trailing newline.
	Banner string `json:"banner"`
	// Release is the kernel release (uname -r), parsed from Banner.
	Release string `json:"release"`
}

// Identify returns the identity of a vmlinux ELF.
func Identify(vmlinux []byte) (Identity, error) {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return Identity{}, fmt.Errorf("parse vmlinux ELF: %w", err)
	}
	buildID, err := elfBuildID(f, vmlinux)
	if err != nil {
		return Identity{}, fmt.Errorf("read vmlinux build-id: %w", err)
	}
	banner, err := elfBanner(f, vmlinux)
	if err != nil {
		return Identity{}, err
	}
	release, err := ParseRelease(banner)
	if err != nil {
		return Identity{}, err
	}
	return Identity{BuildID: buildID, Banner: banner, Release: release}, nil
}

// IdentifyFile returns the identity of the kernel image (bzImage or vmlinux ELF) at path.
func IdentifyFile(path string) (Identity, error) {
	image, err := readImage(path, defaultLimits)
	if err != nil {
		return Identity{}, err
	}
	v, err := vmlinux(image, defaultLimits)
	if err != nil {
		return Identity{}, fmt.Errorf("extract vmlinux from %s: %w", path, err)
	}
	id, err := Identify(v)
	if err != nil {
		return Identity{}, fmt.Errorf("identify %s: %w", path, err)
	}
	return id, nil
}

// fileRange returns b[off:off+size], or false if that is out of bounds.
func fileRange(b []byte, off, size uint64) ([]byte, bool) {
	end := off + size
	if end < off || end > uint64(len(b)) {
		return nil, false
	}
	return b[off:end], true
}

// elfBuildID returns the GNU build-id from the PT_NOTE segments of f, or
// from its SHT_NOTE sections if it has no program headers that carry one.
func elfBuildID(f *elf.File, raw []byte) (string, error) {
	type blob struct {
		data  []byte
		align uint64
	}
	var blobs []blob
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, ok := fileRange(raw, p.Off, p.Filesz)
		if !ok {
			return "", fmt.Errorf("PT_NOTE at %#x+%#x is outside the file", p.Off, p.Filesz)
		}
		blobs = append(blobs, blob{data, p.Align})
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		data, ok := fileRange(raw, s.Offset, s.Size)
		if !ok {
			return "", fmt.Errorf("note section %s at %#x+%#x is outside the file", s.Name, s.Offset, s.Size)
		}
		blobs = append(blobs, blob{data, s.Addralign})
	}

	var firstErr error
	for _, b := range blobs {
		id, err := parseNotes(b.data, f.ByteOrder, noteAlign(b.align))
		if err == nil {
			return id, nil
		}
		if firstErr == nil && !errors.Is(err, ErrNoBuildID) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", ErrNoBuildID
}

// noteAlign returns the padding of notes in a segment or section aligned to
// align: 8 for the 8-aligned notes newer toolchains emit, 4 otherwise.
func noteAlign(align uint64) uint64 {
	if align == 8 {
		return 8
	}
	return 4
}

// ntGNUBuildID is the note type of a GNU build-id (NT_GNU_BUILD_ID in elf.h).
const ntGNUBuildID = 3

// noteHeaderSize is the size of Elf32_Nhdr and Elf64_Nhdr: namesz, descsz, type.
const noteHeaderSize = 12

// ParseNotes returns, as lower-case hex, the build-id in a blob of ELF notes
// in the format of /sys/kernel/notes: a sequence of {namesz, descsz, type}
// headers in host byte order, each followed by its name and desc, padded to
// 4 bytes. The build-id is the desc of the first note named "GNU" with type
// NT_GNU_BUILD_ID. A malformed blob is an error even if it holds a build-id.
func ParseNotes(notes []byte) (buildID string, err error) {
	return parseNotes(notes, binary.NativeEndian, 4)
}

func parseNotes(notes []byte, order binary.ByteOrder, align uint64) (string, error) {
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	var buildID string
	for off := uint64(0); off < uint64(len(notes)); {
		rest := notes[off:]
		if len(rest) < noteHeaderSize {
			if isZero(rest) {
				break // padding after the last note
			}
			return "", fmt.Errorf("note at offset %d: %d bytes left, header needs %d", off, len(rest), noteHeaderSize)
		}
		namesz := uint64(order.Uint32(rest[0:]))
		descsz := uint64(order.Uint32(rest[4:]))
		typ := order.Uint32(rest[8:])
		descOff := pad(noteHeaderSize + namesz)
		descEnd := descOff + descsz
		if descEnd > uint64(len(rest)) {
			return "", fmt.Errorf("note at offset %d: name of %d and desc of %d bytes run past the end of the %d-byte blob",
				off, namesz, descsz, len(notes))
		}
		name := rest[noteHeaderSize : noteHeaderSize+namesz]
		desc := rest[descOff:descEnd]
		if buildID == "" && typ == ntGNUBuildID && string(name) == "GNU\x00" {
			if len(desc) == 0 {
				return "", fmt.Errorf("note at offset %d: empty GNU build-id", off)
			}
			buildID = hex.EncodeToString(desc)
		}
		off += min(pad(descEnd), uint64(len(rest)))
	}
	if buildID == "" {
		return "", ErrNoBuildID
	}
	return buildID, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// bannerPrefix starts linux_banner (init/version.c and init/version-timestamp.c).
const bannerPrefix = "Linux version "

// maxBannerLen bounds a banner line; real ones are 150-300 bytes.
const maxBannerLen = 1024

// elfBanner returns linux_banner, looked for in .rodata first and then in
// the whole file.
func elfBanner(f *elf.File, raw []byte) (string, error) {
	if s := f.Section(".rodata"); s != nil && s.Type != elf.SHT_NOBITS {
		if data, ok := fileRange(raw, s.Offset, s.Size); ok {
			if banner, ok := findBanner(data); ok {
				return banner, nil
			}
		}
	}
	if banner, ok := findBanner(raw); ok {
		return banner, nil
	}
	return "", ErrNoBanner
}

// findBanner returns linux_banner from b: a line that reads
// "Linux version <release> (...)...\n" in printable ASCII. This skips
// linux_proc_banner ("%s version %s ..."), format strings such as
// "Linux version %s" and prefixes of other messages.
//
// Since Linux 6.0 a vmlinux holds two such lines. init/version.o carries a
// placeholder, compiled before the build number is known, whose version
// lacks it ("# SMP PREEMPT_DYNAMIC ..." where the kernel reports
// "#1 SMP PREEMPT_DYNAMIC ..."); the real linux_banner comes from
// init/version-timestamp.o, linked last. So findBanner prefers a line with a
// final version and, among equals, the last.
func findBanner(b []byte) (string, bool) {
	var best string
	bestFinal := false
	for i := 0; i < len(b); {
		j := bytes.Index(b[i:], []byte(bannerPrefix))
		if j < 0 {
			break
		}
		start := i + j
		i = start + len(bannerPrefix)
		line := b[start:min(len(b), start+maxBannerLen)]
		nl := bytes.IndexByte(line, '\n')
		if nl < 0 || !isPrintable(line[:nl]) {
			continue
		}
		banner := string(line[:nl+1])
		if _, err := ParseRelease(banner); err != nil {
			continue
		}
		if final := hasFinalVersion(banner); final || !bestFinal {
			best, bestFinal = banner, final
		}
	}
	return best, best != ""
}

// hasFinalVersion reports whether the UTS version at the end of banner
// ("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)") has both a build
// number after the '#' and a timestamp, which the placeholder banner of
// init/version.o may lack.
func hasFinalVersion(banner string) bool {
	i := strings.LastIndex(banner, ") #")
	if i < 0 {
		return false
	}
	v := strings.TrimSuffix(banner[i+len(") "):], "\n")
	return len(v) > 1 && v[1] != ' ' && !strings.HasSuffix(v, " ")
}

// isPrintable reports whether b is all printable ASCII.
func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// maxReleaseLen is the size of utsname.release without its NUL (__NEW_UTS_LEN).
const maxReleaseLen = 64

// ParseRelease returns the kernel release from a banner as /proc/version
// shows it: "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) ..."
// gives "6.1.0-56-amd64".
func ParseRelease(banner string) (string, error) {
	rest, ok := strings.CutPrefix(banner, bannerPrefix)
	if !ok {
		return "", fmt.Errorf("parse kernel banner %q: does not start with %q", clip(banner), bannerPrefix)
	}
	release, _, ok := strings.Cut(rest, " (")
	if !ok {
		return "", fmt.Errorf("parse kernel banner %q: no \" (\" after the release", clip(banner))
	}
	if release == "" || len(release) > maxReleaseLen || strings.ContainsAny(release, " %") || !isPrintable([]byte(release)) {
		return "", fmt.Errorf("parse kernel banner %q: %q is not a kernel release", clip(banner), clip(release))
	}
	return release, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 80
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
