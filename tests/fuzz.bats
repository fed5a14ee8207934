#!/usr/bin/env bats
# The fuzz targets of tests/fuzz/ replayed on their corpora, without
# libFuzzer: every saved input keeps every property its target checks.
# (make fuzz runs them under libFuzzer to find new inputs.)  Then what
# the targets found, as the programs show it.

load helpers

CORPUS="$BATS_TEST_DIRNAME/fuzz/corpus"

# replay TARGET: bin/fuzz-TARGET on its whole corpus, which is a few
# dozen files at least, every one of them replayed.
replay() {
	local n
	n=$(find "$CORPUS/$1" -type f | wc -l)
	[ "$n" -ge 24 ]
	run "fuzz-$1" "$CORPUS/$1"
	assert_success
	assert_output "fuzz-$1: $n inputs replayed"
}

@test "the ingest corpus keeps its properties: lines, checks and fields as whk-ingest(1) says, under five sets of options" {
	replay ingest
}

@test "the duration corpus keeps its properties: durations, times, WHK_NOW, sizes and schedules as the manuals say" {
	replay duration
}

@test "a bug put in on purpose fails the ingest replay: a type read one byte short" {
	run fuzz-ingest "$CORPUS/ingest/event"
	assert_success
	WHK_FUZZ_BREAK=1 run fuzz-ingest "$CORPUS/ingest/event"
	assert_failure 134
	assert_line --index 0 --regexp "^fuzz-ingest: property violated \(ingest.c:[0-9]+, options 0\): the type is 'order.create', not 'order.created'$"
	assert_line --index 1 --partial 'line: {"id":"ev-1","type":"order.created",'
}

@test "a bug put in on purpose fails the duration replay: a duration read 1 ms long" {
	run fuzz-duration "$CORPUS/duration/ms"
	assert_success
	WHK_FUZZ_BREAK=1 run fuzz-duration "$CORPUS/duration/ms"
	assert_failure 134
	assert_line --index 0 --regexp "^fuzz-duration: property violated \(duration.c:[0-9]+\): whk_parse_duration read 501 ms, not 500$"
	assert_line --index 1 "argument: 500ms"
}

@test "the replay fails on an input it cannot read, and on none at all" {
	mkdir empty
	run fuzz-ingest empty
	assert_failure 1
	assert_output "fuzz-ingest: 0 inputs replayed
fuzz-ingest: no inputs"
	run fuzz-duration "$CORPUS/duration/ms" missing
	assert_failure 1
	assert_output "fuzz-duration: cannot read 'missing': No such file or directory
fuzz-duration: 1 inputs replayed"
}

# --- what the targets found, as the programs show it ----------------------

# nest N: a line of N objects one in another, {"a":{"a":...{}...}}.
nest() {
	awk -v n="$1" 'BEGIN {
		for (i = 1; i < n; i++) printf "{\"a\":"
		printf "{}"
		for (i = 1; i < n; i++) printf "}"
		print ""
	}'
}

@test "whk-ingest passes only what jq 1.6 can parse, counting levels as jq does: 128 objects one in another pass, 129 do not" {
	{ nest 128; nest 129; } >in
	run sh -c 'whk-ingest in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: nested deeper than 256 levels"
	# With --type-from, jq parses every line: it takes what was passed.
	run sh -c 'whk-ingest --type-from .type in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: nested deeper than 256 levels"
	run sql "select count(*), count(distinct body) from events"
	assert_output "2|1"
}

@test "whk-ingest refuses a number key of 2^53 or more, which jq would round onto another: 2^53 + 1 is not stored as 2^53" {
	printf '{"id":%s}\n' 9007199254740991 9007199254740992 \
	    9007199254740993 9007199254740991.9 >in
	echo '{"tenant":-9007199254740993}' >>in
	run sh -c 'whk-ingest in 2>&1 >/dev/null'
	assert_output "whk-ingest: in: line 2: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 3: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 4: id is a number too large to keep exactly; send it as a string
whk-ingest: in: line 5: tenant is a number too large to keep exactly; send it as a string"
	run sql "select key from events"
	assert_output 9007199254740991
}

@test "a time is Unix seconds or RFC 3339 to the letter: no day past its month, no sign or space in a field, no offset past 23:59, digits after a dot" {
	local t
	for t in 2026-02-29 2026-02-31 2026-04-31 2026-13-01 2026-+1-01 \
	    ' 999-01-01' -001-01-01 2026-01-01T10:00:00+99:00 \
	    2026-01-01T10:00:00.Z 2026-03-01Z 1.7e9 1700000000. \
	    100000000000000.5; do
		run whk-log events --since "$t"
		assert_failure 2
		assert_output "whk-log: --since: '$t' is not a time (Unix seconds, RFC 3339, or a duration ago such as 1h)"
		WHK_NOW=$t run whk-log events
		assert_failure 2
		assert_output "whk-log: invalid WHK_NOW '$t' (use Unix seconds or RFC 3339)"
	done
}

@test "WHK_NOW reads each form of time to the millisecond, leap days and leap seconds included" {
	local t
	for t in 2024-02-29T12:00:00.5+01:30 '2026-01-01 10:00:00.123456z' \
	    2016-12-31T23:59:60Z 2026-01-01 1700000000.1235 0.0005; do
		echo "{\"id\":\"$t\"}" | WHK_NOW=$t whk-ingest >/dev/null
	done
	run sh -c 'whk-log events | tac | jq -r "[.key, .received_at] | @tsv"'
	assert_output "2024-02-29T12:00:00.5+01:30	2024-02-29T10:30:00.500Z
2026-01-01 10:00:00.123456z	2026-01-01T10:00:00.123Z
2016-12-31T23:59:60Z	2017-01-01T00:00:00.000Z
2026-01-01	2026-01-01T00:00:00.000Z
1700000000.1235	2023-11-14T22:13:20.124Z
0.0005	1970-01-01T00:00:00.001Z"
}

@test "WHK_NOW before 1970 is refused, not silently replaced by the clock" {
	WHK_NOW=1969-12-31T23:59:59.999Z run whk-ingest </dev/null
	assert_failure 2
	assert_output "whk-ingest: invalid WHK_NOW '1969-12-31T23:59:59.999Z' (use Unix seconds or RFC 3339)"
	echo '{}' | WHK_NOW=1970-01-01T00:00:00.001Z whk-ingest >/dev/null
	run sh -c 'whk-log events | jq -r .received_at'
	assert_output 1970-01-01T00:00:00.001Z
}
