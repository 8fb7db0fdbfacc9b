package fakekernel

import (
	"bytes"
	"encoding/binary"
)

// Module returns a minimal ELF64 relocatable object with a .modinfo
// section, enough for kmod.ReadInfo and the fake loader; livepatch sets
// the livepatch=Y tag.
func Module(name, vermagic string, livepatch bool) []byte {
	var modinfo bytes.Buffer
	if livepatch {
		modinfo.WriteString("livepatch=Y\x00")
	}
	modinfo.WriteString("license=GPL\x00name=" + name + "\x00vermagic=" + vermagic + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")

	const ehsize, shentsize = 64, 64
	modOff := uint64(ehsize)
	strOff := modOff + uint64(modinfo.Len())
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7

	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, uint16(1))  // ET_REL
	binary.Write(&b, le, uint16(62)) // EM_X86_64
	binary.Write(&b, le, uint32(1))
	binary.Write(&b, le, uint64(0)) // entry
	binary.Write(&b, le, uint64(0)) // phoff
	binary.Write(&b, le, shOff)
	binary.Write(&b, le, uint32(0))
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0))
	binary.Write(&b, le, uint16(0))
	binary.Write(&b, le, uint16(shentsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.Write(modinfo.Bytes())
	b.Write(shstr)
	for uint64(b.Len()) < shOff {
		b.WriteByte(0)
	}
	sh := func(name, typ uint32, off, size uint64) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, uint64(0)) // flags
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, off)
		binary.Write(&b, le, size)
		binary.Write(&b, le, uint32(0))
		binary.Write(&b, le, uint32(0))
		binary.Write(&b, le, uint64(1))
		binary.Write(&b, le, uint64(0))
	}
	sh(0, 0, 0, 0)
	sh(1, 1, modOff, uint64(modinfo.Len())) // .modinfo PROGBITS
	sh(10, 3, strOff, uint64(len(shstr)))   // .shstrtab STRTAB
	return b.Bytes()
}
