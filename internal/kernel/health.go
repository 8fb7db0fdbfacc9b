package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/taint"
)

// Health is the kernel's own account of how it is doing, as an agent
// reports it with every check-in.
type Health struct {
	BootID string        // /proc/sys/kernel/random/boot_id: new at every boot
	Uptime time.Duration // /proc/uptime's first field
	Taint  taint.Mask    // /proc/sys/kernel/tainted
	// Warnings and Oopses are the kernel's counts of warnings (WARN) and
	// oopses since boot, from /sys/kernel/warn_count and oops_count; -1
	// when the kernel has no such file (before 6.2 and the stable
	// kernels it was backported to). CountsFrom says where they came
	// from: CountsSysfs, or "" when unknown.
	Warnings, Oopses int64
	CountsFrom       string
}

// Where Health's counts come from.
const (
	CountsSysfs = "sysfs" // the kernel's own counters
	CountsKmsg  = "kmsg"  // counted in the kernel log (/dev/kmsg) by the agent
)

// ReadHealth reads the health of the kernel whose /sys and /proc are
// under root. A kernel without warn_count and oops_count has Warnings
// and Oopses -1 (the agent then counts them in the kernel log: Kmsg).
func ReadHealth(root string) (Health, error) {
	read := func(rel string) (string, error) {
		b, err := os.ReadFile(filepath.Join(root, rel))
		return string(b), err
	}
	h := Health{Warnings: -1, Oopses: -1}
	id, err := read("proc/sys/kernel/random/boot_id")
	if err != nil {
		return h, fmt.Errorf("read boot id: %w", err)
	}
	if h.BootID = strings.TrimSpace(id); !apitype.ValidBootID(h.BootID) {
		return h, fmt.Errorf("read boot id: %q is not a UUID", h.BootID)
	}
	up, err := read("proc/uptime")
	if err != nil {
		return h, fmt.Errorf("read uptime: %w", err)
	}
	if h.Uptime, err = ParseUptime(up); err != nil {
		return h, err
	}
	t, err := read("proc/sys/kernel/tainted")
	if err != nil {
		return h, fmt.Errorf("read taint: %w", err)
	}
	if h.Taint, err = taint.Parse(t); err != nil {
		return h, err
	}
	w, werr := read("sys/kernel/warn_count")
	o, oerr := read("sys/kernel/oops_count")
	if errors.Is(werr, os.ErrNotExist) || errors.Is(oerr, os.ErrNotExist) {
		return h, nil
	}
	if err := errors.Join(werr, oerr); err != nil {
		return h, fmt.Errorf("read warning and oops counts: %w", err)
	}
	if h.Warnings, err = parseCount("warn_count", w); err != nil {
		return h, err
	}
	if h.Oopses, err = parseCount("oops_count", o); err != nil {
		return h, err
	}
	h.CountsFrom = CountsSysfs
	return h, nil
}

// ParseUptime reads /proc/uptime: seconds since boot, then idle seconds.
func ParseUptime(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("uptime %q: want two numbers", strings.TrimSpace(s))
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 || v > 1e10 {
		return 0, fmt.Errorf("uptime %q: bad seconds", f[0])
	}
	return time.Duration(math.Round(v*1000)) * time.Millisecond, nil
}

func parseCount(name, s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s %q: not a count", name, strings.TrimSpace(s))
	}
	return v, nil
}

// KmsgCount is what the kernel log held after a sequence number: the
// warnings and oopses it logged, and the last record's number.
type KmsgCount struct {
	Warnings, Oopses int64
	Last             uint64 // the sequence number of the last record read; After when none was newer
	// Lost reports whether records after the one asked for were gone
	// (the log wrapped): the counts may be short.
	Lost bool
}

// The first lines the kernel logs for a warning (__warn) and an oops
// (die's header, "Oops: 0002 [#1] PREEMPT SMP" on x86), compiled when
// first needed: kcarectl's start does not pay for them.
var (
	kmsgWarnRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^WARNING: CPU: \d+ PID: \d+ at `) })
	kmsgOopsRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^Oops: [0-9a-f]{4} \[#\d+\]`) })
)

// ParseKmsg counts the warnings and oopses of kernel log records, as
// /dev/kmsg gives them ("PRIO,SEQ,USEC,FLAGS;MESSAGE", continuation
// lines starting with a space), whose sequence number is above after; or
// of every record, when all is set (the first count of a boot). When the
// oldest record is numbered beyond after+1, those between were gone
// before they were read (Lost).
func ParseKmsg(records []byte, after uint64, all bool) (KmsgCount, error) {
	c := KmsgCount{Last: after}
	seen := false
	for _, line := range bytes.Split(records, []byte("\n")) {
		if len(line) == 0 || line[0] == ' ' {
			continue // a continuation line: key=value pairs
		}
		head, msg, ok := bytes.Cut(line, []byte(";"))
		f := strings.Split(string(head), ",")
		if !ok || len(f) < 4 {
			return c, fmt.Errorf("kernel log record %q: want PRIO,SEQ,USEC,FLAGS;MESSAGE", trimRecord(line))
		}
		seq, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return c, fmt.Errorf("kernel log record %q: bad sequence number", trimRecord(line))
		}
		if !seen && !all && seq > after+1 {
			c.Lost = true
		}
		seen = true
		if !all && seq <= after {
			continue
		}
		switch {
		case kmsgWarnRE().Match(msg):
			c.Warnings++
		case kmsgOopsRE().Match(msg):
			c.Oopses++
		}
		c.Last = max(c.Last, seq)
	}
	return c, nil
}

func trimRecord(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}

// kmsgRecordMax is the largest record /dev/kmsg returns from one read.
const kmsgRecordMax = 8192

// ReadKmsg counts the warnings and oopses in the kernel log under root
// (dev/kmsg) logged after the record numbered after: every record when
// all is set (the first read of a boot). The device gives one record per
// read and the oldest it still holds first; a regular file (a test's fake
// tree) is read whole.
func ReadKmsg(root string, after uint64, all bool) (KmsgCount, error) {
	path := filepath.Join(root, "dev/kmsg")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return KmsgCount{}, fmt.Errorf("read the kernel log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return KmsgCount{}, fmt.Errorf("read the kernel log: %w", err)
	}
	var records []byte
	if fi.Mode().IsRegular() {
		if records, err = io.ReadAll(io.LimitReader(f, 64<<20)); err != nil {
			return KmsgCount{}, fmt.Errorf("read the kernel log: %w", err)
		}
	} else {
		buf := make([]byte, kmsgRecordMax)
		for {
			n, err := f.Read(buf)
			if errors.Is(err, syscall.EAGAIN) || err == io.EOF {
				break
			}
			if errors.Is(err, syscall.EPIPE) {
				continue // overwritten while we read: the next read gives the oldest left
			}
			if err != nil {
				return KmsgCount{}, fmt.Errorf("read the kernel log: %w", err)
			}
			records = append(records, buf[:n]...)
			if n > 0 && buf[n-1] != '\n' {
				records = append(records, '\n')
			}
		}
	}
	return ParseKmsg(records, after, all)
}
