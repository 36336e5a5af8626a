#!/usr/bin/env bash
# Runs every Go fuzz target in the module, one after another, and prints
# per target the executions, executions per second and new interesting
# inputs, then a table. Exits non-zero if any target finds a failure (go
# test writes the failing input under the package's testdata/fuzz/FuzzX/;
# commit it with the fix as a regression seed).
#
#   scripts/fuzz.sh                  # 30s per target
#   scripts/fuzz.sh 10m
#   scripts/fuzz.sh 10m ./signal ./e2ee/keymsg   # only these packages
#   FUZZ_PARALLEL=2 scripts/fuzz.sh 1m
#   FUZZ_MATCH=keymsg scripts/fuzz.sh 5m    # only packages/targets matching
#   FUZZ_MINIMIZE=10s scripts/fuzz.sh        # minimize new inputs longer
#
# Targets are discovered: every package with a `func Fuzz` in a _test.go
# file is asked for its targets with `go test -list`. The generated corpus
# (what the fuzzer found interesting) is kept in the Go build cache,
# $(go env GOCACHE)/fuzz, so later runs start from it; `go clean -fuzzcache`
# clears it. The committed seeds are under each package's testdata/fuzz/.
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-30s}
shift || true
PARALLEL=${FUZZ_PARALLEL:-1}
# Minimizing a new input costs up to ~n²/2 runs for n bytes: unbounded (60s
# by default) it stalls a target on every finding of a kilobyte input.
MINIMIZE=${FUZZ_MINIMIZE:-1000x}
MATCH=${FUZZ_MATCH:-}
LOGDIR=${FUZZ_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/oakmeet-fuzz.XXXXXX")}
mkdir -p "$LOGDIR"

if [ $# -gt 0 ]; then
	pkgs=("$@")
else
	mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Fuzz' . |
		xargs -n1 dirname | sort -u)
fi
if [ ${#pkgs[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

echo "fuzz.sh: ${DURATION} per target, -parallel ${PARALLEL}, -fuzzminimizetime ${MINIMIZE}, logs in ${LOGDIR}"
echo "fuzz.sh: generated corpus cached in $(go env GOCACHE)/fuzz"

# seconds turns the fuzzer's elapsed time (30s, 1m30s, 1h0m5s) into seconds.
seconds() {
	local d=$1 total=0 n
	for unit in h m s; do
		if [[ $d =~ ^([0-9]+)$unit(.*)$ ]]; then
			n=${BASH_REMATCH[1]}
			d=${BASH_REMATCH[2]}
			case $unit in
			h) total=$((total + n * 3600)) ;;
			m) total=$((total + n * 60)) ;;
			s) total=$((total + n)) ;;
			esac
		fi
	done
	echo "$total"
}

rows=()
failed=0
for pkg in "${pkgs[@]}"; do
	if ! list=$(go test -list '^Fuzz' "$pkg" 2>&1); then
		echo "fuzz.sh: $pkg: go test -list failed:" >&2
		echo "$list" >&2
		rows+=("$(printf '%-44s %12s %10s %8s  %s' "$pkg" - - - "BUILD FAILED")")
		failed=1
		continue
	fi
	for name in $(echo "$list" | grep '^Fuzz'); do
		target="${pkg#./}.$name"
		if [ -n "$MATCH" ] && [[ "$target" != *"$MATCH"* ]]; then
			continue
		fi
		log="$LOGDIR/${target//\//_}.log"
		echo "== $target"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$DURATION" \
			-fuzzminimizetime "$MINIMIZE" -parallel "$PARALLEL" "$pkg" >"$log" 2>&1
		rc=$?
		# The last progress line holds the totals:
		# fuzz: elapsed: 1m30s, execs: 123456 (4115/sec), new interesting: 3 (total: 12)
		last=$(grep -E '^fuzz: elapsed: [0-9hms]+, execs: [0-9]+' "$log" | tail -n1)
		elapsed=$(seconds "$(echo "$last" | sed -nE 's/^fuzz: elapsed: ([0-9hms]+),.*/\1/p')")
		execs=$(echo "$last" | sed -nE 's/.*execs: ([0-9]+) .*/\1/p')
		newi=$(echo "$last" | sed -nE 's/.*new interesting: ([0-9]+).*/\1/p')
		rate=-
		if [ -n "$elapsed" ] && [ "$elapsed" -gt 0 ] && [ -n "$execs" ]; then
			rate=$((execs / elapsed))
		fi
		status=ok
		# go test -fuzz can end with only "context deadline exceeded" when
		# -fuzztime runs out while it is still minimizing a new input: no
		# input failed (none is written), so that is the time limit, not a
		# finding.
		if [ $rc -ne 0 ] && ! grep -qE 'Failing input written to|panic:' "$log" &&
			[ "$(grep -cvE '^(fuzz: |--- FAIL: |    context deadline exceeded$|FAIL|exit status|ok )' "$log")" -eq 0 ] &&
			grep -qE '^    context deadline exceeded$' "$log"; then
			rc=0
			status="ok (stopped at the time limit)"
		fi
		if [ $rc -ne 0 ]; then
			status=FAIL
			failed=1
			grep -E -- '--- FAIL|Failing input written to|panic:|Error' "$log" | head -n 5
			echo "   (full log: $log)"
		fi
		echo "   execs ${execs:--}, ${rate} execs/s, new interesting ${newi:--}: $status"
		rows+=("$(printf '%-44s %12s %10s %8s  %s' "$target" "${execs:--}" "$rate" "${newi:--}" "$status")")
	done
done

echo
printf '%-44s %12s %10s %8s  %s\n' target execs execs/s new result
for r in "${rows[@]}"; do
	echo "$r"
done
exit $failed
