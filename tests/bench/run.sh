#!/bin/sh
# Run every benchmark in tests/bench/ and print one table: each figure,
# its reference measured in the same run, the ratio and the target, with
# the library versions it ran on.  BENCH=name runs only that one.
# Benchmarks print "name|figure|reference|ratio|target|ok" lines.
cd "$(dirname "$0")/../.." || exit 1
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
status=0
for b in tests/bench/*; do
	name=${b##*/}
	case $name in
	run.sh|*.c|*.md) continue ;;
	esac
	[ -x "$b" ] || continue
	[ -n "${BENCH:-}" ] && [ "$BENCH" != "$name" ] && continue
	echo "bench: $name" >&2
	if ! "$b" >>"$out"; then
		echo "$name: benchmark failed|-|-|-|-|NO" >>"$out"
		status=1
	fi
done

libv() { pkg-config --modversion "$1" 2>/dev/null || echo '?'; }
jqv=$(dpkg-query -W -f='${Version}' libjq1 2>/dev/null || echo '?')
printf 'whk %s on %s, %s CPUs; SQLite %s, libcurl %s, OpenSSL %s, libjq %s\n\n' \
    "$(sed -n 's/^#define WHK_VERSION "\(.*\)"/\1/p' lib/whk.h)" "$(uname -sm)" \
    "$(nproc)" "$(libv sqlite3)" "$(libv libcurl)" "$(libv libcrypto)" "$jqv"
{
	echo "figure|measured|reference|ratio|target|met"
	echo "---|---|---|---|---|---"
	cat "$out"
} | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }'
grep -q '|NO$' "$out" && status=1
exit "$status"
