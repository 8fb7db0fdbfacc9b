#!/bin/sh
# clockshift.sh DAYS COMMAND...: runs COMMAND with every Go program it builds
# (tests, and binaries the tests build with `go build`) seeing a wall clock
# moved by DAYS days (negative: into the past). Monotonic time, timers and
# sleeps are untouched.
#
# It is how the suite is checked for tests that depend on today's date: a
# test that passes today and fails a year from now, or failed a year ago,
# compares a fixed date with the wall clock. It works by a build overlay of
# the standard library's time.Now (go build -overlay), so nothing in the
# project's own code can move the clock. The programs the tests start that
# are not Go (gpg, nagios, curl, openssl) see the same moved clock through
# Debian's libfaketime (package faketime), so that a key gpg makes and a
# signature kcare checks share one clock, as on a real machine.
set -eu
if [ $# -lt 2 ]; then
	echo "usage: clockshift.sh DAYS COMMAND..." >&2
	exit 2
fi
days=$1
shift
case $days in
'' | *[!0-9-]* | -*-* | ?*-*)
	echo "clockshift.sh: DAYS must be a whole number, not $days" >&2
	exit 2
	;;
esac

goroot=$(go env GOROOT)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

src=$goroot/src/time/time.go
grep -q '^	sec, nsec, mono := runtimeNow()$' "$src" || {
	echo "clockshift.sh: $src has no runtimeNow() line to shift; Go changed" >&2
	exit 1
}
sed 's/^	sec, nsec, mono := runtimeNow()$/	sec, nsec, mono := runtimeNow()\n	sec += clockShiftSeconds/' "$src" >"$dir/time.go"
cat >"$dir/clockshift.go" <<'GO'
package time

import "syscall"

// clockShiftSeconds moves Now by KCARE_CLOCK_SHIFT_DAYS days.
var clockShiftSeconds = func() int64 {
	v, _ := syscall.Getenv("KCARE_CLOCK_SHIFT_DAYS")
	var n int64
	neg := false
	for i, c := range v {
		switch {
		case i == 0 && c == '-':
			neg = true
		case c >= '0' && c <= '9':
			n = n*10 + int64(c-'0')
		default:
			return 0
		}
	}
	if neg {
		n = -n
	}
	return n * 86400
}()
GO
cat >"$dir/overlay.json" <<JSON
{"Replace": {
  "$src": "$dir/time.go",
  "$goroot/src/time/kcare_clockshift.go": "$dir/clockshift.go"
}}
JSON

export KCARE_CLOCK_SHIFT_DAYS="$days"
faketime=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [ ! -e "$faketime" ]; then
	echo "clockshift.sh: $faketime is missing: apt-get install faketime" >&2
	exit 1
fi
case $days in
-*) offset="${days}d" ;;
*) offset="+${days}d" ;;
esac
# Wrappers first on PATH run these programs under libfaketime. Not a global
# LD_PRELOAD: Chromium's launcher fails under it, and the scanner tests set
# LD_PRELOAD themselves.
mkdir "$dir/bin"
for prog in gpg nagios4 zabbix_agentd curl wget openssl; do
	real=$(command -v "$prog" || true)
	[ -n "$real" ] || continue
	cat >"$dir/bin/$prog" <<SH
#!/bin/sh
LD_PRELOAD=$faketime FAKETIME=$offset DONT_FAKE_MONOTONIC=1 exec $real "\$@"
SH
	chmod +x "$dir/bin/$prog"
done
export PATH="$dir/bin:$PATH"
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-overlay=$dir/overlay.json"

# Check that the overlay took: a Go program's clock against date(1)'s.
mkdir "$dir/check"
printf 'package main\n\nimport (\n\t"fmt"\n\t"time"\n)\n\nfunc main() { fmt.Println(time.Now().Unix()) }\n' >"$dir/check/main.go"
printf 'module check\n\ngo 1.21\n' >"$dir/check/go.mod"
got=$(cd "$dir/check" && go run .)
want=$(($(date +%s) + days * 86400))
if [ $((got - want)) -gt 60 ] || [ $((want - got)) -gt 60 ]; then
	echo "clockshift.sh: a Go program's clock reads $got, want about $want" >&2
	exit 1
fi
"$@"
