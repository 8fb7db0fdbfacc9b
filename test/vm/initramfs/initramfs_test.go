package initramfs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// parsed is one entry read back from an archive.
type parsed struct {
	mode        uint32
	data        string
	major, minr uint32
}

// parse reads a newc archive, checking the framing as the kernel would.
func parse(t *testing.T, b []byte) ([]string, map[string]parsed) {
	t.Helper()
	var names []string
	got := make(map[string]parsed)
	off := 0
	field := func(i int) uint32 {
		s := string(b[off+6+8*i : off+6+8*(i+1)])
		v, err := strconv.ParseUint(s, 16, 32)
		if err != nil {
			t.Fatalf("offset %d: field %d %q: %v", off, i, s, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("archive ends at %d without a trailer", off)
		}
		if magic := string(b[off : off+6]); magic != "070701" {
			t.Fatalf("offset %d: magic %q; want 070701", off, magic)
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+110 : off+110+int(namesize)-1])
		if b[off+110+int(namesize)-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off = align(off + 110 + int(namesize))
		data := string(b[off : off+int(size)])
		off = align(off + int(size))
		if name == "TRAILER!!!" {
			break
		}
		names = append(names, name)
		got[name] = parsed{mode: mode, data: data, major: rmaj, minr: rmin}
	}
	if off != len(b) {
		t.Errorf("%d bytes after the trailer", len(b)-off)
	}
	return names, got
}

func sample(t *testing.T) *Archive {
	host := filepath.Join(t.TempDir(), "hostfile")
	if err := os.WriteFile(host, []byte("from the host\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	var a Archive
	a.AddFile("/etc/inittab", []byte("::sysinit:/etc/init.d/rcS\n"), 0o644)
	a.AddFile("etc/init.d/rcS", []byte("#!/bin/sh\necho hi\n"), 0o755)
	a.AddHostFile("/usr/bin/tool", host, 0)
	a.AddHostFile("/usr/bin/tool.ro", host, 0o444)
	a.AddDir("/tmp", 0o1777)
	a.AddDir("/empty", 0o700)
	a.AddSymlink("/bin/sh", "busybox")
	a.AddFile("/bin/busybox", []byte("odd"), 0o755)
	return &a
}

func TestWriteToParse(t *testing.T) {
	a := sample(t)
	a.AddCharDevice("/dev/console", 0o600, 5, 1)
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo = %d; wrote %d bytes", n, buf.Len())
	}
	names, got := parse(t, buf.Bytes())

	wantNames := []string{"bin", "bin/busybox", "bin/sh", "dev", "dev/console", "empty", "etc", "etc/init.d", "etc/init.d/rcS", "etc/inittab", "tmp", "usr", "usr/bin", "usr/bin/tool", "usr/bin/tool.ro"}
	if fmt.Sprint(names) != fmt.Sprint(wantNames) {
		t.Errorf("names = %q; want %q", names, wantNames)
	}
	want := map[string]parsed{
		"bin":             {mode: 0o040755},
		"bin/busybox":     {mode: 0o100755, data: "odd"},
		"bin/sh":          {mode: 0o120777, data: "busybox"},
		"dev":             {mode: 0o040755},
		"dev/console":     {mode: 0o020600, major: 5, minr: 1},
		"empty":           {mode: 0o040700},
		"etc":             {mode: 0o040755},
		"etc/init.d":      {mode: 0o040755},
		"etc/init.d/rcS":  {mode: 0o100755, data: "#!/bin/sh\necho hi\n"},
		"etc/inittab":     {mode: 0o100644, data: "::sysinit:/etc/init.d/rcS\n"},
		"tmp":             {mode: 0o041777},
		"usr":             {mode: 0o040755},
		"usr/bin":         {mode: 0o040755},
		"usr/bin/tool":    {mode: 0o100750, data: "from the host\n"},
		"usr/bin/tool.ro": {mode: 0o100444, data: "from the host\n"},
	}
	for name, w := range want {
		if g := got[name]; g != w {
			t.Errorf("%s = %+v; want %+v", name, g, w)
		}
	}

	var again bytes.Buffer
	if _, err := a.WriteTo(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two writes of the same archive differ")
	}
}

// TestCpioExtract checks the archive against GNU cpio.
func TestCpioExtract(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	a := sample(t)
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idv", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idv: %v\n%s", err, out)
	}
	files := map[string]struct {
		data string
		perm fs.FileMode
	}{
		"etc/inittab":     {"::sysinit:/etc/init.d/rcS\n", 0o644},
		"etc/init.d/rcS":  {"#!/bin/sh\necho hi\n", 0o755},
		"usr/bin/tool":    {"from the host\n", 0o750},
		"usr/bin/tool.ro": {"from the host\n", 0o444},
		"bin/busybox":     {"odd", 0o755},
	}
	for name, w := range files {
		p := filepath.Join(dir, name)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if string(data) != w.data {
			t.Errorf("%s = %q; want %q", name, data, w.data)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != w.perm {
			t.Errorf("%s mode = %v; want %v", name, fi.Mode().Perm(), w.perm)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v; want busybox", target, err)
	}
	for name, want := range map[string]fs.FileMode{"tmp": fs.ModeDir | fs.ModeSticky | 0o777, "empty": fs.ModeDir | 0o700} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v; want %v", name, fi.Mode(), want)
		}
	}
}

func TestWriteToMissingHostFile(t *testing.T) {
	var a Archive
	a.AddHostFile("/bin/x", filepath.Join(t.TempDir(), "missing"), 0)
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err == nil {
		t.Error("WriteTo with a missing host file succeeded")
	}
}
