// Package initramfs writes cpio archives in the "newc" format that the Linux
// kernel unpacks as its initial root file system.
//
// Entries are written sorted by path, so a directory always comes before
// what it holds and the same entries always make the same bytes. Parent
// directories are added implicitly with mode 0755. Owners are root and
// modification times are zero.
package initramfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// Archive is a set of entries to be written as one cpio archive.
// The zero value is an empty archive.
type Archive struct {
	entries map[string]*entry
}

type entry struct {
	mode     fs.FileMode // type and permission bits
	data     []byte      // a file's content, or a symlink's target
	hostPath string      // a file read at WriteTo time, when set
	implicit bool        // a parent directory nobody asked for
	major    uint32      // device numbers of a device node
	minor    uint32
}

// AddFile adds a regular file holding data.
func (a *Archive) AddFile(name string, data []byte, mode fs.FileMode) {
	a.add(name, &entry{mode: permBits(mode), data: data})
}

// AddHostFile adds a regular file whose content is read from hostPath when
// the archive is written. A mode of zero takes the host file's permissions.
func (a *Archive) AddHostFile(name, hostPath string, mode fs.FileMode) {
	a.add(name, &entry{mode: permBits(mode), hostPath: hostPath})
}

// AddDir adds a directory. Modes such as 0o1777 set the sticky bit.
func (a *Archive) AddDir(name string, mode fs.FileMode) {
	a.add(name, &entry{mode: fs.ModeDir | permBits(mode)})
}

// AddSymlink adds a symbolic link to target.
func (a *Archive) AddSymlink(name, target string) {
	a.add(name, &entry{mode: fs.ModeSymlink | 0o777, data: []byte(target)})
}

// AddCharDevice adds a character device node, such as /dev/console (5, 1),
// which the kernel opens for init before any devtmpfs is mounted.
func (a *Archive) AddCharDevice(name string, mode fs.FileMode, major, minor uint32) {
	a.add(name, &entry{mode: fs.ModeDevice | fs.ModeCharDevice | permBits(mode), major: major, minor: minor})
}

// permBits returns the permission bits of mode with setuid, setgid and
// sticky, given either as fs.FileMode flags or as octal 04000, 02000, 01000.
func permBits(mode fs.FileMode) fs.FileMode {
	m := mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	if mode&modeSetuid != 0 {
		m |= fs.ModeSetuid
	}
	if mode&modeSetgid != 0 {
		m |= fs.ModeSetgid
	}
	if mode&modeSticky != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// clean turns name into the archive's form: relative, slash-separated, clean.
func clean(name string) string {
	name = path.Clean("/" + name)
	return strings.TrimPrefix(name, "/")
}

func (a *Archive) add(name string, e *entry) {
	if a.entries == nil {
		a.entries = make(map[string]*entry)
	}
	name = clean(name)
	if name == "" {
		return // the root itself
	}
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = &entry{mode: fs.ModeDir | 0o755, implicit: true}
		}
	}
	a.entries[name] = e
}

// Names returns the paths in the archive in the order WriteTo writes them.
func (a *Archive) Names() []string {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// WriteTo writes the archive to w, ending it with the TRAILER!!! entry.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	var ino uint32
	for _, name := range a.Names() {
		e := a.entries[name]
		ino++
		if err := writeEntry(cw, ino, name, e); err != nil {
			return cw.n, fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := writeHeader(cw, header{name: "TRAILER!!!", nlink: 1}); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

func writeEntry(w *countWriter, ino uint32, name string, e *entry) error {
	h := header{ino: ino, name: name, nlink: 1, mode: cpioMode(e.mode)}
	switch {
	case e.mode.IsDir():
		h.nlink = 2
		return writeHeader(w, h)
	case e.mode&fs.ModeSymlink != 0:
		h.size = uint32(len(e.data))
		if err := writeHeader(w, h); err != nil {
			return err
		}
		return writeData(w, e.data)
	case e.mode&fs.ModeDevice != 0:
		h.rdevMajor, h.rdevMinor = e.major, e.minor
		return writeHeader(w, h)
	case e.hostPath != "":
		f, err := os.Open(e.hostPath)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", e.hostPath)
		}
		if fi.Size() > 1<<32-1 {
			return fmt.Errorf("%s is too large for cpio", e.hostPath)
		}
		if e.mode.Perm() == 0 {
			h.mode = cpioMode(fi.Mode())
		}
		h.size = uint32(fi.Size())
		if err := writeHeader(w, h); err != nil {
			return err
		}
		n, err := io.Copy(w, io.LimitReader(f, fi.Size()))
		if err != nil {
			return err
		}
		if n != fi.Size() {
			return fmt.Errorf("%s shrank while being read", e.hostPath)
		}
		return pad(w)
	default:
		if len(e.data) > 1<<32-1 {
			return errors.New("file is too large for cpio")
		}
		h.size = uint32(len(e.data))
		if err := writeHeader(w, h); err != nil {
			return err
		}
		return writeData(w, e.data)
	}
}

// Mode bits of a cpio header, as in stat(2).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
	modeSetuid  = 0o4000
	modeSetgid  = 0o2000
	modeSticky  = 0o1000
)

func cpioMode(m fs.FileMode) uint32 {
	bits := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= modeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		bits |= modeSetgid
	}
	if m&fs.ModeSticky != 0 {
		bits |= modeSticky
	}
	switch {
	case m.IsDir():
		bits |= modeDir
	case m&fs.ModeSymlink != 0:
		bits |= modeSymlink
	case m&fs.ModeCharDevice != 0:
		bits |= modeChar
	default:
		bits |= modeRegular
	}
	return bits
}

type header struct {
	ino                  uint32
	mode                 uint32
	nlink                uint32
	size                 uint32
	rdevMajor, rdevMinor uint32
	name                 string
}

// writeHeader writes a newc header and the name, padded to four bytes.
func writeHeader(w *countWriter, h header) error {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	_, err := fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		h.ino, h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rdevMajor, h.rdevMinor, len(h.name)+1, 0)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, h.name+"\x00"); err != nil {
		return err
	}
	return pad(w)
}

func writeData(w *countWriter, data []byte) error {
	if _, err := w.Write(data); err != nil {
		return err
	}
	return pad(w)
}

// pad writes zeros up to the next multiple of four bytes.
func pad(w *countWriter) error {
	if n := (4 - w.n%4) % 4; n > 0 {
		_, err := w.Write(make([]byte, n))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
