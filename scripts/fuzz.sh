#!/usr/bin/env bash
# Runs each fuzz target briefly (FUZZTIME, default 10s).
#
# Go's fuzzer can end a short run with "context deadline exceeded" while it
# is still minimizing an input it found interesting, with no crasher. A run
# that fails that way is run once more; a real crash writes its input under
# testdata/fuzz/, and then the run fails at once and the script stops.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
targets=(
	./internal/bundle:FuzzParse
	./internal/bundle:FuzzParseManifest
	./internal/config:FuzzParse
	./internal/trust:FuzzVerify
	./internal/index:FuzzVerify
	./internal/kimage:FuzzVmlinux
	./internal/klp:FuzzRelocations
	./internal/portal/web:FuzzReadUpload
	./internal/portal/server:FuzzDecodeCheckIn
)
# Every fuzz target in the tree is in the list above: a new one that is
# not would never run in CI.
missing=0
while IFS= read -r line; do
	file=${line%%:*} fn=${line#*func }
	fn=${fn%%(*}
	t="./$(dirname "$file"):$fn"
	if ! printf '%s\n' "${targets[@]}" | grep -qxF "$t"; then
		echo "fuzz.sh: $t is not in the list of targets" >&2
		missing=1
	fi
done < <(git grep -n '^func Fuzz' -- '*_test.go' | sed 's/:[0-9]*:/:/')
[ $missing -eq 0 ] || exit 1

for t in "${targets[@]}"; do
	pkg=${t%%:*} fn=${t##*:}
	for try in 1 2; do
		echo "fuzz $pkg $fn (try $try)"
		before=$(find "$pkg/testdata/fuzz/$fn" -type f 2>/dev/null | sort)
		out=$(go test -run='^$' -fuzz="^$fn\$" -fuzztime="$fuzztime" -fuzzminimizetime=1s "$pkg" 2>&1)
		rc=$?
		echo "$out" | grep -v '^fuzz: elapsed'
		[ $rc -eq 0 ] && break
		after=$(find "$pkg/testdata/fuzz/$fn" -type f 2>/dev/null | sort)
		if [ "$before" != "$after" ] || ! echo "$out" | grep -q 'context deadline exceeded'; then
			echo "fuzz $pkg $fn: failed" >&2
			exit 1
		fi
		if [ $try -eq 2 ]; then
			echo "fuzz $pkg $fn: timed out minimizing twice" >&2
			exit 1
		fi
	done
done
