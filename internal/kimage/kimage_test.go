package kimage

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Real banners, as /proc/version shows them.
const (
	debianBanner = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) " +
		"(gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) " +
		"#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)\n"
	// debianPlaceholder is the banner init/version.o carries beside the real one.
	debianPlaceholder = "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) " +
		"(gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) " +
		"# SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-10-20)\n"
	debianProcBanner = "%s version %s (debian-kernel@lists.debian.org) " +
		"(gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) %s\n"
	ubuntuBanner = "Linux version 5.15.0-76-generic (buildd@lcy02-amd64-019) " +
		"(gcc (Ubuntu 11.3.0-1ubuntu1~22.04.1) 11.3.0, GNU ld (GNU Binutils for Ubuntu) 2.38) " +
		"#83-Ubuntu SMP Thu Jun 15 19:16:32 UTC 2023\n"

	testBuildID = "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
)

// note encodes one ELF note, padded to 4 bytes.
func note(order binary.AppendByteOrder, name string, typ uint32, desc []byte) []byte {
	var b []byte
	b = order.AppendUint32(b, uint32(len(name)))
	b = order.AppendUint32(b, uint32(len(desc)))
	b = order.AppendUint32(b, typ)
	b = append(b, name...)
	b = pad4(b)
	b = append(b, desc...)
	return pad4(b)
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// kernelNotes returns notes shaped like a Debian vmlinux's .notes: Xen
// notes, the GNU build-id, and Linux notes with an unaligned desc.
func kernelNotes(order binary.AppendByteOrder, buildID string) []byte {
	var b []byte
	b = append(b, note(order, "Xen\x00", 6, []byte("linux\x00"))...)
	b = append(b, note(order, "Xen\x00", 7, []byte("2.6\x00"))...)
	b = append(b, note(order, "Xen\x00", 0x12, unhex("5008000100000000"))...)
	if buildID != "" {
		b = append(b, note(order, "GNU\x00", ntGNUBuildID, unhex(buildID))...)
	}
	b = append(b, note(order, "Linux\x00", 0x100, []byte("6.1.0-56-amd64\x00"))...)
	return b
}

func TestParseNotes(t *testing.T) {
	ne := binary.NativeEndian
	full := kernelNotes(ne, testBuildID)
	gnuOnly := note(ne, "GNU\x00", ntGNUBuildID, unhex(testBuildID))
	tests := []struct {
		name    string
		notes   []byte
		want    string
		wantErr error // nil with want == "" means any error
	}{
		{name: "xen_and_build_id", notes: full, want: testBuildID},
		{name: "build_id_only", notes: gnuOnly, want: testBuildID},
		{name: "trailing_padding", notes: append(bytes.Clone(gnuOnly), 0, 0, 0, 0), want: testBuildID},
		{name: "short_build_id", notes: note(ne, "GNU\x00", ntGNUBuildID, unhex("0123456789abcdef")), want: "0123456789abcdef"},
		{
			name:  "first_of_two",
			notes: append(bytes.Clone(gnuOnly), note(ne, "GNU\x00", ntGNUBuildID, unhex("00112233"))...),
			want:  testBuildID,
		},
		{name: "truncated_desc", notes: full[:len(full)-30]},
		{name: "truncated_header", notes: gnuOnly[:7]},
		{name: "truncated_after_build_id", notes: append(bytes.Clone(gnuOnly), 1, 0, 0, 0, 0, 0, 0, 0)},
		{name: "huge_namesz", notes: append(ne.AppendUint32(nil, 0xffffffff), gnuOnly[4:]...)},
		{name: "empty_build_id", notes: note(ne, "GNU\x00", ntGNUBuildID, nil)},
		{name: "no_build_id", notes: kernelNotes(ne, ""), wantErr: ErrNoBuildID},
		{name: "gnu_property_not_build_id", notes: note(ne, "GNU\x00", 5, make([]byte, 16)), wantErr: ErrNoBuildID},
		{name: "name_without_nul", notes: note(ne, "GNU", ntGNUBuildID, unhex(testBuildID)), wantErr: ErrNoBuildID},
		{name: "empty", notes: nil, wantErr: ErrNoBuildID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNotes(tt.notes)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseNotes = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseNotes = %q; want an error", got)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseNotes error = %v; want %v", err, tt.wantErr)
			}
		})
	}
}

func TestParseNotesAlign8(t *testing.T) {
	// A note with a 4-byte name in an 8-aligned segment: the desc starts at 16.
	var b []byte
	le := binary.LittleEndian
	b = le.AppendUint32(b, 4)
	b = le.AppendUint32(b, 20)
	b = le.AppendUint32(b, ntGNUBuildID)
	b = append(b, "GNU\x00"...)
	b = append(b, unhex(testBuildID)...)
	b = append(b, 0, 0, 0, 0)
	got, err := parseNotes(b, le, 8)
	if err != nil || got != testBuildID {
		t.Fatalf("parseNotes(align 8) = %q, %v; want %q", got, err, testBuildID)
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		name    string
		banner  string
		want    string
		wantErr bool
	}{
		{name: "debian", banner: debianBanner, want: "6.1.0-56-amd64"},
		{name: "debian_placeholder", banner: debianPlaceholder, want: "6.1.0-56-amd64"},
		{name: "ubuntu", banner: ubuntuBanner, want: "5.15.0-76-generic"},
		{name: "no_newline", banner: strings.TrimSuffix(ubuntuBanner, "\n"), want: "5.15.0-76-generic"},
		{name: "garbage", banner: "\x00\x01garbage", wantErr: true},
		{name: "empty", banner: "", wantErr: true},
		{name: "format_string", banner: "Linux version %s (%s@%s)\n", wantErr: true},
		{name: "proc_banner", banner: debianProcBanner, wantErr: true},
		{name: "no_release", banner: "Linux version  (x@y) #1\n", wantErr: true},
		{name: "no_paren", banner: "Linux version 6.1.0-56-amd64\n", wantErr: true},
		{name: "release_too_long", banner: "Linux version " + strings.Repeat("6", 65) + " (x@y) #1\n", wantErr: true},
		{name: "lower_case", banner: strings.ToLower(debianBanner), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRelease(tt.banner)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseRelease = %q; want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRelease = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestFindBanner(t *testing.T) {
	nul := "\x00\x00\x00\x00"
	tests := []struct {
		name string
		data string
		want string // "" means none found
	}{
		{name: "single", data: nul + ubuntuBanner + nul, want: ubuntuBanner},
		{name: "placeholder_first", data: debianPlaceholder + nul + "initcall" + nul + debianBanner + nul, want: debianBanner},
		{name: "placeholder_last", data: debianBanner + nul + debianPlaceholder + nul, want: debianBanner},
		{name: "only_placeholder", data: nul + debianPlaceholder, want: debianPlaceholder},
		{
			name: "decoys_first",
			data: "Linux version %s\n" + nul + debianProcBanner + nul + "Linux version " + nul +
				"Linux version 6.1.0-56-amd64 (\x01\x02)\n" + nul + debianBanner,
			want: debianBanner,
		},
		{name: "no_newline", data: nul + strings.TrimSuffix(debianBanner, "\n") + nul},
		{name: "too_long", data: "Linux version 6.1.0 (" + strings.Repeat("x", maxBannerLen) + ")\n"},
		{name: "at_end", data: "Linux version "},
		{name: "none", data: "no banner here\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := findBanner([]byte(tt.data))
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("findBanner = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

// testSection is a section of a hand-built ELF.
type testSection struct {
	name  string
	typ   elf.SectionType
	align uint64
	data  []byte
}

// buildELF returns a little-endian x86-64 ELF executable with the given
// sections and a PT_NOTE segment for each SHT_NOTE section, shaped like a
// vmlinux.
func buildELF(sections []testSection) []byte {
	le := binary.LittleEndian
	const (
		ehsize    = 64
		phentsize = 56
		shentsize = 64
	)
	shstrtab := []byte{0}
	nameOff := make([]uint32, len(sections))
	for i, s := range sections {
		nameOff[i] = uint32(len(shstrtab))
		shstrtab = append(shstrtab, s.name+"\x00"...)
	}
	shstrtabName := uint32(len(shstrtab))
	shstrtab = append(shstrtab, ".shstrtab\x00"...)

	var nNotes int
	for _, s := range sections {
		if s.typ == elf.SHT_NOTE {
			nNotes++
		}
	}
	off := uint64(ehsize + nNotes*phentsize)
	align := func(n, a uint64) uint64 {
		if a == 0 {
			a = 1
		}
		return (n + a - 1) &^ (a - 1)
	}
	offsets := make([]uint64, len(sections))
	for i, s := range sections {
		off = align(off, s.align)
		offsets[i] = off
		off += uint64(len(s.data))
	}
	strtabOff := off
	off += uint64(len(shstrtab))
	shoff := align(off, 8)

	var buf bytes.Buffer
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     0x1000000,
		Phoff:     ehsize,
		Shoff:     shoff,
		Ehsize:    ehsize,
		Phentsize: phentsize,
		Phnum:     uint16(nNotes),
		Shentsize: shentsize,
		Shnum:     uint16(len(sections) + 2),
		Shstrndx:  uint16(len(sections) + 1),
	}
	copy(hdr.Ident[:], elfMagic)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.Write(&buf, le, hdr)
	for i, s := range sections {
		if s.typ != elf.SHT_NOTE {
			continue
		}
		binary.Write(&buf, le, elf.Prog64{
			Type:   uint32(elf.PT_NOTE),
			Flags:  uint32(elf.PF_R),
			Off:    offsets[i],
			Vaddr:  0xffffffff82000000 + offsets[i],
			Paddr:  0x2000000 + offsets[i],
			Filesz: uint64(len(s.data)),
			Memsz:  uint64(len(s.data)),
			Align:  s.align,
		})
	}
	for i, s := range sections {
		buf.Write(make([]byte, offsets[i]-uint64(buf.Len())))
		buf.Write(s.data)
	}
	buf.Write(shstrtab)
	buf.Write(make([]byte, shoff-uint64(buf.Len())))
	binary.Write(&buf, le, elf.Section64{})
	for i, s := range sections {
		binary.Write(&buf, le, elf.Section64{
			Name:      nameOff[i],
			Type:      uint32(s.typ),
			Flags:     uint64(elf.SHF_ALLOC),
			Addr:      0xffffffff82000000 + offsets[i],
			Off:       offsets[i],
			Size:      uint64(len(s.data)),
			Addralign: s.align,
		})
	}
	binary.Write(&buf, le, elf.Section64{
		Name:      shstrtabName,
		Type:      uint32(elf.SHT_STRTAB),
		Off:       strtabOff,
		Size:      uint64(len(shstrtab)),
		Addralign: 1,
	})
	return buf.Bytes()
}

// testVmlinux returns a small vmlinux-shaped ELF: the Debian notes and,
// in .rodata, decoys, the placeholder banner and the real banner. A stray
// banner in .data must lose to the one in .rodata.
func testVmlinux() []byte {
	nul := "\x00\x00\x00\x00"
	rodata := "initcall_debug" + nul + "Linux version %s\n" + nul + debianPlaceholder + nul +
		debianProcBanner + nul + strings.Repeat("\x0f\x0bkvm", 8) + nul + debianBanner + nul
	return buildELF([]testSection{
		{name: ".text", typ: elf.SHT_PROGBITS, align: 16, data: bytes.Repeat([]byte{0xcc}, 256)},
		{name: ".data", typ: elf.SHT_PROGBITS, align: 16, data: []byte(nul + ubuntuBanner + nul)},
		{name: ".rodata", typ: elf.SHT_PROGBITS, align: 64, data: []byte(rodata)},
		{name: ".notes", typ: elf.SHT_NOTE, align: 4, data: kernelNotes(binary.LittleEndian, testBuildID)},
	})
}

var wantIdentity = Identity{BuildID: testBuildID, Banner: debianBanner, Release: "6.1.0-56-amd64"}

// fakeBzImage wraps payload in an x86 boot protocol 2.15 header the way
// arch/x86/boot/tools/build.c lays out a bzImage: setup sectors, then the
// protected-mode code with the payload inside it, then more code.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 3
	const decompressorSize = 0x2cc
	pm := (setupSects + 1) * 512
	image := make([]byte, pm+decompressorSize, pm+decompressorSize+len(payload)+512)
	image[0x1f1] = setupSects
	binary.LittleEndian.PutUint16(image[0x1fe:], 0xaa55)
	copy(image[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(image[0x206:], 0x020f)
	binary.LittleEndian.PutUint32(image[0x248:], decompressorSize)
	binary.LittleEndian.PutUint32(image[0x24c:], uint32(len(payload)))
	image = append(image, payload...)
	return append(image, bytes.Repeat([]byte{0x90}, 512)...)
}

// withSize appends the decompressed size the way the kernel's size_append does.
func withSize(compressed []byte, size int) []byte {
	return binary.LittleEndian.AppendUint32(bytes.Clone(compressed), uint32(size))
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	z, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	z.Write(b)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// xzed compresses b as the kernel's scripts/xz_wrap.sh does for x86.
func xzed(t testing.TB, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz command not found")
	}
	cmd := exec.Command("xz", "--compress", "--stdout", "--format=xz", "--check=crc32",
		"--x86", "--lzma2=dict=1MiB")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	return out
}

func TestVmlinuxBzImage(t *testing.T) {
	v := testVmlinux()
	tests := []struct {
		name    string
		payload func(t testing.TB) []byte
	}{
		{name: "gzip", payload: func(t testing.TB) []byte { return gzipped(t, v) }},
		{name: "xz", payload: func(t testing.TB) []byte { return withSize(xzed(t, v), len(v)) }},
		{name: "xz_no_size", payload: func(t testing.TB) []byte { return xzed(t, v) }},
		{name: "zstd", payload: func(t testing.TB) []byte { return withSize(zstded(t, v), len(v)) }},
		{name: "zstd_no_size", payload: func(t testing.TB) []byte { return zstded(t, v) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image := fakeBzImage(tt.payload(t))
			got, err := Vmlinux(image)
			if err != nil {
				t.Fatalf("Vmlinux: %v", err)
			}
			if !bytes.Equal(got, v) {
				t.Fatalf("Vmlinux returned %d bytes, not the %d-byte vmlinux", len(got), len(v))
			}
			id, err := Identify(got)
			if err != nil {
				t.Fatalf("Identify: %v", err)
			}
			if id != wantIdentity {
				t.Fatalf("Identify = %+v; want %+v", id, wantIdentity)
			}
		})
	}
}

func TestVmlinuxELFAsIs(t *testing.T) {
	v := testVmlinux()
	got, err := Vmlinux(v)
	if err != nil || &got[0] != &v[0] || len(got) != len(v) {
		t.Fatalf("Vmlinux(ELF) = %d bytes, %v; want the input", len(got), err)
	}
}

func TestVmlinuxRefusals(t *testing.T) {
	v := testVmlinux()
	gz := gzipped(t, v)
	good := fakeBzImage(gz)

	oldProtocol := bytes.Clone(good)
	binary.LittleEndian.PutUint16(oldProtocol[0x206:], 0x0206)
	emptyPayload := bytes.Clone(good)
	binary.LittleEndian.PutUint32(emptyPayload[0x24c:], 0)
	pastEnd := bytes.Clone(good)
	binary.LittleEndian.PutUint32(pastEnd[0x24c:], uint32(len(good)))

	tests := []struct {
		name    string
		image   []byte
		wantErr error  // nil means any error
		wantMsg string // a substring of the message, if not ""
	}{
		{name: "empty", image: nil, wantErr: ErrNotKernelImage},
		{name: "text", image: []byte(strings.Repeat("not a kernel\n", 100)), wantErr: ErrNotKernelImage},
		{name: "pe_without_hdrs", image: append([]byte("MZ"), make([]byte, 4096)...), wantErr: ErrNotKernelImage},
		{name: "header_only", image: good[:0x250], wantErr: ErrTruncated},
		{name: "truncated_image", image: good[:len(good)-len(gz)/2-512], wantErr: ErrTruncated},
		{name: "payload_past_end", image: pastEnd, wantErr: ErrTruncated},
		{name: "truncated_gzip", image: fakeBzImage(gz[:len(gz)/2])},
		{name: "corrupt_gzip", image: fakeBzImage(append(bytes.Clone(gz[:20]), make([]byte, 200)...))},
		{name: "old_protocol", image: oldProtocol, wantMsg: "boot protocol 2.06"},
		{name: "empty_payload", image: emptyPayload, wantMsg: "empty payload"},
		{name: "not_elf", image: fakeBzImage(gzipped(t, []byte("plain text, not a vmlinux"))), wantMsg: "not an ELF"},
		{name: "lz4", image: fakeBzImage([]byte("\x02\x21\x4c\x18rest")), wantErr: ErrUnsupportedCompression, wantMsg: "unsupported compression lz4"},
		{name: "lzo", image: fakeBzImage([]byte("\x89LZO\x00\r\n")), wantErr: ErrUnsupportedCompression, wantMsg: "unsupported compression lzo"},
		{name: "bzip2", image: fakeBzImage([]byte("BZh91AY&SY")), wantErr: ErrUnsupportedCompression, wantMsg: "unsupported compression bzip2"},
		{name: "lzma", image: fakeBzImage([]byte("\x5d\x00\x00\x00\x02\xff\xff")), wantErr: ErrUnsupportedCompression, wantMsg: "unsupported compression lzma"},
		{name: "unknown", image: fakeBzImage([]byte("\x00\x01\x02\x03\x04\x05")), wantErr: ErrUnsupportedCompression, wantMsg: "00 01 02 03"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Vmlinux(tt.image)
			if err == nil {
				t.Fatalf("Vmlinux = %d bytes; want an error", len(got))
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Vmlinux error = %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Vmlinux error = %v; want it to say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestVmlinuxXZFailures(t *testing.T) {
	v := testVmlinux()
	xz := xzed(t, v)
	// The stream is cut short, and then followed by a plausible size
	// trailer: xz writes what it decoded, which starts like an ELF, and
	// exits 1; that must fail.
	truncated := withSize(xz[:len(xz)-40], len(v))
	if _, err := Vmlinux(fakeBzImage(truncated)); err == nil || !strings.Contains(err.Error(), "xz") {
		t.Fatalf("Vmlinux(truncated xz) error = %v; want an xz error", err)
	}
	corrupt := bytes.Clone(xz)
	corrupt[len(corrupt)/2] ^= 0xff
	if _, err := Vmlinux(fakeBzImage(withSize(corrupt, len(v)))); err == nil {
		t.Fatalf("Vmlinux(corrupt xz) succeeded; want an error")
	}
	// A second stream after the first is ignored, as the kernel ignores it.
	twice := append(bytes.Clone(xz), xz...)
	if got, err := Vmlinux(fakeBzImage(twice)); err != nil || !bytes.Equal(got, v) {
		t.Fatalf("Vmlinux(xz, xz) = %d bytes, %v; want the %d-byte vmlinux", len(got), err, len(v))
	}
}

func TestHeadBuffer(t *testing.T) {
	b := &headBuffer{max: 4}
	n, err := io.Copy(b, strings.NewReader("0123456789"))
	if n != 10 || err != nil || b.String() != "0123" {
		t.Fatalf("io.Copy into headBuffer{max: 4} = %d, %v, kept %q; want 10, nil, \"0123\"", n, err, b.String())
	}
}

func TestVmlinuxLimits(t *testing.T) {
	v := testVmlinux()
	small := limits{image: 1 << 20, vmlinux: int64(len(v)) - 1}
	tests := []struct {
		name    string
		payload func(t testing.TB) []byte
	}{
		{name: "gzip", payload: func(t testing.TB) []byte { return gzipped(t, v) }},
		{name: "xz", payload: func(t testing.TB) []byte { return withSize(xzed(t, v), len(v)) }},
		{name: "zstd", payload: func(t testing.TB) []byte { return withSize(zstded(t, v), len(v)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image := fakeBzImage(tt.payload(t))
			if _, err := vmlinux(image, small); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("vmlinux(output limit %d) error = %v; want ErrTooLarge", small.vmlinux, err)
			}
			exact := limits{image: int64(len(image)), vmlinux: int64(len(v))}
			if _, err := vmlinux(image, exact); err != nil {
				t.Fatalf("vmlinux(exact limits) error = %v", err)
			}
			tiny := limits{image: int64(len(image)) - 1, vmlinux: 1 << 30}
			if _, err := vmlinux(image, tiny); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("vmlinux(image limit %d) error = %v; want ErrTooLarge", tiny.image, err)
			}
		})
	}
}

func TestIdentifyRefusals(t *testing.T) {
	noBuildID := buildELF([]testSection{
		{name: ".rodata", typ: elf.SHT_PROGBITS, align: 64, data: []byte(debianBanner)},
		{name: ".notes", typ: elf.SHT_NOTE, align: 4, data: kernelNotes(binary.LittleEndian, "")},
	})
	noBanner := buildELF([]testSection{
		{name: ".rodata", typ: elf.SHT_PROGBITS, align: 64, data: []byte(debianProcBanner + "Linux version %s\n")},
		{name: ".notes", typ: elf.SHT_NOTE, align: 4, data: kernelNotes(binary.LittleEndian, testBuildID)},
	})
	tests := []struct {
		name    string
		elf     []byte
		wantErr error
	}{
		{name: "no_build_id", elf: noBuildID, wantErr: ErrNoBuildID},
		{name: "no_banner", elf: noBanner, wantErr: ErrNoBanner},
		{name: "not_elf", elf: []byte("\x7fELF garbage")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := Identify(tt.elf)
			if err == nil {
				t.Fatalf("Identify = %+v; want an error", id)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Identify error = %v; want %v", err, tt.wantErr)
			}
		})
	}
}

func TestIdentifyBannerOutsideRodata(t *testing.T) {
	v := buildELF([]testSection{
		{name: ".data", typ: elf.SHT_PROGBITS, align: 16, data: []byte("\x00" + ubuntuBanner)},
		{name: ".notes", typ: elf.SHT_NOTE, align: 4, data: kernelNotes(binary.LittleEndian, testBuildID)},
	})
	id, err := Identify(v)
	if err != nil || id.Banner != ubuntuBanner || id.Release != "5.15.0-76-generic" {
		t.Fatalf("Identify = %+v, %v; want the banner from .data", id, err)
	}
}

func TestIdentifyFile(t *testing.T) {
	v := testVmlinux()
	dir := t.TempDir()
	elfPath := filepath.Join(dir, "vmlinux")
	bzPath := filepath.Join(dir, "vmlinuz-6.1.0-56-amd64")
	if err := os.WriteFile(elfPath, v, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bzPath, fakeBzImage(gzipped(t, v)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{elfPath, bzPath} {
		id, err := IdentifyFile(path)
		if err != nil || id != wantIdentity {
			t.Fatalf("IdentifyFile(%s) = %+v, %v; want %+v", filepath.Base(path), id, err, wantIdentity)
		}
		got, err := VmlinuxFile(path)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("VmlinuxFile(%s) = %d bytes, %v; want the %d-byte vmlinux", filepath.Base(path), len(got), err, len(v))
		}
	}
	if _, err := IdentifyFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("IdentifyFile(missing) error = %v; want ErrNotExist", err)
	}
}

var hexBuildID = regexp.MustCompile(`^[0-9a-f]{40}$`)

// TestIdentifyRealKernel identifies the bzImage KCARE_TEST_VMLINUZ names,
// such as a Debian linux-image package's /boot/vmlinuz-6.1.0-56-amd64.
func TestIdentifyRealKernel(t *testing.T) {
	path := os.Getenv("KCARE_TEST_VMLINUZ")
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("KCARE_TEST_VMLINUZ not set")
		}
		t.Skip("KCARE_TEST_VMLINUZ not set")
	}
	id, err := IdentifyFile(path)
	if err != nil {
		t.Fatalf("IdentifyFile: %v", err)
	}
	t.Logf("build-id %s, banner %q", id.BuildID, id.Banner)
	if !hexBuildID.MatchString(id.BuildID) {
		t.Errorf("BuildID = %q; want 40 lower-case hex digits", id.BuildID)
	}
	if !strings.HasPrefix(id.Banner, "Linux version "+id.Release+" (") || !strings.HasSuffix(id.Banner, "\n") {
		t.Errorf("Banner = %q; want \"Linux version %s (...\\n\"", id.Banner, id.Release)
	}
	if !hasFinalVersion(id.Banner) {
		t.Errorf("Banner = %q; want the final banner, not the placeholder", id.Banner)
	}
	if release, ok := strings.CutPrefix(filepath.Base(path), "vmlinuz-"); ok && id.Release != release {
		t.Errorf("Release = %q; want %q from the file name", id.Release, release)
	}
}

func FuzzVmlinux(f *testing.F) {
	v := testVmlinux()
	f.Add(v)
	f.Add(fakeBzImage(gzipped(f, v)))
	f.Add(fakeBzImage(withSize(zstded(f, v), len(v))))
	f.Add(fakeBzImage([]byte("\x02\x21\x4c\x18rest")))
	f.Add([]byte("not a kernel"))
	// A few KiB of zstd can expand to hundreds of MiB, which is valid but
	// makes a slow fuzz loop; bound the output lower than Vmlinux does.
	lim := limits{image: MaxImageSize, vmlinux: 4 << 20}
	f.Fuzz(func(t *testing.T, image []byte) {
		got, err := vmlinux(image, lim)
		if err != nil {
			return
		}
		if !isELF(got) {
			t.Fatalf("Vmlinux returned %d bytes that are not an ELF", len(got))
		}
		id, err := Identify(got)
		if err != nil {
			return
		}
		if id.BuildID == "" || strings.ToLower(id.BuildID) != id.BuildID {
			t.Fatalf("Identify BuildID = %q", id.BuildID)
		}
		if r, err := ParseRelease(id.Banner); err != nil || r != id.Release {
			t.Fatalf("Identify = %+v; ParseRelease(Banner) = %q, %v", id, r, err)
		}
	})
}
