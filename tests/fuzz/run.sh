#!/bin/sh
# Run each fuzz target named for SECONDS under libFuzzer, one after the
# other: usage: run.sh SECONDS TARGET...  (make fuzz builds them first.)
# The corpus in tests/fuzz/corpus/TARGET is read, never written: what a
# run finds new goes to build/fuzz/corpus/TARGET, and what fails to
# build/fuzz/artifacts/.  Prints per target the executions and whether
# anything was found; exits 1 if anything was.
cd "$(dirname "$0")/../.." || exit 1
secs=$1
shift
status=0
mkdir -p build/fuzz/artifacts || exit 1
for t in "$@"; do
	out=build/fuzz/corpus/$t
	log=build/fuzz/$t.log
	mkdir -p "$out" || exit 1
	dict=
	[ -f "tests/fuzz/$t.dict" ] && dict=-dict=tests/fuzz/$t.dict
	before=$(ls "$out" | wc -l)
	echo "fuzz: $t for $secs s (log in $log)" >&2
	# UBSan: say where, not only what.
	UBSAN_OPTIONS=print_stacktrace=1 \
	    "build/fuzz/fuzz-$t" -max_total_time="$secs" -timeout=10 \
	    -print_final_stats=1 -artifact_prefix="build/fuzz/artifacts/$t-" \
	    $dict "$out" "tests/fuzz/corpus/$t" >"$log" 2>&1
	rc=$?
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	[ -n "$runs" ] || runs=$(echo "$last" | sed 's/^#\([0-9]*\).*/\1/')
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
	new=$(( $(ls "$out" | wc -l) - before ))
	found=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
	echo "fuzz: $t: ${runs:-?} executions (${rate:-?}/s), cov ${cov:-?}," \
	    "features ${ft:-?}, corpus ${corp:-?} (+$new in $out)"
	if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
		status=1
		tail -n 40 "$log"
		echo "fuzz: $t: FOUND a failure (status $rc): ${found:-see $log}"
		[ -n "$found" ] && echo "fuzz: $t: replay it with" \
		    "bin/fuzz-$t $found (after make), and keep it in" \
		    "tests/fuzz/corpus/$t/ once fixed"
	else
		echo "fuzz: $t: nothing found"
	fi
done
exit $status
