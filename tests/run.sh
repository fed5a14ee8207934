#!/bin/sh
# Run the bats suites; end with "N passed, N failed[, N skipped]".
cd "$(dirname "$0")/.." || exit 1
[ $# -gt 0 ] || set -- tests/*.bats
out=$(mktemp) || exit 1
trap 'rm -f "$out" "$out.rc"' EXIT
if [ "$SAN" = 1 ]; then
	# A sanitizer report must fail the test that caused it.
	export ASAN_OPTIONS="detect_leaks=1:exitcode=86:abort_on_error=0"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"
fi
# Nothing waits on the caller's stdin (whk-deliver --pending reads a pipe).
{ bats --tap "$@" </dev/null; echo "$?" >"$out.rc"; } | tee "$out"
rc=$(cat "$out.rc")
skipped=$(grep '^ok ' "$out" | grep -c '# skip')
failed=$(grep -c '^not ok ' "$out")
passed=$(( $(grep -c '^ok ' "$out") - skipped ))
# bats failing with no "not ok" (a suite that did not load) still fails.
[ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
